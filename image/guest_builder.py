"""Builds the tiny self-booting test guest disk that compute tests and demos boot.

The disk is raw: syslinux's MBR, one bootable ext4 partition at 1 MiB holding a Debian cloud
kernel, an initramfs with the virtio modules (the kernel has them as modules, so the root disk
is unreachable without one), busybox as init, qemu-guest-agent on the virtio-serial port, and
dropbear as the ssh server for the key the metadata service hands out (``guest_files``).
Every byte comes from Debian packages fetched with ``apt-get download`` into a cache keyed by
package version, so a rebuild costs seconds and never touches the host's installed packages;
only the shared libraries of qemu-ga, dropbear and mke2fs are copied from the (Debian) host, as ``ldd``
resolves them. The guest prints ``SOKO-GUEST-READY ...`` on ttyS0 when it is usable, and
``SOKO-DISK-READY dev=/dev/vdX mnt=/mnt/vdX`` for every extra disk it mounts (at boot or when
hot-plugged), formatting a disk with ext4 only when its first MiB is blank.

Building needs root: extlinux installs its boot sector through a mounted filesystem.
"""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from soko.image import guest_files

CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "soko" / "guest"
KERNEL_META = "linux-image-cloud-amd64"
TOOL_PACKAGES = ("busybox-static", "qemu-guest-agent", "extlinux", "syslinux-common",
                 "dropbear-bin")
ROOT_LABEL = "soko-root"
# Built into the cloud kernel: ext4, 8250 serial, devtmpfs, msdos partitions. Modules: these.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "virtio_scsi", "sd_mod")
ROOTFS_MODULES = INITRAMFS_MODULES + ("virtio_net", "virtio_console", "virtio_rng")
PART_START = 1 << 20
ENV = {**os.environ, "LC_ALL": "C"}


class GuestImageError(RuntimeError):
    """The image could not be built; the message says what to fix."""


def run(argv: list[str], **kwargs) -> str:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, env=ENV, **kwargs)
    except FileNotFoundError:
        raise GuestImageError(f"{argv[0]} is not installed; run tools/install-system-deps.sh") from None
    if proc.returncode != 0:
        raise GuestImageError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# --------------------------------------------------------------------------- packages


@dataclass(frozen=True)
class Candidate:
    """The version of a package that ``apt-get download`` would fetch."""

    package: str
    version: str
    arch: str
    depends: str

    @property
    def stem(self) -> str:  # how apt-get download names the .deb
        return f"{self.package}_{self.version.replace(':', '%3a')}_{self.arch}"


def candidates(*packages: str) -> dict[str, Candidate]:
    """One apt-cache call for all ``packages`` (each call spends most of a second loading
    apt's cache, so asking per package would dominate a cached build)."""
    found = {}
    for stanza in run(["apt-cache", "show", "--no-all-versions", *packages]).split("\n\n"):
        fields = dict(re.findall(r"^([A-Za-z-]+): (.*)$", stanza, re.M))
        if "Package" in fields:
            found[fields["Package"]] = Candidate(fields["Package"], fields["Version"],
                                                 fields["Architecture"], fields.get("Depends", ""))
    return found


class PackageCache:
    """Debian packages downloaded and unpacked once per version, under ``root``.

    Concurrent builds (parallel test runs) may share it: every entry is made in a private
    temporary directory and renamed into place whole, so nobody sees half a .deb or tree.
    """

    def __init__(self, root: Path = CACHE_DIR):
        self.root = root
        self.debs = root / "debs"
        self.trees = root / "trees"

    def tree(self, package: Candidate) -> Path:
        """The unpacked contents of ``package``, downloaded and unpacked on first use."""
        tree = self.trees / package.stem
        if tree.is_dir():
            return tree
        deb = self.debs / f"{package.stem}.deb"
        self.debs.mkdir(parents=True, exist_ok=True)
        self.trees.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.root, prefix=".partial-") as tmp:
            if not deb.exists():
                run(["apt-get", "download", "-q", f"{package.package}={package.version}"], cwd=tmp)
                os.replace(Path(tmp) / deb.name, deb)
            run(["dpkg-deb", "-x", str(deb), str(Path(tmp) / "tree")])
            with contextlib.suppress(OSError):  # another build got there first: same content
                (Path(tmp) / "tree").rename(tree)
        return tree


