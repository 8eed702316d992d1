"""``soko bench backup``: the backup engine against a real object store's Swift API.

A scratch volume file of random data is backed up in full, 1 % of it (64 KiB blocks at
random offsets) is rewritten and backed up incrementally, and the full backup is restored;
then a copy of the volume as it was at the full backup is backed up as a new full one
(deduplication: nothing new to send), and a mostly-zero volume (storage ratio). Everything goes into a fresh container that is removed at the end.
"""

from __future__ import annotations

import json
import os
import random
import resource
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import click

from soko.block.backups import codec, engine
from soko.block.backups.manifest import Manifest
from soko.block.backups.store import SwiftStore
from soko.common.cli.output import emit_rows
from soko.common.procs import cpu_seconds as server_cpu_seconds
from soko.common.procs import cpu_used
from soko.tools.bench.object import authenticate

MiB = 1 << 20


def fill(path: Path, size: int, rng: random.Random, data_fraction: float = 1.0) -> None:
    """``size`` bytes: random data in the first ``data_fraction``, holes after."""
    with open(path, "wb") as f:
        f.truncate(size)
        for offset in range(0, int(size * data_fraction), 4 * MiB):
            f.write(rng.randbytes(min(4 * MiB, size - offset)))
        os.fsync(f.fileno())


