"""Password hashes and the Fernet key repository (permissions, rotation, reloading)."""

from __future__ import annotations

import os
import stat

import pytest
from cryptography.fernet import InvalidToken

from soko.identity import passwords
from soko.identity.keys import FernetKeyRepository, KeyRepositoryError


def test_password_hash_round_trip_and_format():
    stored = passwords.hash_password("correct horse", log2_n=10)
    assert stored.startswith("scrypt$10$8$1$") and "correct horse" not in stored
    assert passwords.verify_password("correct horse", stored)
    assert not passwords.verify_password("correct hors", stored)
    assert passwords.hash_password("correct horse", log2_n=10) != stored  # salted


def test_generated_passwords_can_follow_a_cli_option():
    """A password given as ``swift -K <password>`` must not look like an option itself."""
    generated = [passwords.generate_password() for _ in range(2000)]  # 1 in 64 began "-"
    assert not [p for p in generated if p.startswith("-")]
    assert len(set(generated)) == len(generated) and all(len(p) == 24 for p in generated)


@pytest.mark.parametrize("stored", ["", "md5$abc", "scrypt$10$8$1$!!$??", "scrypt$x$8$1$a$b"])
def test_malformed_hash_never_verifies(stored):
    assert not passwords.verify_password("anything", stored)


def test_oversized_password_is_refused():
    with pytest.raises(ValueError):
        passwords.hash_password("x" * (passwords.MAX_PASSWORD_BYTES + 1), 10)
    stored = passwords.hash_password("short-pass", 10)
    assert not passwords.verify_password("x" * (passwords.MAX_PASSWORD_BYTES + 1), stored)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_repository_setup_is_private_and_idempotent(tmp_path):
    repo = FernetKeyRepository(tmp_path / "keys")
    assert repo.initialize() is True
    assert repo.initialize() is False
    assert repo.numbers() == [0, 1]
    assert mode(repo.path) == 0o700
    assert all(mode(repo.path / str(n)) == 0o600 for n in repo.numbers())


def test_rotation_keeps_recent_tokens_valid_and_prunes_old_keys(tmp_path):
    repo = FernetKeyRepository(tmp_path / "keys", max_active=3, reload_interval=0)
    repo.initialize()
    before = repo.fernet().encrypt(b"signed with key 1")
    staged = (repo.path / "0").read_bytes()

    assert repo.rotate() == 2
    assert (repo.path / "2").read_bytes() == staged  # the staged key became primary
    assert repo.numbers() == [0, 1, 2]
    assert repo.fernet().decrypt(before) == b"signed with key 1"
    after = repo.fernet().encrypt(b"signed with key 2")

    assert repo.rotate() == 3
    assert repo.numbers() == [0, 2, 3]  # key 1 pruned: 3 keys at most
    with pytest.raises(InvalidToken):
        repo.fernet().decrypt(before)
    assert repo.fernet().decrypt(after) == b"signed with key 2"
    assert all(mode(repo.path / str(n)) == 0o600 for n in repo.numbers())


def test_staged_key_is_accepted_before_it_signs(tmp_path):
    """Another host that rotated first signs with our staged key: we must accept it."""
    repo = FernetKeyRepository(tmp_path / "keys", reload_interval=0)
    repo.initialize()
    from cryptography.fernet import Fernet

    from_other_host = Fernet((repo.path / "0").read_bytes()).encrypt(b"hello")
    assert repo.fernet().decrypt(from_other_host) == b"hello"


def test_validator_side_reloads_after_rotation(tmp_path):
    signer = FernetKeyRepository(tmp_path / "keys", reload_interval=0)
    signer.initialize()
    reader = FernetKeyRepository(tmp_path / "keys", reload_interval=0)
    reader.fernet()
    signer.rotate()
    signer.rotate()  # the primary the reader loaded first is pruned now
    token = signer.fernet().encrypt(b"new")
    assert reader.fernet().decrypt(token) == b"new"


def test_missing_repository_says_how_to_create_it(tmp_path):
    with pytest.raises(KeyRepositoryError, match="soko identity keys setup"):
        FernetKeyRepository(tmp_path / "nothing").fernet()
