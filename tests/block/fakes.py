"""In-memory pool and target: test doubles for the API's state machine tests, held to the
same conformance cases as the real implementations (tests/block/test_conformance.py)."""

from __future__ import annotations

from soko.block.drivers.base import (
    NoSuchSnapshot,
    NoSuchVolume,
    PoolCapacity,
    PoolError,
    VolumeExists,
)
from soko.block.targets.base import ExportSpec
from soko.common.auth import AuthContext
from soko.common.errors import Unauthorized


class MemoryPool:
    def __init__(self, size_bytes: int = 100 << 30):
        self.size_bytes = size_bytes
        self.sizes: dict[str, int] = {}
        self.snapshot_sizes: dict[str, int] = {}

    def setup(self) -> None:
        pass

    def capacity(self) -> PoolCapacity:
        return PoolCapacity(self.size_bytes, self.size_bytes)

    def create(self, volume_id: str, size_bytes: int) -> None:
        if volume_id in self.sizes:
            raise VolumeExists(volume_id)
        self.sizes[volume_id] = size_bytes

    def clone(self, source_id: str, volume_id: str, size_bytes: int) -> None:
        if source_id not in self.sizes:
            raise NoSuchVolume(source_id)
        self.create(volume_id, max(size_bytes, self.sizes[source_id]))

    def extend(self, volume_id: str, size_bytes: int) -> None:
        if volume_id not in self.sizes:
            raise NoSuchVolume(volume_id)
        if size_bytes < self.sizes[volume_id]:
            raise PoolError("cannot shrink")
        self.sizes[volume_id] = size_bytes

    def delete(self, volume_id: str) -> None:
        self.sizes.pop(volume_id, None)

    def path(self, volume_id: str) -> str:
        return f"memory:{volume_id}"

    def size(self, volume_id: str) -> int | None:
        return self.sizes.get(volume_id)

    def volumes(self) -> set[str]:
        return set(self.sizes)

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        if volume_id not in self.sizes:
            raise NoSuchVolume(volume_id)
        if snapshot_id in self.snapshot_sizes:
            raise VolumeExists(snapshot_id)
        self.snapshot_sizes[snapshot_id] = self.sizes[volume_id]

    def clone_snapshot(self, snapshot_id: str, volume_id: str, size_bytes: int) -> None:
        if snapshot_id not in self.snapshot_sizes:
            raise NoSuchSnapshot(snapshot_id)
        self.create(volume_id, max(size_bytes, self.snapshot_sizes[snapshot_id]))

    def delete_snapshot(self, snapshot_id: str) -> None:
        self.snapshot_sizes.pop(snapshot_id, None)

    def snapshot_path(self, snapshot_id: str) -> str:
        return f"memory:snapshot-{snapshot_id}"

    def snapshots(self) -> set[str]:
        return set(self.snapshot_sizes)


class MemoryTarget:
    portal = "127.0.0.1:3260"
    LUN = 1

    def __init__(self):
        self.exports: dict[str, ExportSpec] = {}

    def ensure_running(self) -> None:
        pass

    def export(self, spec: ExportSpec) -> None:
        self.exports[spec.volume_id] = spec

    def unexport(self, volume_id: str) -> None:
        self.exports.pop(volume_id, None)

    def exported(self) -> dict[str, str]:
        return {v: s.initiator for v, s in self.exports.items()}

    def backing_path(self, volume_id: str) -> str | None:
        spec = self.exports.get(volume_id)
        return spec.path if spec else None


def auth(project: str, *roles: str) -> AuthContext:
    return AuthContext(user_id=f"user-{project}", user_name=f"user-{project}",
                       project_id=project, project_name=project,
                       roles=frozenset(roles or ("member",)), expires_at=2e9)


class FixedTokens:
    """Stands in for identity's validator: a few fixed tokens, each one AuthContext."""

    TOKENS = {
        "tok-a": auth("proj-a"),
        "tok-b": auth("proj-b"),
        "tok-reader": auth("proj-a", "reader"),
        "tok-admin": auth("proj-admin", "admin"),
        "tok-service": auth("service", "service"),  # compute's service user (Nova's)
    }

    def validate(self, token: str) -> AuthContext:
        try:
            return self.TOKENS[token]
        except KeyError:
            raise Unauthorized("unknown test token") from None
