"""From an image in the object store to a running server and back to nothing, with every
real part and real tokens: the test guest uploaded with ``soko image create`` into a
3-node object cluster through soko-image; then (1) a volume created from it
(``imageRef``) and ``soko server create --volume``, and (2) ``soko server create --image
--boot-volume-size --delete-on-termination`` (compute has block fill the boot volume). Each
server's ready marker shows in ``soko server console-log``, and ``soko server delete``
removes the domain and the export, and the boot volume where asked."""

from __future__ import annotations

import json
import time

import pytest
import requests
from click.testing import CliRunner

from soko.image.guest_files import READY_MARKER
from soko.tools.cli import cli
from tests.compute.conftest import Stack, wait_console
from tests.support import free_port, served

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def cloud(image_stack, real_block, driver):
    """Block and compute on the session's pool and libvirt, trusting the image stack's
    identity (tokens from its tempauth), reading images from its soko-image."""
    from soko.block import api as block_api
    from soko.block import wiring as block_wiring
    from soko.common import services
    from soko.common.config import Config
    from soko.common.db import make_engine
    from soko.compute import api as compute_api
    from soko.compute import wiring as compute_wiring
    from soko.compute.service import ComputeConfig
    from soko.identity.service import db_url
    from soko.identity.tokens import FernetTokenValidator

    stack_config = services.load(image_stack.config_path, image_stack.cluster.data_dir)
    section = ComputeConfig(port=free_port(), domain_prefix=driver.prefix,
                            reconcile_interval=0, stop_timeout=30)
    config = Config(data_dir=real_block.data_dir, sections={
        "block": real_block.section("block"), "image": stack_config.section("image"),
        "compute": section})
    # Its own engine on identity's DB (on the cluster's mount), closed at the end so the
    # image stack can unmount.
    engine = make_engine(db_url(stack_config))
    validator = FernetTokenValidator.from_config(stack_config, engine=engine)
    block_manager = block_wiring.make_manager(config)
    try:
        with served(block_api.make_app(config, validator=validator,
                                       manager=block_manager)) as block_url:
            section.block_url = block_url
            manager = compute_wiring.make_manager(config, driver=driver)
            app = compute_api.make_app(config, validator=validator, manager=manager)
            with served(app, section.port) as compute_url:
                yield Stack(block_url, compute_url, block_manager, manager, driver)
    finally:
        engine.dispose()


def soko(cloud: Stack, token: str, *args: str) -> str:
    result = CliRunner().invoke(cli, ["server", "--os-url", f"{cloud.compute_url}/v2.1",
                                      "--os-token", token, *args])
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def guest(image_stack, guest_image) -> dict:
    """The test guest, uploaded with ``soko image create`` (deleted at the end)."""
    image = image_stack.cli_json("create", "--file", str(guest_image), "--disk-format", "raw",
                                 "e2e-guest")
    yield image
    image_stack.cli("delete", image["id"])


def boot_and_delete(cloud: Stack, token: str, *create_args: str) -> dict:
    """Creates server e2e, sees its ready marker through the CLI, deletes it; returns what
    create showed and the boot volume's id."""
    created = json.loads(soko(cloud, token, "create", "--flavor", "m1.tiny", *create_args,
                              "--wait", "--format", "json", "e2e"))
    assert created["status"] == "ACTIVE"
    server_id = created["id"]
    boot_volume = cloud.server(server_id, token)["os-extended-volumes:volumes_attached"][0]["id"]
    try:
        wait_console(cloud.driver, server_id, READY_MARKER)
        assert READY_MARKER in soko(cloud, token, "console-log", "e2e", "--lines", "40")
        listed = json.loads(soko(cloud, token, "list", "--format", "json"))
        assert [s["name"] for s in listed] == ["e2e"]
    finally:
        soko(cloud, token, "delete", "--wait", server_id)
    assert server_id not in cloud.driver.reconcile()
    assert boot_volume not in cloud.exported()
    return {**created, "boot_volume": boot_volume}


def test_volume_from_the_image_then_a_server_from_the_volume(cloud, image_stack, guest):
    """The issue's path: image -> volume create --image-id -> server create --volume."""
    storage_url, token = image_stack.login("test:tester")
    volumes = f"{cloud.block_url}/v3/{storage_url.rsplit('AUTH_', 1)[1]}/volumes"
    headers = {"X-Auth-Token": token}
    resp = requests.post(volumes, headers=headers, timeout=30, json={"volume": {
        "size": 1, "name": "e2e-boot", "imageRef": guest["id"]}})
    assert resp.status_code == 202, resp.text
    volume_id = resp.json()["volume"]["id"]
    deadline = time.monotonic() + 120
    while (volume := requests.get(f"{volumes}/{volume_id}", headers=headers,
                                  timeout=30).json()["volume"])["status"] != "available":
        assert volume["status"] == "downloading" and time.monotonic() < deadline, volume
        time.sleep(0.2)
    assert volume["bootable"] == "true"
    booted = boot_and_delete(cloud, token, "--volume", volume_id)
    assert booted["boot_volume"] == volume_id
    left = requests.get(f"{volumes}/{volume_id}", headers=headers, timeout=30).json()["volume"]
    assert left["status"] == "available" and left["attachments"] == []  # not deleted
    assert requests.delete(f"{volumes}/{volume_id}", headers=headers,
                           timeout=30).status_code == 202


def test_server_from_an_image_deletes_its_boot_volume_with_it(cloud, image_stack, guest):
    storage_url, token = image_stack.login("test:tester")
    booted = boot_and_delete(cloud, token, "--image", guest["id"], "--boot-volume-size", "1",
                             "--delete-on-termination")
    assert booted["image"] == guest["id"]
    gone = requests.get(f"{cloud.block_url}/v3/{storage_url.rsplit('AUTH_', 1)[1]}/volumes/"
                        f"{booted['boot_volume']}", headers={"X-Auth-Token": token}, timeout=30)
    assert gone.status_code == 404  # delete_on_termination
