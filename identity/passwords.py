"""Password hashing with scrypt (memory-hard), parameters stored with each hash.

Format: ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``, so raising the cost later leaves
old hashes verifiable. Never log, repr or return a password; only these functions see one.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import hmac
import secrets

SALT_BYTES = 16
HASH_BYTES = 32
R, P = 8, 1
MAX_PASSWORD_BYTES = 4096  # bounds the work one request can ask for


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 1 << log2_n
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                          maxmem=256 * n * r + (1 << 20), dklen=HASH_BYTES)


def hash_password(password: str, log2_n: int = 14) -> str:
    if len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ValueError(f"a password may be at most {MAX_PASSWORD_BYTES} bytes")
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, log2_n, R, P)
    return f"scrypt${log2_n}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    """Constant-time check of ``password`` against a stored hash; False for any bad input."""
    try:
        scheme, log2_n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or len(password.encode()) > MAX_PASSWORD_BYTES:
            return False
        computed = _scrypt(password, _unb64(salt), int(log2_n), int(r), int(p))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(computed, _unb64(digest))


def generate_password(nbytes: int = 18) -> str:
    """A random password for bootstrap accounts (URL-safe, no shell metacharacters), never
    starting with ``-``: one in 64 did, and ``swift -K <it>`` or ``--os-password <it>``
    then read it as an option."""
    while (password := secrets.token_urlsafe(nbytes)).startswith("-"):
        pass
    return password


@functools.cache
def _dummy_hash(log2_n: int) -> str:
    return hash_password(secrets.token_urlsafe(16), log2_n)


def burn_verify(password: str, log2_n: int) -> None:
    """Spends what a real check would, so an unknown user name costs the same time as a
    wrong password and response times do not reveal which names exist."""
    verify_password(password, _dummy_hash(log2_n))