def resolve_packages() -> list[Candidate]:
    """The kernel the cloud-kernel metapackage points at, then the tool packages."""
    found = candidates(KERNEL_META, *TOOL_PACKAGES)
    match = re.search(r"(linux-image-[0-9][^ ,]*)", found[KERNEL_META].depends)
    if not match:
        raise GuestImageError(f"cannot resolve the kernel package from {KERNEL_META}")
    return [*candidates(match.group(1)).values(), *(found[p] for p in TOOL_PACKAGES)]


# --------------------------------------------------------------------------- kernel modules


def modinfo_depends(ko: Path) -> list[str]:
    """The ``depends=`` list from a module's ``.modinfo`` ELF section (what depmod reads)."""
    data = ko.read_bytes()
    if data[:4] != b"\x7fELF" or data[4] != 2:
        raise GuestImageError(f"{ko} is not an uncompressed 64-bit ELF module")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def section(i: int) -> tuple[int, int, int]:
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, names_at, _ = section(shstrndx)
    for i in range(shnum):
        name, offset, size = section(i)
        if data[names_at + name : data.index(b"\0", names_at + name)] == b".modinfo":
            for entry in data[offset : offset + size].split(b"\0"):
                if entry.startswith(b"depends="):
                    return [d for d in entry[8:].decode().split(",") if d]
    return []


def modules_in_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[Path]:
    """Module files (relative to ``modules_dir``) for ``wanted`` and their deps, deps first."""
    by_name = {ko.name[:-3].replace("-", "_"): ko for ko in modules_dir.rglob("*.ko")}
    ordered: list[Path] = []

    def visit(name: str) -> None:
        ko = by_name.get(name.replace("-", "_"))
        if ko is None:
            raise GuestImageError(f"kernel module {name} not found under {modules_dir}")
        rel = ko.relative_to(modules_dir)
        if rel in ordered:
            return
        for dep in modinfo_depends(ko):
            visit(dep)
        ordered.append(rel)

    for name in wanted:
        visit(name)
    return ordered


def install_modules(kernel: Path, kver: str, wanted: tuple[str, ...], root: Path) -> None:
    """Copies ``wanted`` modules into ``root`` with ``soko-modules.load``, the order to insmod them."""
    src = kernel / "lib" / "modules" / kver
    dst = root / "lib" / "modules" / kver
    order = modules_in_load_order(src, wanted)
    for rel in order:
        (dst / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel, dst / rel)
    (dst / "soko-modules.load").write_text("".join(f"{rel}\n" for rel in order))


# --------------------------------------------------------------------------- root filesystem


def put(root: Path, path: str, content: str | bytes, mode: int = 0o644) -> None:
    """Writes a file into the staging tree; unlinks first so a symlink is never written through."""
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.unlink(missing_ok=True)
    target.write_bytes(content.encode() if isinstance(content, str) else content)
    target.chmod(mode)


def install_busybox(busybox: Path, root: Path) -> None:
    """busybox plus one *relative* link per applet: an absolute link in a staging tree points
    at the host's files, and a later copy onto it would overwrite them."""
    put(root, "bin/busybox", busybox.read_bytes(), 0o755)
    for applet in run([str(busybox), "--list-full"]).split():
        link = root / applet
        if not link.exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to("../" * applet.count("/") + "bin/busybox")


def install_with_libs(binary: Path, root: Path, dest: str) -> None:
    """Copies a dynamically linked host-runnable binary and the libraries ldd resolves for it."""
    ldd = run(["ldd", str(binary)])
    if "not found" in ldd:
        missing = [line.split()[0] for line in ldd.splitlines() if "not found" in line]
        raise GuestImageError(f"{binary.name} needs {', '.join(missing)}: run tools/install-system-deps.sh")
    put(root, dest, binary.read_bytes(), 0o755)
    for lib in re.findall(r"(?:=> )?(/\S+) \(0x", ldd):
        put(root, lib, Path(lib).read_bytes(), 0o755)


