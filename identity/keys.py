"""The Fernet key repository, laid out as Keystone's so its rotation story carries over.

Keys are files named by integers in one directory (0700; each key 0600):

- ``0`` is the **staged** key: not used to sign yet, but every validator already accepts
  it, so after copying the repository to every host a rotation never rejects new tokens;
- the highest number is the **primary** key: it signs new tokens;
- the others are **secondary** keys: they only verify tokens signed before a rotation.

``rotate()`` promotes the staged key to primary, stages a fresh one and drops the oldest
secondaries so at most ``max_active`` keys remain. Rotate at most once per token lifetime
per secondary slot (with 3 keys and 1 h tokens: at most once an hour) or older tokens stop
verifying early.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from cryptography.fernet import Fernet, MultiFernet

from soko.common.durable import atomic_write, fsync_dir, makedirs_durable


class KeyRepositoryError(RuntimeError):
    """The key repository is missing, unreadable or malformed; the message says which."""


class FernetKeyRepository:
    def __init__(self, path: str | os.PathLike, *, max_active: int = 3,
                 reload_interval: float = 2.0):
        self.path = Path(path)
        self.max_active = max_active
        self.reload_interval = reload_interval
        self._lock = threading.Lock()
        self._loaded_at = float("-inf")
        self._signature: tuple | None = None
        self._keys: list[bytes] = []
        self._multi: MultiFernet | None = None

    # -- setup and rotation (operator actions, under an exclusive file lock) --------------

    def initialize(self) -> bool:
        """Creates the repository with a staged and a primary key; False if it existed."""
        makedirs_durable(self.path.parent)
        with contextlib.suppress(FileExistsError):
            self.path.mkdir(mode=0o700)
            fsync_dir(self.path.parent)
        os.chmod(self.path, 0o700)
        with self._exclusive():
            if self._key_numbers():
                return False
            atomic_write(self.path / "0", Fernet.generate_key(), mode=0o600)
            atomic_write(self.path / "1", Fernet.generate_key(), mode=0o600)
        self._loaded_at = float("-inf")
        return True

    def rotate(self) -> int:
        """Staged key becomes primary, a new key is staged, the oldest are pruned.

        Returns the new primary's number.
        """
        with self._exclusive():
            numbers = self._key_numbers()
            if 0 not in numbers:
                raise KeyRepositoryError(f"{self.path}: no staged key 0; run initialize first")
            primary = max(numbers) + 1
            os.replace(self.path / "0", self.path / str(primary))
            fsync_dir(self.path)
            atomic_write(self.path / "0", Fernet.generate_key(), mode=0o600)
            secondaries = sorted(n for n in numbers if n not in (0,))
            # keep staged + primary + (max_active - 2) secondaries
            keep = max(self.max_active - 2, 0)
            for number in secondaries[: max(len(secondaries) - keep, 0)]:
                (self.path / str(number)).unlink()
            fsync_dir(self.path)
        self._loaded_at = float("-inf")
        return primary

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with open(self.path / ".lock", "a") as lock:
            os.chmod(lock.name, 0o600)
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _key_numbers(self) -> list[int]:
        try:
            names = os.listdir(self.path)
        except FileNotFoundError:
            return []
        return sorted(int(n) for n in names if n.isdigit())

    # -- use --------------------------------------------------------------------------

    def fernet(self) -> MultiFernet:
        """Primary first (signs), then the staged key and secondaries (verify only)."""
        now = time.monotonic()
        if self._multi is None or now - self._loaded_at >= self.reload_interval:
            with self._lock:
                if self._multi is None or now - self._loaded_at >= self.reload_interval:
                    self._reload()
                    self._loaded_at = now
        return self._multi

    def _reload(self) -> None:
        for _ in range(3):  # a rotation may rename a file between listing and reading
            numbers = self._key_numbers()
            if not numbers:
                raise KeyRepositoryError(
                    f"{self.path}: no Fernet keys; `soko up` creates them, or run "
                    "`soko identity keys setup`"
                )
            signature = tuple(numbers)
            if signature == self._signature and self._multi is not None:
                return
            try:
                ordered = [numbers[-1], *reversed(numbers[:-1])] if numbers[-1] != 0 else [0]
                keys = [(self.path / str(n)).read_bytes().strip() for n in ordered]
            except FileNotFoundError:
                continue
            except PermissionError as exc:
                raise KeyRepositoryError(f"{self.path}: cannot read keys: {exc}") from None
            try:
                self._multi = MultiFernet([Fernet(k) for k in keys])
            except ValueError:
                raise KeyRepositoryError(f"{self.path}: a key file is not a Fernet key") from None
            self._keys = keys
            self._signature = signature
            return
        raise KeyRepositoryError(f"{self.path}: keys kept changing while being read")

    def numbers(self) -> list[int]:
        return self._key_numbers()
