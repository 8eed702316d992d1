"""Volumes from images and back, with the real pieces: the object cluster and soko-image
(``image_stack``), the block API on the session's reflink pool and tgtd, and QEMU's iSCSI
client reading the volume as a guest would."""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import falcon.testing
import pytest
import requests
from click.testing import CliRunner

from soko.common.config import Config
from tests.block.iscsi import image_opts
from tests.image.image_stack import ImageStack
from tests.support import served

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

INITIATOR = "iqn.2026-11.test.images:host"


class Block:
    """The block API in-process (its fill and upload threads run here), real pool and tgtd,
    tokens checked by identity's keys, images through the image stack's soko-image."""

    def __init__(self, stack: ImageStack, real_block: Config):
        from soko.block import wiring
        from soko.block.api import make_app
        from soko.common import services
        from soko.identity.tokens import FernetTokenValidator

        stack_config = services.load(stack.config_path, stack.cluster.data_dir)
        config = Config(data_dir=real_block.data_dir, sections={
            "block": real_block.section("block"), "image": stack_config.section("image")})
        self.manager = wiring.make_manager(real_block)
        self.validator = FernetTokenValidator.from_config(stack_config)
        self.app = make_app(config, validator=self.validator, manager=self.manager)
        self.client = falcon.testing.TestClient(self.app)
        self.stack = stack

    def close(self) -> None:
        """Lets go of identity's DB, which lives on the image stack's XFS mount."""
        self.validator.revocations.engine.dispose()

    def call(self, method: str, path: str, user: str = "test:tester", **kwargs):
        storage_url, token = self.stack.login(user)
        project = storage_url.rsplit("AUTH_", 1)[1]
        return self.client.simulate_request(method, f"/v3/{project}{path}",
                                            headers={"X-Auth-Token": token}, **kwargs)

    def wait(self, volume_id: str, timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        while True:
            volume = self.call("GET", f"/volumes/{volume_id}").json["volume"]
            if volume["status"] not in ("creating", "downloading", "uploading"):
                return volume
            assert time.monotonic() < deadline, f"volume still {volume['status']}"
            time.sleep(0.2)

    def from_image(self, image_id: str, size: int = 1) -> dict:
        r = self.call("POST", "/volumes", json={"volume": {"size": size, "imageRef": image_id,
                                                           "name": "from-image"}})
        assert r.status_code == 202, r.text
        assert r.json["volume"]["status"] == "downloading"
        return self.wait(r.json["volume"]["id"])

    def delete(self, volume_id: str) -> None:
        assert self.call("DELETE", f"/volumes/{volume_id}").status_code == 202

    def state(self) -> tuple:
        """What a failed request must not change: rows, pool files, the pool dir's entries."""
        rows = sorted(v.id for v in self.manager.list(None))
        return rows, sorted(self.manager.pool.volumes()), sorted(
            p.name for p in Path(self.manager.pool.path("x")).parent.iterdir())


@pytest.fixture(scope="module")
def block(image_stack, real_block) -> Iterator[Block]:
    block = Block(image_stack, real_block)
    yield block
    block.close()


@pytest.fixture(scope="module")
def guest_in_store(image_stack, guest_image):
    """The test guest uploaded as a raw image (64 segments of 1 MiB)."""
    created = image_stack.cli_json("create", "--file", str(guest_image), "--disk-format", "raw",
                                   f"guest-{uuid.uuid4().hex[:6]}")
    yield created
    image_stack.cli("delete", created["id"])


def compare(*argv: str) -> None:
    """``qemu-img compare``: same bytes (the extra tail of a larger volume reads as zeros)."""
    proc = subprocess.run(["qemu-img", "compare", *argv], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def compare_lun(reference: Path, data: dict) -> None:
    """The raw ``reference`` against the volume's LUN, read through QEMU's iSCSI client."""
    secret, _, lun = image_opts(data, INITIATOR)[1:]
    compare("--object", secret, "--image-opts",
            f"driver=raw,file.driver=file,file.filename={reference}", lun)


def test_volume_from_image_is_bootable_and_holds_the_image(block, guest_in_store, guest_image):
    volume = block.from_image(guest_in_store["name"])  # a unique name works as an id
    try:
        assert volume["status"] == "available", volume
        assert volume["bootable"] == "true"
        meta = volume["volume_image_metadata"]
        assert meta["image_id"] == guest_in_store["id"]
        assert meta["checksum"] == guest_in_store["checksum"] and meta["disk_format"] == "raw"
        allocated = os.stat(block.manager.pool.path(volume["id"])).st_blocks * 512
        assert allocated < guest_image.stat().st_size  # zero chunks were not written
        r = block.call("POST", f"/volumes/{volume['id']}/action", json={
            "os-initialize_connection": {"connector": {"initiator": INITIATOR}}})
        assert r.status_code == 200, r.text
        data = r.json["connection_info"]["data"]
        compare_lun(guest_image, data)
        block.call("POST", f"/volumes/{volume['id']}/action", json={"os-detach": {}})
        block.wait(volume["id"])
    finally:
        block.delete(volume["id"])


def test_bad_image_requests_leave_nothing(block, image_stack, tmp_path):
    big = tmp_path / "big.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(big), "3G"], check=True)
    large = image_stack.cli_json("create", "--file", str(big), "--disk-format", "qcow2", "3g")
    theirs = image_stack.cli_json("create", "--file", str(big), "--disk-format", "qcow2",
                                  "theirs", user="other:otheruser")
    try:
        before = block.state()
        cases = [
            ({"size": 1, "imageRef": large["id"]}, "smaller than the image's virtual size"),
            ({"size": 1, "imageRef": str(uuid.uuid4())}, "does not exist"),
            ({"size": 4, "imageRef": theirs["id"]}, "not visible"),
            ({"size": 4, "imageRef": large["id"], "source_volid": str(uuid.uuid4())},
             "not both"),
        ]
        for spec, message in cases:
            r = block.call("POST", "/volumes", json={"volume": spec})
            assert r.status_code == 400 and message in r.json["error"]["message"], r.text
        assert block.state() == before
    finally:
        image_stack.cli("delete", large["id"])
        image_stack.cli("delete", theirs["id"], user="other:otheruser")


def test_upload_to_image_round_trip(block, image_stack, guest_in_store, guest_image, tmp_path):
    volume = block.from_image(guest_in_store["id"])
    copies = []
    try:
        r = block.call("POST", f"/volumes/{volume['id']}/action", json={
            "os-volume_upload_image": {"image_name": "from-volume", "disk_format": "qcow2"}})
        assert r.status_code == 202, r.text
        upload = r.json["os-volume_upload_image"]
        assert upload["status"] == "uploading" and upload["disk_format"] == "qcow2"
        busy = block.call("POST", f"/volumes/{volume['id']}/action", json={
            "os-volume_upload_image": {"image_name": "again"}})
        assert busy.status_code == 409  # one upload at a time; nothing else touches it
        assert block.wait(volume["id"])["status"] == "available"
        image = image_stack.cli_json("show", upload["image_id"])
        assert image["status"] == "active" and image["virtual_size"] == 1 << 30
        downloaded = tmp_path / "volume.qcow2"
        image_stack.cli("download", image["id"], "--file", str(downloaded))
        compare("-f", "raw", "-F", "qcow2", str(guest_image), str(downloaded))
        # ... and back into a new volume (qcow2 -> raw through qemu-img convert)
        copy = block.from_image(image["id"])
        copies.append(copy["id"])
        assert copy["status"] == "available" and copy["bootable"] == "true"
        compare("-f", "raw", "-F", "raw", str(guest_image), block.manager.pool.path(copy["id"]))
    finally:
        for volume_id in [volume["id"], *copies]:
            block.delete(volume_id)
        for found in image_stack.cli_json("list", "--name", "from-volume"):
            image_stack.cli("delete", found["id"])


def test_corrupted_image_data_fails_the_fill(block, image_stack, tmp_path):
    """A segment changed behind the image service's back (through the Swift API, as any
    project member could): the fill refuses it, the volume goes to error, delete cleans."""
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"\x01" * (3 << 20))
    image = image_stack.cli_json("create", "--file", str(disk), "--disk-format", "raw", "bad")
    try:
        storage_url, token = image_stack.login("test:tester")
        requests.put(f"{storage_url}/images/{image['id']}/00001", data=b"\x02" * (1 << 20),
                     headers={"X-Auth-Token": token}, timeout=10).raise_for_status()
        before = block.state()
        volume = block.from_image(image["id"])
        assert volume["status"] == "error" and volume["bootable"] == "false"
        block.delete(volume["id"])
        assert block.state() == before
    finally:
        image_stack.cli("delete", image["id"])


def test_volume_cli_from_image_and_back(block, image_stack, guest_in_store):
    """`soko volume create --image-id` and `soko volume upload-to-image`, over HTTP."""
    from soko.tools.cli import cli

    storage_url, token = image_stack.login("test:tester")
    project = storage_url.rsplit("AUTH_", 1)[1]
    with served(block.app) as url:
        def soko_volume(*args: str):
            return CliRunner().invoke(cli, ["volume", "--os-url", f"{url}/v3/{project}",
                                            "--os-token", token, *args])

        refused = soko_volume("create", "--image-id", "no-such-image", "1")
        assert refused.exit_code != 0 and "does not exist" in refused.output
        created = soko_volume("create", "--image-id", guest_in_store["id"], "--name",
                              "cli-boot", "1", "--format", "json")
        volume = json.loads(created.output)
        try:
            assert volume["status"] == "available" and volume["bootable"] == "true"
            uploaded = soko_volume("upload-to-image", "cli-boot", "cli-image", "--disk-format",
                                   "qcow2", "--format", "json")
            info = json.loads(uploaded.output)
            assert info["status"] == "available" and info["image_name"] == "cli-image"
            image = image_stack.cli_json("show", info["image_id"])
            assert image["status"] == "active" and image["disk_format"] == "qcow2"
            image_stack.cli("delete", image["id"])
        finally:
            soko_volume("delete", volume["id"])


def test_upload_in_use_volume_with_force(block, image_stack, guest_in_store, guest_image,
                                         tmp_path):
    """An attached volume keeps its export while a snapshot of it is uploaded."""
    volume = block.from_image(guest_in_store["id"])
    action = f"/volumes/{volume['id']}/action"
    image_id = None
    try:
        r = block.call("POST", action, json={
            "os-initialize_connection": {"connector": {"initiator": INITIATOR}}})
        assert r.status_code == 200, r.text
        data = r.json["connection_info"]["data"]
        upload = {"image_name": "from-in-use", "disk_format": "qcow2"}
        refused = block.call("POST", action, json={"os-volume_upload_image": upload})
        assert refused.status_code == 409 and "--force" in refused.json["error"]["message"]
        r = block.call("POST", action, json={"os-volume_upload_image": {**upload,
                                                                         "force": True}})
        assert r.status_code == 202, r.text
        assert r.json["os-volume_upload_image"]["status"] == "in-use"
        image_id = r.json["os-volume_upload_image"]["image_id"]
        deadline = time.monotonic() + 120
        while image_stack.cli_json("show", image_id)["status"] != "active" or \
                block.manager.snapshots.list(None, volume_id=volume["id"]):
            assert time.monotonic() < deadline, "the upload did not finish"
            time.sleep(0.3)
        assert block.call("GET", f"/volumes/{volume['id']}").json["volume"]["status"] == "in-use"
        compare_lun(guest_image, data)  # still exported to its initiator
        downloaded = tmp_path / "in-use.qcow2"
        image_stack.cli("download", image_id, "--file", str(downloaded))
        compare("-f", "raw", "-F", "qcow2", str(guest_image), str(downloaded))
    finally:
        block.call("POST", action, json={"os-detach": {}})
        block.wait(volume["id"])
        block.delete(volume["id"])
        if image_id:
            image_stack.cli("delete", image_id)