def build_rootfs(root: Path, tools: dict[str, Path], kernel: Path, kver: str) -> None:
    for d in ("dev", "proc", "sys", "run", "root", "mnt", "www", "var"):
        (root / d).mkdir(parents=True, exist_ok=True)
    (root / "tmp").mkdir(mode=0o1777)
    (root / "tmp").chmod(0o1777)
    (root / "var" / "run").symlink_to("../run")
    install_busybox(tools["busybox-static"] / "bin" / "busybox", root)
    install_with_libs(tools["qemu-guest-agent"] / "usr" / "sbin" / "qemu-ga", root, "usr/sbin/qemu-ga")
    install_with_libs(Path(shutil.which("mke2fs") or "/sbin/mke2fs"), root, "sbin/mke2fs")
    install_with_libs(tools["dropbear-bin"] / "usr" / "sbin" / "dropbear", root,
                      "usr/sbin/dropbear")
    (root / "sbin" / "mkfs.ext4").unlink(missing_ok=True)
    (root / "sbin" / "mkfs.ext4").symlink_to("mke2fs")
    if Path("/etc/mke2fs.conf").exists():
        put(root, "etc/mke2fs.conf", Path("/etc/mke2fs.conf").read_bytes())
    for path, (content, mode) in guest_files.ROOTFS.items():
        put(root, path, content, mode)
    put(root, "boot/extlinux/extlinux.conf", guest_files.extlinux_conf(ROOT_LABEL))
    install_modules(kernel, kver, ROOTFS_MODULES, root)


# --------------------------------------------------------------------------- initramfs


