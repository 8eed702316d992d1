"""What TempURL and FormPost share: the keys a signature is checked with, the digests it may
use, and the grant a valid one gives its request (``access.SignedGrant``).

A signature is an HMAC of a message naming what it allows, keyed with one of the
``Temp-URL-Key`` and ``Temp-URL-Key-2`` metadata of the container (a key for that container)
or of the account (for all of it); only their owner sees or sets them. It is written in hex
(its length tells the digest: sha1 40, sha256 64, sha512 128) or as
``<digest>:<base64>``; ``[proxy] allowed_digests`` lists the digests accepted (sha1 only if
listed: Swift deprecates it).
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hmac
from collections.abc import Iterable, Iterator

from soko.common.auth import AUTH_ENVIRON_KEY
from soko.object.middleware.subrequest import subrequest
from soko.object.proxy.access import GRANT_ENVIRON_KEY, SignedGrant

SUPPORTED_DIGESTS = ("sha1", "sha256", "sha512")
DEPRECATED_DIGESTS = ("sha1",)
HEX_DIGESTS = {40: "sha1", 64: "sha256", 128: "sha512"}
KEY_NAMES = ("temp-url-key", "temp-url-key-2")
CALLER_KEYS = ("HTTP_X_AUTH_TOKEN", "HTTP_X_SERVICE_TOKEN", AUTH_ENVIRON_KEY)
HTML = "text/html; charset=UTF-8"


@dataclasses.dataclass(frozen=True)
class Key:
    secret: str
    container: str | None  # its scope: this container, or (None) the whole account


def parse_signature(value: str) -> tuple[str, str]:
    """``(digest, hex)`` of a signature as a client gives it; ValueError if malformed."""
    if ":" in value:
        digest, encoded = value.split(":", 1)
        if ("-" in encoded or "_" in encoded) and not ("+" in encoded or "/" in encoded):
            encoded = encoded.replace("-", "+").replace("_", "/")  # the URL-safe alphabet
        encoded = encoded.rstrip("=")
        raw = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        return digest, raw.hex()
    binascii.unhexlify(value)
    if len(value) not in HEX_DIGESTS:
        raise ValueError("not a digest's length")
    return HEX_DIGESTS[len(value)], value


def digests_info(section) -> dict[str, list[str]]:
    """What ``/info`` says of the digests, as Swift's TempURL and FormPost do."""
    allowed = sorted(set(section.allowed_digests))
    deprecated = [digest for digest in allowed if digest in DEPRECATED_DIGESTS]
    return {"allowed_digests": allowed, **({"deprecated_digests": deprecated} if deprecated
                                           else {})}


def signing_keys(app, environ: dict, account: str, container: str, source: str) -> Iterator[Key]:
    """The container's keys, then the account's: each read only when the ones before did not
    match (a HEAD as their owner, the one thing a key look-up grant allows)."""
    lookup = act_under(dict(environ), SignedGrant(account, container, keys_lookup=True))
    for path, kind, scope in ((f"/v1/{account}/{container}", "container", container),
                              (f"/v1/{account}", "account", None)):
        answer = subrequest(app, lookup, "HEAD", path, source=source)
        answer.close()
        if answer.status // 100 == 2:
            for name in KEY_NAMES:
                secret = answer.headers.get(f"x-{kind}-meta-{name}")
                if secret:
                    yield Key(secret, scope)


def matching_key(keys: Iterable[Key], messages: list[str], digest: str,
                 signature: str) -> Key | None:
    """The first key that signs one of ``messages`` as ``signature`` (hex, compared in
    constant time)."""
    for key in keys:
        for message in messages:
            expected = hmac.new(key.secret.encode(), message.encode(), digest).hexdigest()
            if hmac.compare_digest(expected, signature):
                return key
    return None


def act_under(environ: dict, grant: SignedGrant) -> dict:
    """``environ`` acting with the grant's rights only: the caller's token and identity
    are dropped (a signed request is nobody's but the key's)."""
    for name in CALLER_KEYS:
        environ.pop(name, None)
    environ[GRANT_ENVIRON_KEY] = grant
    return environ


def text_answer(environ: dict, start_response, status: str, text: str, *,
                content_type: str = HTML, headers: Iterable[tuple[str, str]] = ()):
    """An answer with a short text, as Swift's middlewares give them (none to a HEAD)."""
    body = b"" if environ["REQUEST_METHOD"] == "HEAD" else text.encode()
    start_response(status, [("Content-Type", content_type), ("Content-Length", str(len(body))),
                            *headers])
    return [body]


def unauthorized(environ: dict, start_response, text: str):
    """Swift's 401 for a signature that does not hold (its realm: none known)."""
    return text_answer(environ, start_response, "401 Unauthorized", text,
                       headers=[("Www-Authenticate", 'Swift realm="unknown"')])
