"""Objects on a storage node's devices, laid out like Swift's.

``<device>/objects/<partition>/<suffix>/<hash>/<timestamp>.data|.ts|.meta``: a write never
edits a file, it adds a timestamp-named one; the newest ``.data`` or ``.ts`` (tombstone)
decides whether the object exists, and a ``.meta`` newer than that ``.data`` replaces its
user metadata (POST). Older files are removed once a newer one is durable.

Bodies stream into a temp file under ``<device>/tmp`` (same filesystem, so the rename is
atomic), then fsync, rename into the hash dir, fsync that dir. Temps live outside the hash
dir so a rejected PUT (bad ETag, client gone) leaves nothing behind, not even a directory.
Metadata is msgpack in one xattr with a magic and an xxhash checksum; a file whose metadata
or size does not check out is quarantined, never served.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import os
import shutil
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import xxhash

from soko.common.durable import RACE_RETRIES, fsync_dir, in_directory, makedirs_durable
from soko.common.errors import InsufficientStorage
from soko.object.node import expiring
from soko.object.node.blocksums import LAYOUT, METADATA_KEY, BlockHasher, save_sums
from soko.object.node.suffixes import invalidate_suffix
from soko.object.node.writeback import Writeback
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp

XATTR_NAME = "user.soko.metadata"
XATTR_MAGIC = b"SKM1"
READ_CHUNK = 256 * 1024
STALE_TEMP_AGE = 3600


class DiskFileError(Exception):
    """The object's files on disk are unusable (quarantined by whoever raised this)."""


def name_hash(account: str, container: str | None = None, obj: str | None = None) -> str:
    """The 32-hex-digit directory name of an account, container or object."""
    path = "/" + "/".join(p for p in (account, container, obj) if p is not None)
    return xxhash.xxh3_128_hexdigest(path.encode())


def pack_metadata(metadata: dict[str, str]) -> bytes:
    payload = msgpack.packb(metadata, use_bin_type=True)
    return XATTR_MAGIC + xxhash.xxh64_digest(payload) + payload


def unpack_metadata(raw: bytes) -> dict[str, str]:
    payload = raw[12:]
    if raw[:4] != XATTR_MAGIC or raw[4:12] != xxhash.xxh64_digest(payload):
        raise DiskFileError("metadata xattr fails its checksum")
    return msgpack.unpackb(payload, raw=False)


def read_metadata(path: str | os.PathLike | int) -> dict[str, str]:
    try:
        return unpack_metadata(os.getxattr(path, XATTR_NAME))
    except FileNotFoundError:
        raise  # replaced by a newer write meanwhile: not a defect of the file
    except OSError as exc:
        raise DiskFileError(f"cannot read metadata: {exc}") from None


class Devices:
    """The devices of one storage node: ``<root>/<device>``, guarded like Swift's mount_check.

    A device that is missing (or, with ``mount_check``, not a mount point) answers 507: a
    write must never land in the parent filesystem when a disk is gone. Checked on every
    request, as Swift does, but with two ``lstat`` calls: ``os.path.ismount`` resolves the
    parent's real path each time, which was 7 % of a node's CPU per request.
    """

    def __init__(self, root: str | os.PathLike, mount_check: bool):
        self.root = Path(root)
        self.mount_check = mount_check
        self.real_root = os.path.realpath(self.root)

    def path(self, device: str) -> Path:
        if not device or "/" in device or device.startswith("."):
            raise InsufficientStorage(f"no such device: {device!r}")
        path = self.root / device
        ok = self.is_mount(device) if self.mount_check else path.is_dir()
        if not ok:
            raise InsufficientStorage(f"device {device} is not mounted")
        return path

    def is_mount(self, device: str) -> bool:
        """``os.path.ismount(<root>/<device>)``: a directory on another filesystem than its
        parent (the root's real path, resolved once)."""
        try:
            mine = os.lstat(os.path.join(self.real_root, device))
            parent = os.lstat(self.real_root)
        except OSError:
            return False
        return stat.S_ISDIR(mine.st_mode) and (mine.st_dev != parent.st_dev
                                               or mine.st_ino == parent.st_ino)

    def names(self) -> list[str]:
        try:
            return sorted(e.name for e in os.scandir(self.root) if e.is_dir())
        except FileNotFoundError:
            return []


@dataclasses.dataclass
class ObjectState:
    """What the newest files of one object say."""

    timestamp: Timestamp | None = None  # of the newest .data or .ts
    data_path: Path | None = None
    metadata: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def exists(self) -> bool:
        return self.data_path is not None


def parse_name(name: str) -> tuple[Timestamp, str] | None:
    stem, dot, ext = name.rpartition(".")
    if not dot or ext not in ("data", "ts", "meta"):
        return None
    try:
        return Timestamp.parse(stem), ext
    except InvalidTimestamp:
        return None


