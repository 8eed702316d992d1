"""``soko bench block``: a volume through iSCSI (tgt + QEMU's libiscsi client) against the
same volume file read and written directly, in one run, with the iSCSI/raw ratio.

Sequential 1 MiB I/O uses ``qemu-img bench``. It has no random mode, so 4 KiB random I/O
is one ``qemu-io`` run of random-offset ``aio_read``/``aio_write`` in bursts of the queue
depth, each burst ended by ``aio_flush``; the cost of starting qemu-io and logging in is
measured with an empty run and subtracted. The volume is filled once, untimed, so both
paths overwrite allocated blocks, and raw and iSCSI alternate over several rounds: the raw
file's speed swings with the host's cache, so the table gives medians and the ratios'
range. The bench builds its own pool and private tgtd (free control port and portal) in a
scratch directory and removes all of it.
"""

from __future__ import annotations

import json
import math
import random
import re
import socket
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import click

from soko.common.cli.output import emit_rows

MiB = 1 << 20
INITIATOR = "iqn.2026-11.org.soko:bench"


def image_opts(path_or_data) -> str:
    """``--image-opts`` for the raw file (O_DIRECT, Linux AIO) or the iSCSI LUN."""
    if isinstance(path_or_data, str):
        return f"driver=raw,file.driver=file,file.filename={path_or_data},file.aio=native," \
               "cache.direct=on"
    d = path_or_data
    return (f"driver=raw,file.driver=iscsi,file.transport=tcp,file.portal={d['target_portal']},"
            f"file.target={d['target_iqn']},file.lun={d['target_lun']},"
            f"file.initiator-name={INITIATOR},file.user={d['auth_username']},"
            f"file.password={d['auth_password']}")


def seq_mbps(opts: str, *, write: bool, size: int, depth: int) -> float:
    count = size // MiB
    argv = ["qemu-img", "bench", "--image-opts", "-s", "1M", "-c", str(count), "-d",
            str(depth), "-t", "none", *(["-w"] if write else []), opts]
    out = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=600).stdout
    seconds = float(re.search(r"Run completed in ([\d.]+) seconds", out)[1])
    return count * MiB / seconds / 1e6


def qemu_io_seconds(opts: str, commands: list[str]) -> float:
    argv = ["qemu-io", "--image-opts", "-t", "none", opts]
    for command in commands:
        argv += ["-c", command]
    started = time.monotonic()
    subprocess.run(argv, capture_output=True, check=True, timeout=600)
    return time.monotonic() - started


def random_iops(opts: str, *, write: bool, size: int, ops: int, depth: int) -> float:
    rng = random.Random(7)  # the same offsets for raw and iSCSI
    op = "aio_write -q -P 0x5a" if write else "aio_read -q"
    commands = []
    for i in range(ops):
        commands.append(f"{op} {rng.randrange(size // 4096) * 4096} 4k")
        if i % depth == depth - 1:
            commands.append("aio_flush")
    commands.append("aio_flush")
    startup = qemu_io_seconds(opts, ["aio_flush"])
    return ops / max(qemu_io_seconds(opts, commands) - startup, 1e-6)


def measure(opts: str, size: int, ops: int) -> dict[str, float]:
    return {
        "seq_write_MBps": seq_mbps(opts, write=True, size=size, depth=8),
        "seq_read_MBps": seq_mbps(opts, write=False, size=size, depth=8),
        "rand_write_IOPS": random_iops(opts, write=True, size=size, ops=ops, depth=16),
        "rand_read_IOPS": random_iops(opts, write=False, size=size, ops=ops, depth=16),
    }


def free_tcp_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_bench(workdir: Path, size_mb: int, ops: int, backing_store: str, rounds: int) -> dict:
    """One private pool + tgtd with ``backing_store``; raw then iSCSI on one volume, in
    ``rounds`` alternating rounds (the raw file's speed varies with the host's cache)."""
    from soko.block import wiring
    from soko.block.service import BlockConfig
    from soko.block.targets.tgt import unused_control_port
    from soko.common.config import Config

    size_gb = math.ceil(size_mb / 1024)
    section = BlockConfig(pool_size_gb=size_gb + 1, target_helper="tgt",
                          tgt_control_port=unused_control_port(),
                          target_portal=f"127.0.0.1:{free_tcp_port()}",
                          tgt_backing_store=backing_store, reconcile_interval=0)
    manager = wiring.make_manager(Config(data_dir=workdir, sections={"block": section}))
    results: dict[str, list] = {"raw": [], "iscsi": []}
    try:
        wiring.start(manager)
        volume = manager.create(project_id="bench", user_id="bench", size=size_gb)
        raw = image_opts(manager.pool.path(volume.id))
        # Untimed fill: every measured write then overwrites allocated blocks, through
        # either path (a first write into the sparse file also pays for allocation).
        seq_mbps(raw, write=True, size=size_mb * MiB, depth=8)
        iscsi = image_opts(manager.attach("bench", volume.id, INITIATOR).as_cinder()["data"])
        for _ in range(rounds):
            results["raw"].append(measure(raw, size_mb * MiB, ops))
            results["iscsi"].append(measure(iscsi, size_mb * MiB, ops))
        manager.detach("bench", volume.id)
        manager.delete("bench", volume.id)
    finally:
        manager.target.stop_daemon()
        manager.pool.teardown()
    return results


@click.command("block")
@click.option("--size-mb", default=1024, show_default=True, help="Volume size to run over.")
@click.option("--ops", default=4096, show_default=True, help="4 KiB random I/Os per run.")
@click.option("--rounds", default=3, show_default=True, type=click.IntRange(1),
              help="Alternating raw/iSCSI rounds; the table shows medians.")
@click.option("--backing-store", type=click.Choice(["rdwr", "aio", "both"]), default="rdwr",
              show_default=True, help="tgt backing-store type(s) to measure.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False, path_type=Path),
              help="Also write every round's results here.")
def bench_block(size_mb: int, ops: int, rounds: int, backing_store: str,
                json_path: Path | None) -> None:
    """Volume I/O through iSCSI vs the raw volume file (needs root, tgt, qemu-utils)."""
    stores = ["rdwr", "aio"] if backing_store == "both" else [backing_store]
    with tempfile.TemporaryDirectory(prefix="soko-bench-block-", dir="/var/tmp") as tmp:
        results = {store: run_bench(Path(tmp) / store, size_mb, ops, store, rounds)
                   for store in stores}
    rows = []
    for store, result in results.items():
        for metric in result["raw"][0]:
            raw = [r[metric] for r in result["raw"]]
            iscsi = [r[metric] for r in result["iscsi"]]
            ratios = sorted(i / r for i, r in zip(iscsi, raw, strict=True))
            rows.append({"backing_store": store, "metric": metric,
                         "raw": round(statistics.median(raw), 1),
                         "iscsi": round(statistics.median(iscsi), 1),
                         "iscsi_vs_raw": f"{statistics.median(ratios):.0%}",
                         "range": f"{ratios[0]:.0%}–{ratios[-1]:.0%}"})
    emit_rows(rows, list(rows[0]), "table")
    if json_path is not None:
        json_path.write_text(json.dumps({"size_mb": size_mb, "ops": ops, "results": results},
                                        indent=2))
