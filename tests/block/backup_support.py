"""Shared by the backup tests: an in-memory chunk store (the real one is Swift, exercised by
the privileged tests against a real object cluster) and volume-file helpers."""

from __future__ import annotations

import os
import random
import subprocess
import threading

from soko.block.backups.store import MissingObject

MiB = 1 << 20


class MemoryStore:
    """The ``ObjectStore`` interface over a dict, counting PUTs."""

    def __init__(self):
        self.objects: dict[str, bytes] = {}
        self.puts = 0
        self.lock = threading.Lock()

    def ensure_container(self) -> None:
        pass

    def put(self, name: str, *parts: bytes) -> None:
        with self.lock:
            self.objects[name] = b"".join(parts)
            self.puts += 1

    def get(self, name: str) -> bytes:
        try:
            return self.objects[name]
        except KeyError:
            raise MissingObject(f"{name}: 404") from None

    def delete(self, name: str) -> None:
        self.objects.pop(name, None)

    def names(self, prefix: str):
        return sorted(n for n in list(self.objects) if n.startswith(prefix))

    def chunks(self) -> dict[str, bytes]:
        return {n: d for n, d in self.objects.items() if n.startswith("chunks/")}


def write_random(path, offset: int, length: int, rng: random.Random) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(rng.randbytes(length))


def sparse_file(path, size: int) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def same_content(a, b) -> bool:
    with open(a, "rb") as fa, open(b, "rb") as fb:
        while True:
            x, y = fa.read(4 * MiB), fb.read(4 * MiB)
            if x != y:
                return False
            if not x:
                return True


def allocated(path) -> int:
    return os.stat(path).st_blocks * 512


class FilePool:
    """Wraps the in-memory pool's bookkeeping around real sparse files in a directory (a
    snapshot is a plain copy), so the backup engine reads and writes real volume files
    without root; the reflink pool itself is exercised by the privileged tests."""

    def __init__(self, root):
        from tests.block.fakes import MemoryPool

        self.root = root
        self.memory = MemoryPool()

    def __getattr__(self, name):
        return getattr(self.memory, name)

    def path(self, volume_id: str) -> str:
        return str(self.root / f"volume-{volume_id}")

    def snapshot_path(self, snapshot_id: str) -> str:
        return str(self.root / f"snapshot-{snapshot_id}")

    def create(self, volume_id: str, size_bytes: int) -> None:
        self.memory.create(volume_id, size_bytes)
        sparse_file(self.path(volume_id), size_bytes)

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        self.memory.snapshot(volume_id, snapshot_id)
        subprocess.run(["cp", "--sparse=always", "--reflink=auto", self.path(volume_id),
                        self.snapshot_path(snapshot_id)], check=True)

    def clone_snapshot(self, snapshot_id: str, volume_id: str, size_bytes: int) -> None:
        self.memory.clone_snapshot(snapshot_id, volume_id, size_bytes)
        subprocess.run(["cp", "--sparse=always", "--reflink=auto",
                        self.snapshot_path(snapshot_id), self.path(volume_id)], check=True)

    def delete(self, volume_id: str) -> None:
        self.memory.delete(volume_id)
        if os.path.exists(self.path(volume_id)):
            os.unlink(self.path(volume_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.memory.delete_snapshot(snapshot_id)
        if os.path.exists(self.snapshot_path(snapshot_id)):
            os.unlink(self.snapshot_path(snapshot_id))


class Stores:
    """One in-memory store per project; remembers the tokens it was reached with."""

    def __init__(self):
        self.by_project: dict[str, MemoryStore] = {}
        self.tokens: set[str] = set()

    def __call__(self, project_id: str, token: str) -> MemoryStore:
        self.tokens.add(token)
        return self.by_project.setdefault(project_id, MemoryStore())


class BackupEnv:
    """The block API in-process with backups: file-backed volumes, in-memory chunk stores."""

    def __init__(self, tmp_path):
        import falcon.testing

        from soko.block.api import make_app
        from soko.block.backups.engine import Settings
        from soko.block.backups.manager import BackupManager
        from soko.block.backups.models import Backup
        from soko.block.service import BlockConfig
        from tests.block.conftest import block_config, memory_manager
        from tests.block.fakes import FixedTokens

        (tmp_path / "pool").mkdir()
        self.volumes = memory_manager(tmp_path)
        self.volumes.pool = FilePool(tmp_path / "pool")
        self.stores = Stores()
        self.backups = BackupManager(self.volumes, self.stores, container="volumebackups",
                                     settings=Settings(chunk_size=1 * MiB, workers=2))
        Backup.__table__.create(self.volumes.sessions.kw["bind"], checkfirst=True)
        self.app = make_app(block_config(tmp_path, BlockConfig()), validator=FixedTokens(),
                            manager=self.volumes, backups=self.backups)
        self.client = falcon.testing.TestClient(self.app)
