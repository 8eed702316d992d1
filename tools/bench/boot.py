"""``soko bench boot``: how long a user waits for a server, from ``server create`` to the
test guest's ready marker on its console, through the public APIs of a running cloud
(``soko up``): booting from a volume that already holds the image, and booting from the
image (the boot volume is created and filled from the object store first).

Each boot-from-volume run boots a fresh copy-on-write clone of one volume made from the
image, so every boot is a first boot of the same disk; every server is deleted with its boot
volume. The image is the test guest (``soko image build-test-guest``), uploaded once.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import click

from soko.block.cli import BlockClient
from soko.common.cli.output import emit_rows
from soko.compute.cli import ComputeClient
from soko.image.guest_files import READY_MARKER

IMAGE_NAME = "soko-bench-guest"


def soko_json(*args: str, data_dir: Path) -> dict:
    """Runs a ``soko`` command (the image upload streams with its own progress bar)."""
    proc = subprocess.run([sys.executable, "-m", "soko.tools.cli", *args, "--format", "json"],
                          env={**os.environ, "SOKO_DATA_DIR": str(data_dir)},
                          stdout=subprocess.PIPE, text=True)
    if proc.returncode != 0:
        raise click.ClickException(f"soko {' '.join(args)} failed")
    return json.loads(proc.stdout)


def guest_image_id(data_dir: Path, image_file: Path | None) -> str:
    """The bench image's id: uploaded on first use (built first unless a file is given)."""
    images = soko_json("image", "list", data_dir=data_dir)
    found = [i for i in images if i["name"] == IMAGE_NAME and i["status"] == "active"]
    if found:
        return found[0]["id"]
    if image_file is None:
        from soko.image import guest_builder as guest_image

        image_file = data_dir / "bench" / "guest.img"
        image_file.parent.mkdir(parents=True, exist_ok=True)
        click.echo(f"building the test guest into {image_file}...", err=True)
        guest_image.build(image_file, size_mib=64)
    return soko_json("image", "create", "--file", str(image_file), "--disk-format", "raw",
                     IMAGE_NAME, data_dir=data_dir)["id"]


def boot_until_ready(compute: ComputeClient, body: dict, timeout: float) -> float:
    """Seconds from the create request to the ready marker; the server is deleted after."""
    started = time.monotonic()
    server = compute.call("POST", "/servers", json={"server": body})["server"]
    try:
        while True:
            shown = compute.call("GET", f"/servers/{server['id']}")["server"]
            if shown["status"] == "ERROR":
                raise click.ClickException(f"server {server['id']} failed: {shown.get('fault')}")
            if shown["status"] == "ACTIVE":
                log = compute.call("POST", f"/servers/{server['id']}/action",
                                   json={"os-getConsoleOutput": {}})["output"]
                if READY_MARKER in log:
                    return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise click.ClickException(f"server {server['id']} not ready in {timeout:.0f} s")
            time.sleep(0.1)
    finally:
        compute.call("DELETE", f"/servers/{server['id']}")
        compute.wait(server["id"], gone=True)


def summary(case: str, times: list[float]) -> dict:
    return {"case": case, "boots": len(times), "p50_s": round(statistics.median(times), 2),
            "min_s": round(min(times), 2), "max_s": round(max(times), 2)}


@click.command("boot")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path),
              default=lambda: os.environ.get("SOKO_DATA_DIR", ".soko"), show_default=".soko",
              help="The running all-in-one's data dir (its admin credentials are used).")
@click.option("--boots", type=click.IntRange(min=1), default=5, show_default=True,
              help="Boots per case.")
@click.option("--flavor", default="m1.tiny", show_default=True)
@click.option("--image-file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="A bootable raw image printing the ready marker (default: build the test guest).")
@click.option("--timeout", type=float, default=300, show_default=True, help="Seconds per boot.")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write JSON here.")
def bench_boot(data_dir, boots, flavor, image_file, timeout, json_path):
    """Time server create -> guest ready: from a volume, and from an image (volume copy
    included). Needs a running cloud: `soko up --detach` first."""
    data_dir = data_dir.absolute()
    login = dict(auth_url=None, username=None, password=None, project_name=None)
    compute = ComputeClient(None, None, data_dir, login)
    volumes = BlockClient(None, None, data_dir, login)
    flavor_id = compute.flavor(flavor)["id"]
    image_id = guest_image_id(data_dir, image_file)
    source = volumes.call("POST", "/volumes", json={"volume": {
        "size": 1, "name": "soko-bench-source", "imageRef": image_id}})["volume"]
    try:
        volumes.wait(source["id"])
        from_volume = []
        for n in range(boots):
            clone = volumes.call("POST", "/volumes", json={"volume": {
                "size": 1, "name": f"soko-bench-{n}", "source_volid": source["id"]}})["volume"]
            volumes.wait(clone["id"])
            from_volume.append(boot_until_ready(compute, {
                "name": f"bench-volume-{n}", "flavorRef": flavor_id,
                "block_device_mapping_v2": [{"boot_index": 0, "uuid": clone["id"],
                                             "source_type": "volume",
                                             "destination_type": "volume",
                                             "delete_on_termination": True}]}, timeout))
            click.echo(f"boot from volume {n + 1}/{boots}: {from_volume[-1]:.1f} s", err=True)
    finally:
        volumes.call("DELETE", f"/volumes/{source['id']}", ok_missing=True)
    from_image = []
    for n in range(boots):
        from_image.append(boot_until_ready(compute, {
            "name": f"bench-image-{n}", "flavorRef": flavor_id,
            "block_device_mapping_v2": [{"boot_index": 0, "uuid": image_id,
                                         "source_type": "image", "volume_size": 1,
                                         "destination_type": "volume",
                                         "delete_on_termination": True}]}, timeout))
        click.echo(f"boot from image {n + 1}/{boots}: {from_image[-1]:.1f} s", err=True)
    rows = [summary("server create -> ready, boot volume exists", from_volume),
            summary("server create -> ready, from image (volume copy included)", from_image)]
    emit_rows(rows, ["case", "boots", "p50_s", "min_s", "max_s"], "table")
    load = os.getloadavg()[0]
    click.echo(f"1 vCPU guest, {flavor}; load average {load:.1f} on {os.cpu_count()} cores; "
               "domain type kvm where a probe shows KVM works, else qemu (TCG)")
    if json_path:
        Path(json_path).write_text(json.dumps({"results": rows, "load_average": load,
                                               "from_volume_s": from_volume,
                                               "from_image_s": from_image}, indent=2))
