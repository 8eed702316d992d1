"""The reflink pool: sparse volume files on a loop-backed XFS image with reflink enabled.

The embedded default, like devstack's loop-backed volume group: on first start the
service creates a sparse image file of the configured size, formats it with
``mkfs.xfs -m reflink=1``, attaches it to a loop device and mounts it. Volumes are sparse
files, so a new volume costs nothing until written; a clone is one ``FICLONE`` ioctl that
shares every extent with its source (O(1)); extend is a truncate up. A snapshot is the
same ``FICLONE`` into ``snapshots/`` with the file made read-only (mode 0400).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import subprocess
from pathlib import Path

from soko.block.drivers.base import (
    NoSuchSnapshot,
    NoSuchVolume,
    PoolCapacity,
    PoolError,
    VolumeExists,
)
from soko.common.durable import fsync_dir

FICLONE = 0x40049409  # _IOW(0x94, 9, int) from linux/fs.h
VOLUME_PREFIX = "volume-"
SNAPSHOT_PREFIX = "snapshot-"


def run(argv: list[str]) -> str:
    """Runs a system tool with a C locale; a failure becomes ``PoolError`` with its stderr."""
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=120,
                              env={**os.environ, "LC_ALL": "C"})
    except FileNotFoundError:
        raise PoolError(f"{argv[0]} is not installed (run tools/install-system-deps.sh)") from None
    if proc.returncode != 0:
        raise PoolError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def mount_source(mountpoint: Path) -> str | None:
    """The device mounted at ``mountpoint`` (from /proc/self/mountinfo), or None."""
    target = str(mountpoint)
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            point = fields[4].encode().decode("unicode_escape")  # \040 for spaces
            if point == target:
                return fields[fields.index("-") + 2]
    return None


def loop_device_of(image: Path) -> str | None:
    """The loop device already backed by ``image``, so a restart reuses it."""
    listing = json.loads(run(["losetup", "--list", "--json", "--output", "NAME,BACK-FILE"])
                         or '{"loopdevices": []}')
    for dev in listing.get("loopdevices", []):
        back = (dev.get("back-file") or "").removesuffix(" (deleted)")
        if back == str(image):
            return dev["name"]
    return None


class ReflinkPool:
    def __init__(self, *, image: Path, mountpoint: Path, size_bytes: int):
        self.image = image
        self.mountpoint = mountpoint
        self.size_bytes = size_bytes
        self.volume_dir = mountpoint / "volumes"
        self.snapshot_dir = mountpoint / "snapshots"

    @contextlib.contextmanager
    def locked(self):
        """Serialises set-up and teardown across gunicorn workers starting together."""
        self.image.parent.mkdir(parents=True, exist_ok=True)
        with open(self.image.parent / "pool.lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            yield

    def setup(self) -> None:
        with self.locked():
            if mount_source(self.mountpoint) is None:
                if not self.image.exists():
                    self._format()
                device = loop_device_of(self.image) or run(
                    ["losetup", "--find", "--show", "--direct-io=on", str(self.image)]).strip()
                self.mountpoint.mkdir(parents=True, exist_ok=True)
                try:
                    run(["mount", "-t", "xfs", "-o", "noatime", device, str(self.mountpoint)])
                except PoolError:
                    run(["losetup", "--detach", device])
                    raise
            self.volume_dir.mkdir(exist_ok=True)
            self.snapshot_dir.mkdir(exist_ok=True)

    def _format(self) -> None:
        """Formats under a temporary name so a crash never leaves a half-made image."""
        tmp = self.image.with_name(self.image.name + ".new")
        with open(tmp, "wb") as f:
            f.truncate(self.size_bytes)
        run(["mkfs.xfs", "-q", "-f", "-m", "reflink=1", "-L", "soko-pool", str(tmp)])
        os.replace(tmp, self.image)
        fsync_dir(self.image.parent)

    def teardown(self) -> None:
        """Unmounts and detaches the loop device (tests; an operator's host keeps it)."""
        with self.locked():
            device = mount_source(self.mountpoint)
            if device is not None:
                run(["umount", str(self.mountpoint)])
            device = loop_device_of(self.image)
            if device is not None:
                run(["losetup", "--detach", device])

    def capacity(self) -> PoolCapacity:
        st = os.statvfs(self.mountpoint)
        return PoolCapacity(total_bytes=st.f_blocks * st.f_frsize,
                            free_bytes=st.f_bavail * st.f_frsize)

    def path(self, volume_id: str) -> str:
        return str(self.volume_dir / (VOLUME_PREFIX + volume_id))

    def size(self, volume_id: str) -> int | None:
        try:
            return os.stat(self.path(volume_id)).st_size
        except FileNotFoundError:
            return None

    def volumes(self) -> set[str]:
        return {name.removeprefix(VOLUME_PREFIX) for name in os.listdir(self.volume_dir)
                if name.startswith(VOLUME_PREFIX)}

    def snapshot_path(self, snapshot_id: str) -> str:
        return str(self.snapshot_dir / (SNAPSHOT_PREFIX + snapshot_id))

    def snapshots(self) -> set[str]:
        return {name.removeprefix(SNAPSHOT_PREFIX) for name in os.listdir(self.snapshot_dir)
                if name.startswith(SNAPSHOT_PREFIX)}

    def create(self, volume_id: str, size_bytes: int) -> None:
        with self._new_file(self.path(volume_id), f"volume {volume_id}") as fd:
            os.ftruncate(fd, size_bytes)

    def clone(self, source_id: str, volume_id: str, size_bytes: int) -> None:
        self._reflink(self.path(source_id), NoSuchVolume(f"source volume {source_id} is not in "
                                                         "the pool"),
                      self.path(volume_id), f"volume {volume_id}", size_bytes)

    def snapshot(self, volume_id: str, snapshot_id: str) -> None:
        self._reflink(self.path(volume_id), NoSuchVolume(f"volume {volume_id} is not in the "
                                                         "pool"),
                      self.snapshot_path(snapshot_id), f"snapshot {snapshot_id}", 0, mode=0o400)

    def clone_snapshot(self, snapshot_id: str, volume_id: str, size_bytes: int) -> None:
        self._reflink(self.snapshot_path(snapshot_id),
                      NoSuchSnapshot(f"snapshot {snapshot_id} is not in the pool"),
                      self.path(volume_id), f"volume {volume_id}", size_bytes)

    def _reflink(self, source: str, missing: PoolError, path: str, what: str,
                 size_bytes: int, mode: int = 0o600) -> None:
        """One FICLONE of ``source`` into the new file ``path``, grown to ``size_bytes``."""
        try:
            src = os.open(source, os.O_RDONLY)
        except FileNotFoundError:
            raise missing from None
        try:
            with self._new_file(path, what, mode) as fd:
                fcntl.ioctl(fd, FICLONE, src)
                if size_bytes > os.fstat(fd).st_size:
                    os.ftruncate(fd, size_bytes)
        finally:
            os.close(src)

    @contextlib.contextmanager
    def _new_file(self, path: str, what: str, mode: int = 0o600):
        """Yields an fd of a new pool file; removes it again if filling it fails. The file
        is opened for writing before ``mode`` (which may be read-only) applies."""
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise VolumeExists(f"{what} already exists in the pool") from None
        try:
            yield fd
            os.fchmod(fd, mode)
            os.fsync(fd)
        except BaseException as exc:
            os.close(fd)
            os.unlink(path)
            if isinstance(exc, OSError):
                raise PoolError(f"could not create {what}: {exc}") from exc
            raise
        os.close(fd)
        fsync_dir(os.path.dirname(path))

    def extend(self, volume_id: str, size_bytes: int) -> None:
        try:
            fd = os.open(self.path(volume_id), os.O_WRONLY)
        except FileNotFoundError:
            raise NoSuchVolume(f"volume {volume_id} is not in the pool") from None
        try:
            if size_bytes < os.fstat(fd).st_size:
                raise PoolError(f"volume {volume_id} cannot shrink")
            os.ftruncate(fd, size_bytes)
            os.fsync(fd)
        finally:
            os.close(fd)

    def delete(self, volume_id: str) -> None:
        remove_file(self.path(volume_id))

    def delete_snapshot(self, snapshot_id: str) -> None:
        remove_file(self.snapshot_path(snapshot_id))


def remove_file(path: str) -> None:
    """Truncates before unlinking: XFS frees a truncated file's blocks in the call,
    while an unlinked inode is inactivated later in the background (even syncfs does
    not reliably wait for it), so free space is right the moment delete returns."""
    try:
        os.truncate(path, 0)
        os.unlink(path)
    except FileNotFoundError:
        return
    fsync_dir(os.path.dirname(path))