def cpio_newc(entries: list[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive (the initramfs format) of (name, mode, data, rdev) entries."""
    out = bytearray()

    def pad4() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate([*entries, ("TRAILER!!!", 0, b"", 0)], 1):
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF, len(name) + 1, 0)
        out += b"070701" + "".join(f"{f:08X}" for f in fields).encode() + name.encode() + b"\0"
        pad4()
        out += data
        pad4()
    return bytes(out)


def build_initramfs(busybox: Path, kernel: Path, kver: str, staging: Path) -> bytes:
    install_modules(kernel, kver, INITRAMFS_MODULES, staging)
    entries = [(d, 0o040755, b"", 0) for d in ("bin", "dev", "proc", "sys", "newroot")]
    entries += [("dev/console", 0o020600, b"", 0x0501), ("dev/null", 0o020666, b"", 0x0103)]
    entries += [("bin/busybox", 0o100755, busybox.read_bytes(), 0),
                ("init", 0o100755, guest_files.INITRAMFS_INIT.encode(), 0)]
    for path in sorted(staging.rglob("*")):
        rel = str(path.relative_to(staging))
        entries.append((rel, 0o040755, b"", 0) if path.is_dir() else (rel, 0o100644, path.read_bytes(), 0))
    return gzip.compress(cpio_newc(entries), compresslevel=6, mtime=0)


# --------------------------------------------------------------------------- disk


def mbr_partition_table(disk_bytes: int) -> bytes:
    """Bytes 446-511 of the MBR: one bootable Linux partition from 1 MiB to the end."""
    first, count = PART_START // 512, (disk_bytes - PART_START) // 512

    def chs(lba: int) -> bytes:  # 255 heads x 63 sectors, saturated past cylinder 1023
        if lba >= 1024 * 255 * 63:
            return b"\xfe\xff\xff"
        cyl, rest = divmod(lba, 255 * 63)
        head, sector = divmod(rest, 63)
        return bytes([head, (sector + 1) | ((cyl >> 2) & 0xC0), cyl & 0xFF])

    entry = b"\x80" + chs(first) + b"\x83" + chs(first + count - 1) + struct.pack("<II", first, count)
    return entry + b"\0" * 48 + b"\x55\xaa"


def copy_sparse(src: Path, dst: Path, offset: int) -> None:
    """Copies ``src`` into ``dst`` at ``offset``, leaving all-zero MiBs as holes."""
    chunk = 1 << 20
    with open(src, "rb") as fin, open(dst, "r+b") as fout:
        pos = offset
        while block := fin.read(chunk):
            if block.count(0) != len(block):
                fout.seek(pos)
                fout.write(block)
            pos += len(block)


@contextlib.contextmanager
def loop_mounted(fs_image: Path, mountpoint: Path):
    mountpoint.mkdir(exist_ok=True)
    run(["mount", "-o", "loop", str(fs_image), str(mountpoint)])
    try:
        yield mountpoint
    finally:
        run(["umount", str(mountpoint)])


def build(out: Path, size_mib: int = 64, cache: PackageCache | None = None) -> dict[str, str]:
    """Builds the guest disk at ``out``; returns the package versions it was built from."""
    if size_mib < 48:
        raise GuestImageError("the guest image needs at least 48 MiB (the kernel alone is 14 MB)")
    if os.geteuid() != 0:
        raise GuestImageError("building the guest image needs root (extlinux needs a mounted filesystem)")
    cache = cache or PackageCache()
    packages = resolve_packages()
    kernel = cache.tree(packages[0])
    tools = {pkg.package: cache.tree(pkg) for pkg in packages[1:]}
    kver = next((kernel / "lib" / "modules").iterdir()).name
    syslinux = tools["syslinux-common"] / "usr" / "lib" / "syslinux"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=".guest-build-") as tmp:
        work = Path(tmp)
        build_rootfs(work / "root", tools, kernel, kver)
        initrd = build_initramfs(tools["busybox-static"] / "bin" / "busybox", kernel, kver, work / "initramfs")
        fs_image = work / "rootfs.ext4"
        with open(fs_image, "wb") as f:
            f.truncate(size_mib * (1 << 20) - PART_START)
        # extlinux 6.04 cannot read 64bit ext4; 4 KiB blocks keep the kernel's extent tree flat.
        run(["mkfs.ext4", "-q", "-F", "-L", ROOT_LABEL, "-b", "4096", "-O", "^64bit",
             "-d", str(work / "root"), str(fs_image)])
        with loop_mounted(fs_image, work / "mnt") as mnt:
            # Copied in, not put through mkfs -d, which would leave zero blocks as holes that
            # syslinux cannot read ("Loading /boot/vmlinuz failed: I/O error").
            shutil.copyfile(kernel / "boot" / f"vmlinuz-{kver}", mnt / "boot" / "vmlinuz")
            (mnt / "boot" / "initrd.img").write_bytes(initrd)
            shutil.copyfile(syslinux / "modules" / "bios" / "ldlinux.c32", mnt / "boot" / "extlinux" / "ldlinux.c32")
            os.sync()
            run([str(tools["extlinux"] / "usr" / "bin" / "extlinux"), "--install", str(mnt / "boot" / "extlinux")])
        disk = work / "disk.img"
        with open(disk, "wb") as f:
            f.truncate(size_mib << 20)
            f.write((syslinux / "mbr" / "mbr.bin").read_bytes()[:440])
            f.seek(446)
            f.write(mbr_partition_table(size_mib << 20))
        # ldlinux finds its partition from the MBR's handover, so building the filesystem at
        # offset 0 and moving it to 1 MiB afterwards is fine (no partition scanning needed).
        copy_sparse(fs_image, disk, PART_START)
        disk.rename(out)
    return {pkg.package: pkg.version for pkg in packages}


@click.command("build-test-guest")
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--size-mib", default=64, show_default=True, help="Size of the raw disk.")
def build_test_guest(out: Path, size_mib: int) -> None:
    """Build the small self-booting test guest disk OUT (raw; needs root and apt)."""
    try:
        versions = build(out, size_mib)
    except GuestImageError as exc:
        raise click.ClickException(str(exc)) from None
    allocated = os.stat(out).st_blocks * 512 >> 20
    click.echo(f"built {out} ({size_mib} MiB, {allocated} MiB allocated) from "
               + ", ".join(f"{p} {v}" for p, v in versions.items()))


if __name__ == "__main__":
    sys.exit(build_test_guest())