class DiskFile:
    """One object's hash directory on one device."""

    def __init__(self, device_path: Path, partition: str, account: str, container: str, obj: str):
        self.device_path = device_path
        self.name = f"/{account}/{container}/{obj}"
        digest = name_hash(account, container, obj)
        self.hash_dir = device_path / "objects" / partition / digest[-3:] / digest

    @classmethod
    def at_hash(cls, device_path: Path, partition: str, digest: str) -> DiskFile:
        """The hash dir of an object known only by its hash (replication receives these)."""
        df = cls.__new__(cls)
        df.device_path, df.name = device_path, None
        df.hash_dir = device_path / "objects" / partition / digest[-3:] / digest
        return df

    def index_expiry(self, metadata: dict[str, str]) -> None:
        """Lists the object in the device's expiry index (see ``soko.object.node.expiring``) if
        ``metadata`` gives it an ``X-Delete-At``."""
        delete_at = str(metadata.get("X-Delete-At", ""))
        if delete_at.isdigit():
            expiring.add(self.device_path, int(delete_at), self.hash_dir.parent.parent.name,
                         self.hash_dir.name)

    def invalidate(self) -> None:
        """Tells replication this object's suffix changed."""
        invalidate_suffix(self.hash_dir.parent.parent, self.hash_dir.parent.name)

    def files(self) -> list[tuple[Timestamp, str, str]]:
        """(timestamp, kind, file name), newest first."""
        try:
            names = os.listdir(self.hash_dir)
        except (FileNotFoundError, NotADirectoryError):
            return []
        found = []
        for name in names:
            parsed = parse_name(name)
            if parsed:
                found.append((*parsed, name))
        found.sort(key=lambda f: (f[0], f[1] == "meta"), reverse=True)
        return found

    def read_state(self) -> ObjectState:
        """The newest .data/.ts and its metadata, with a newer .meta applied."""
        for _ in range(RACE_RETRIES - 1):
            # A newer write may replace a file between listing and reading it: look again.
            with contextlib.suppress(FileNotFoundError):
                return self.read_newest()
        return self.read_newest()

    def read_newest(self) -> ObjectState:
        newest_meta = None
        for ts, kind, name in self.files():
            if kind == "meta":
                newest_meta = newest_meta or self.hash_dir / name
                continue
            if kind == "ts":
                return ObjectState(timestamp=ts)
            path = self.hash_dir / name
            try:
                metadata = read_metadata(path)
                if os.path.getsize(path) != int(metadata["Content-Length"]):
                    raise DiskFileError("size differs from its Content-Length")
                if newest_meta is not None:
                    metadata = apply_post(metadata, read_metadata(newest_meta))
            except (DiskFileError, KeyError, ValueError):
                self.quarantine()
                return ObjectState()
            return ObjectState(timestamp=ts, data_path=path, metadata=metadata)
        return ObjectState()

    def writer(self, size: int | None = None, md5: bool = True) -> DiskFileWriter:
        return DiskFileWriter(self, size, md5)

    def write_marker(self, timestamp: Timestamp, kind: str, metadata: dict[str, str]) -> None:
        """Writes an empty ``.ts`` (delete) or ``.meta`` (POST) file durably."""
        with self.writer() as writer:
            writer.commit(timestamp, kind, metadata)

    def cleanup(self, keep: Timestamp) -> None:
        """Removes what the newest .data/.ts at ``keep`` (and the newest .meta) make obsolete."""
        seen_meta = False
        for ts, kind, name in self.files():
            obsolete = ts < keep if kind != "meta" else (seen_meta or ts <= keep)
            seen_meta = seen_meta or kind == "meta"
            if obsolete:
                try:
                    os.unlink(self.hash_dir / name)
                except FileNotFoundError:
                    pass

    quarantined = False

    def quarantine(self) -> None:
        """Moves the whole hash dir aside, so replication restores a good copy."""
        target = self.device_path / "quarantined" / "objects" / f"{self.hash_dir.name}-{time.time_ns()}"
        makedirs_durable(target.parent)
        try:
            os.rename(self.hash_dir, target)
        except FileNotFoundError:
            return
        self.quarantined = True
        fsync_dir(target.parent)
        self.invalidate()


def apply_post(data_meta: dict[str, str], post_meta: dict[str, str]) -> dict[str, str]:
    """A POST replaces every user-settable key of the .data's metadata, keeping the rest."""
    merged = {k: v for k, v in data_meta.items() if not is_post_replaceable(k)}
    merged.update({k: v for k, v in post_meta.items() if k != "X-Timestamp"})
    merged["X-Post-Timestamp"] = post_meta["X-Timestamp"]
    return merged


def is_post_replaceable(key: str) -> bool:
    lower = key.lower()
    return lower.startswith("x-object-meta-") or lower in POST_REPLACEABLE


POST_REPLACEABLE = frozenset(
    {"content-disposition", "content-encoding", "cache-control", "content-language", "expires",
     "x-robots-tag", "x-delete-at", "x-object-manifest"}
)


