"""``soko bench snapshot``: snapshot create time for a small and a large volume (the same
data written to both, so only the size differs), and the freeze window of quiesced
snapshots of a mounted ext4 volume while ``soko-writer`` appends fsync'd records to it.

Runs the real manager over a private reflink pool (a sparse loop-backed XFS image in a
scratch directory under /var/tmp), and removes all of it: mounts, loop devices, files.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import click

from soko.common.cli.output import emit_rows
from soko.image.guest_files import SOKO_WRITER

MiB, GiB = 1 << 20, 1 << 30
PROJECT = "bench"
DATA_CHUNKS = 64  # 1 MiB pieces spread over the volume: 64 extents whatever its size


class HostWriter:
    """``soko-writer`` (the test guest's record writer) run on this host at full speed:
    numbered, checksummed, fsync'd records, the last acknowledged one in ``acked``."""

    def __init__(self, directory: Path, acked: Path):
        self.acked = acked
        self.proc = subprocess.Popen(["sh", "-c", SOKO_WRITER, "soko-writer", str(directory),
                                      "0", str(acked)], start_new_session=True)

    def count(self) -> int:
        try:
            text = self.acked.read_text().strip()
        except FileNotFoundError:
            return 0
        return int(text) if text else self.count()  # caught mid-rewrite: read again

    def running(self) -> bool:
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        """Kills the writer and waits for its whole group: a ``sync`` child still open on
        the filesystem would keep it busy."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        while self.running():
            time.sleep(0.02)


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"p50_ms": round(statistics.median(ordered), 1), "p99_ms": round(p99, 1),
            "max_ms": round(ordered[-1], 1)}


def write_spread(path: str, size_bytes: int) -> None:
    with open(path, "r+b") as f:
        for i in range(DATA_CHUNKS):
            f.seek(i * (size_bytes // DATA_CHUNKS))
            f.write(os.urandom(MiB))
        os.fsync(f.fileno())


def create_times(manager, size_gb: int, count: int) -> list[float]:
    volume = manager.create(project_id=PROJECT, user_id=PROJECT, size=size_gb)
    write_spread(manager.pool.path(volume.id), size_gb * GiB)
    times, taken = [], []
    try:
        for _ in range(count):
            started = time.perf_counter()
            taken.append(manager.snapshots.create(project_id=PROJECT, user_id=PROJECT,
                                                  volume_id=volume.id).id)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        for snapshot_id in taken:
            manager.snapshots.delete(PROJECT, snapshot_id)
        manager.delete(PROJECT, volume.id)
    return times


def freeze_windows(manager, workdir: Path, count: int) -> tuple[list[float], list[float]]:
    """Quiesced snapshots of a mounted, written-to ext4 volume: (windows, create times)."""
    from soko.block.quiesce import Quiescer

    manager.snapshots.quiescer = Quiescer(manager.state_dir, {"fs": [{"kind": "fsfreeze"}]})
    volume = manager.create(project_id=PROJECT, user_id=PROJECT, size=1)
    device = manager.local.attach_volume(PROJECT, volume.id).device
    mnt = workdir / "mnt"
    mnt.mkdir()
    windows, times, taken = [], [], []
    try:
        subprocess.run(["mkfs.ext4", "-q", "-F", device], check=True)
        subprocess.run(["mount", device, str(mnt)], check=True)
        writer = HostWriter(mnt, workdir / "writer.acked")
        try:
            while writer.count() < 10:
                time.sleep(0.05)
            for _ in range(count):
                started = time.perf_counter()
                snapshot = manager.snapshots.create(project_id=PROJECT, user_id=PROJECT,
                                                    volume_id=volume.id, force=True,
                                                    quiesce="fs")
                times.append((time.perf_counter() - started) * 1000)
                taken.append(snapshot.id)
                windows.append(float(snapshot.meta["freeze_window_ms"]))
        finally:
            writer.stop()
            subprocess.run(["umount", str(mnt)], check=True)
    finally:
        manager.local.detach_volume(PROJECT, volume.id)
        for snapshot_id in taken:
            manager.snapshots.delete(PROJECT, snapshot_id)
        manager.delete(PROJECT, volume.id)
    return windows, times


def run_bench(workdir: Path, large_gb: int, creates: int, quiesced: int) -> list[dict]:
    from soko.block import wiring
    from soko.block.service import BlockConfig
    from soko.common.config import Config

    section = BlockConfig(pool_size_gb=large_gb + 8, target_helper="tgt", reconcile_interval=0)
    manager = wiring.make_manager(Config(data_dir=workdir, sections={"block": section}))
    try:
        wiring.start(manager)
        manager.set_quota(PROJECT, {"snapshots": -1, "gigabytes": -1, "volumes": -1})
        rows = []
        for size_gb in (1, large_gb):
            rows.append({"case": f"snapshot create, {size_gb} GiB volume", "n": creates,
                         **percentiles(create_times(manager, size_gb, creates)),
                         "goal": "< 200 ms, flat in size"})
        windows, times = freeze_windows(manager, workdir, quiesced)
        rows.append({"case": "quiesced snapshot create (fsfreeze, writer running)",
                     "n": quiesced, **percentiles(times), "goal": ""})
        rows.append({"case": "freeze window", "n": quiesced, **percentiles(windows),
                     "goal": "p99 < 100 ms"})
    finally:
        manager.pool.teardown()
    return rows


@click.command("snapshot")
@click.option("--large-gb", default=64, show_default=True, help="The large volume's size.")
@click.option("--creates", default=20, show_default=True, help="Snapshots per volume size.")
@click.option("--quiesced", default=50, show_default=True,
              help="Quiesced snapshots for the freeze window.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results here.")
def bench_snapshot(large_gb: int, creates: int, quiesced: int, json_path: Path | None) -> None:
    """Snapshot create time (1 GiB vs --large-gb) and freeze window (needs root)."""
    with tempfile.TemporaryDirectory(prefix="soko-bench-snapshot-", dir="/var/tmp") as tmp:
        rows = run_bench(Path(tmp), large_gb, creates, quiesced)
    emit_rows(rows, list(rows[0]), "table")
    if json_path is not None:
        json_path.write_text(json.dumps(rows, indent=2))