def change_one_percent(path: Path, size: int, rng: random.Random) -> None:
    block = engine.BLOCK_SIZE
    with open(path, "r+b") as f:
        for index in rng.sample(range(size // block), size // 100 // block):
            f.seek(index * block)
            f.write(rng.randbytes(block))
        os.fsync(f.fileno())


def cpu_seconds() -> float:
    """This process's CPU time, all threads: what a step costs the client, which the
    machine's load does not inflate as it does the wall time."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class ServerMeter:
    """With ``--cpu-match``, the object store's server CPU a step took (the client's own
    is ``cpu_seconds``): which side bounds a backup or restore here."""

    def __init__(self, matches: tuple[str, ...]):
        self.matches = matches

    def start(self) -> dict:
        return server_cpu_seconds(*self.matches) if self.matches else {}

    def used(self, before: dict) -> dict:
        if not self.matches:
            return {}
        return {"server_cpu_seconds": cpu_used(before, server_cpu_seconds(*self.matches))}


def timed_backup(store, path: Path, backup_id: str, parent, settings,
                 meter: ServerMeter) -> tuple[Manifest, dict]:
    started, server = cpu_seconds(), meter.start()
    manifest, stats = engine.backup(str(path), path.stat().st_size, store, backup_id=backup_id,
                                    volume_id="bench", parent=parent, settings=settings,
                                    progress=lambda fraction: None)
    return manifest, {**stats.as_dict(), "cpu_seconds": cpu_seconds() - started,
                      **meter.used(server)}


def run(store: SwiftStore, workdir: Path, size: int, settings: engine.Settings,
        meter: ServerMeter) -> dict:
    rng = random.Random(7)
    volume, copy, sparse = workdir / "volume", workdir / "copy", workdir / "sparse"
    fill(volume, size, rng)
    subprocess.run(["cp", "--reflink=auto", "--sparse=always", str(volume), str(copy)],
                   check=True)
    full, full_stats = timed_backup(store, volume, "full", None, settings, meter)
    change_one_percent(volume, size, rng)
    parent = engine.Parent(full, engine.load_block_map(store, full))
    _, incr_stats = timed_backup(store, volume, "incr", parent, settings, meter)
    restored = workdir / "restored"
    restored.write_bytes(b"")
    os.truncate(restored, size)
    started, started_cpu, server = time.monotonic(), cpu_seconds(), meter.start()
    engine.restore(full, store, str(restored), settings=settings, progress=lambda f: None)
    restore_seconds = time.monotonic() - started
    restore_cpu = cpu_seconds() - started_cpu
    restore_server = meter.used(server)
    restored.unlink()
    volume.unlink()
    _, dedup_stats = timed_backup(store, copy, "copy", None, settings, meter)
    copy.unlink()
    fill(sparse, size, rng, data_fraction=0.01)
    _, zero_stats = timed_backup(store, sparse, "sparse", None, settings, meter)
    stored = full_stats["bytes_uploaded"] + dedup_stats["bytes_uploaded"]
    return {
        "size_bytes": size, "chunk_size": settings.chunk_size,
        "compression": settings.compression, "workers": settings.workers,
        "full": full_stats, "incremental": incr_stats, "restore_seconds": restore_seconds,
        "restore_cpu_seconds": restore_cpu,
        **{f"restore_{k}": v for k, v in restore_server.items()},
        "dedup_copy": dedup_stats, "mostly_zero": zero_stats,
        "dedup_ratio": 2 * size / stored,
        "zero_volume_storage_ratio": zero_stats["bytes_uploaded"] / size,
    }


def clear(store: SwiftStore) -> None:
    for prefix in ("chunks/", "manifests/", "blockmaps/"):
        for name in list(store.names(prefix)):
            store.delete(name)
    store.request("DELETE", ok=(204, 404))


def rows(result: dict) -> list[dict]:
    size = result["size_bytes"]
    full, incr = result["full"], result["incremental"]

    def mbps(seconds: float) -> str:
        return f"{size / seconds / 1e6:.0f} MB/s"

    def cpu(seconds: float) -> str:
        return f"{seconds:.2f} s"

    def server(step: dict, key: str = "server_cpu_seconds") -> dict:
        return {"server cpu": cpu(step[key])} if key in step else {}

    return [
        {"measure": "full backup", "value": f"{full['seconds']:.1f} s",
         "throughput": mbps(full["seconds"]), "client cpu": cpu(full["cpu_seconds"]), **server(full),
         "note": f"{full['bytes_uploaded'] / MiB:.0f} MiB sent"},
        {"measure": "incremental (1 % changed)", "value": f"{incr['seconds']:.1f} s",
         "throughput": mbps(incr["seconds"]), "client cpu": cpu(incr["cpu_seconds"]), **server(incr),
         "note": f"{incr['seconds'] / full['seconds']:.1%} of the full's time; read "
                 f"{incr['bytes_read'] / size:.0%}, sent {incr['bytes_uploaded'] / MiB:.1f} MiB"},
        {"measure": "restore (full)", "value": f"{result['restore_seconds']:.1f} s",
         "throughput": mbps(result["restore_seconds"]),
         "client cpu": cpu(result["restore_cpu_seconds"]),
         **server(result, "restore_server_cpu_seconds"), "note": "digest-verified"},
        {"measure": "dedup (identical copy)", "value": f"{result['dedup_ratio']:.2f}x",
         "throughput": mbps(result["dedup_copy"]["seconds"]),
         "client cpu": cpu(result["dedup_copy"]["cpu_seconds"]),
         "note": f"copy sent {result['dedup_copy']['bytes_uploaded'] / MiB:.1f} MiB"},
        {"measure": "mostly-zero volume (1 % data)",
         "value": f"{result['zero_volume_storage_ratio']:.2%} stored",
         "throughput": mbps(result["mostly_zero"]["seconds"]),
         "client cpu": cpu(result["mostly_zero"]["cpu_seconds"]),
         "note": f"{result['mostly_zero']['bytes_uploaded'] / MiB:.1f} MiB sent"},
    ]


@click.command("backup")
@click.option("--auth", required=True, help="Auth v1.0 URL, e.g. http://127.0.0.1:8080/auth/v1.0")
@click.option("--user", required=True, help="<project>:<user>")
@click.option("--key", required=True)
@click.option("--size-mb", default=1024, show_default=True, help="Volume size.")
@click.option("--chunk-mb", default=16, show_default=True)
@click.option("--compression", type=click.Choice(["auto", *codec.CODECS]), default="auto",
              show_default=True)
@click.option("--workers", default=4, show_default=True, help="Concurrent chunk requests.")
@click.option("--workdir", type=click.Path(file_okay=False, path_type=Path),
              default="/var/tmp", show_default=True, help="Where the scratch volume lives.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write the results here.")
@click.option("--cpu-match", multiple=True,
              help="A substring of the command line of the object store's proxy and node "
                   "processes (repeatable: any of them); adds their CPU seconds per step.")
def bench_backup(auth, user, key, size_mb, chunk_mb, compression, workers, workdir,
                 json_path, cpu_match) -> None:
    """Full and 1 % incremental backup MB/s, restore, dedup and zero-volume ratios."""
    storage_url, token = authenticate(auth, user, key)
    settings = engine.Settings(chunk_size=chunk_mb * MiB, compression=codec.resolve(compression),
                               workers=workers)
    store = SwiftStore(storage_url, token, f"volumebackups-bench-{uuid.uuid4().hex[:8]}",
                       connections=workers)
    try:
        with tempfile.TemporaryDirectory(prefix="soko-bench-backup-", dir=workdir) as tmp:
            result = run(store, Path(tmp), size_mb * MiB, settings, ServerMeter(cpu_match))
    finally:
        clear(store)
    columns = ["measure", "value", "throughput", "client cpu",
               *(["server cpu"] if cpu_match else []), "note"]
    emit_rows(rows(result), columns, "table")
    if json_path is not None:
        json_path.write_text(json.dumps(result, indent=2))