def new_temp(tmp_dir: Path) -> tuple[int, str]:
    """``tempfile.mkstemp`` without its Python-level name generator (7 % of a small
    PUT's work on the node): 64 random bits name the file, ``O_EXCL`` makes sure."""
    while True:
        path = f"{tmp_dir}/.tmp-{os.urandom(8).hex()}"
        try:
            return os.open(path, TEMP_FLAGS, 0o600), path
        except FileExistsError:
            continue


TEMP_FLAGS = os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


class DiskFileWriter:
    """Streams one body to a temp file computing its MD5; ``commit`` makes it the object."""

    def __init__(self, diskfile: DiskFile, size: int | None = None, md5: bool = True):
        self.diskfile = diskfile
        tmp_dir = diskfile.device_path / "tmp"
        self.fd, self.tmp_path = in_directory(tmp_dir, lambda: new_temp(tmp_dir))
        if size:
            # One up-front allocation: contiguous extents, and ENOSPC before any byte is sent.
            try:
                os.posix_fallocate(self.fd, 0, size)
            except OSError:
                self.close()
                raise
        # No MD5 when the caller checks the body another way (the proxy's footer, footer.py).
        self.md5 = hashlib.md5(usedforsecurity=False) if md5 else None
        self.blocks = BlockHasher()
        self.size = 0
        self.writeback = Writeback(self.fd)

    def write(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if self.md5 is not None:
            self.md5.update(chunk)
        self.blocks.update(chunk)
        self.size += len(chunk)
        self.writeback.written(self.size)

    @property
    def etag(self) -> str:
        return self.md5.hexdigest()

    def commit(self, timestamp: Timestamp, kind: str, metadata: dict[str, str]) -> None:
        """xattrs (a ``.data``'s block sums too), fsync, rename to ``<timestamp>.<kind>``,
        fsync the dir, clean up older files."""
        if kind == "data":
            save_sums(self.fd, self.blocks.finish())
            metadata = {**metadata, METADATA_KEY: LAYOUT}
        os.setxattr(self.fd, XATTR_NAME, pack_metadata(metadata))
        os.fsync(self.fd)
        hash_dir = self.diskfile.hash_dir
        # The hash dir (or its suffix or partition) may be new, or removed meanwhile by a
        # cleanup of empty dirs or a reverted handoff: made again, never a failed write.
        in_directory(hash_dir, lambda: os.rename(self.tmp_path,
                                                 hash_dir / f"{timestamp.normal}.{kind}"))
        self.tmp_path = None
        fsync_dir(hash_dir)
        self.diskfile.index_expiry(metadata)
        newest = self.diskfile.files()
        keep = next((ts for ts, k, _ in newest if k != "meta"), timestamp)
        self.diskfile.cleanup(keep)
        self.diskfile.invalidate()

    def close(self) -> None:
        """Closes the temp file and removes it unless it was committed."""
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.tmp_path is not None:
            try:
                os.unlink(self.tmp_path)
            except FileNotFoundError:
                pass
            self.tmp_path = None

    def __enter__(self) -> DiskFileWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_range(path: Path, start: int, end: int, verify_etag: str | None = None,
               on_corrupt=None) -> Iterator[bytes]:
    """Yields bytes ``[start, end)`` of ``path``; with ``verify_etag`` (a whole-object read)
    the MD5 is checked on the way and the last chunk held back until it matches.

    On a mismatch ``on_corrupt`` (quarantine) runs and DiskFileError is raised: the server
    aborts the connection short of Content-Length, so the client never gets a complete
    wrong body (and the proxy knows to try another replica).
    """
    md5 = hashlib.md5(usedforsecurity=False) if verify_etag is not None else None
    held = None
    with open(path, "rb", buffering=0) as f:
        f.seek(start)
        remaining = end - start
        while remaining > 0:
            chunk = f.read(min(READ_CHUNK, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
            if md5 is None:
                yield chunk
                continue
            md5.update(chunk)
            if held is not None:
                yield held
            held = chunk
    if md5 is not None:
        if md5.hexdigest() != verify_etag:
            if on_corrupt is not None:
                on_corrupt()
            raise DiskFileError(f"{path}: body MD5 differs from its ETag; quarantined")
        if held is not None:
            yield held


def read_verified(path: Path, etag: str) -> bytes | None:
    """The whole body if its MD5 is ``etag``, else None (small objects: checked before
    a single header goes out)."""
    with open(path, "rb", buffering=0) as f:
        body = f.read()
    return body if hashlib.md5(body, usedforsecurity=False).hexdigest() == etag else None


def remove_stale_temps(device_path: Path) -> None:
    """Removes temp files a crash left behind (at node start and on every replicator pass,
    as Swift's replicator does); an upload still writing one is younger than the cutoff."""
    tmp_dir = device_path / "tmp"
    cutoff = time.time() - STALE_TEMP_AGE
    for entry in os.scandir(tmp_dir) if tmp_dir.is_dir() else ():
        with contextlib.suppress(FileNotFoundError):  # finished or removed meanwhile
            if entry.stat().st_mtime < cutoff:
                if entry.is_dir():
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
