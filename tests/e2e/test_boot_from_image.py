"""From an image in the object store to a running server and back to nothing, with every
real part and real tokens: the test guest uploaded with ``soko image create`` into a
3-node object cluster through soko-image, ``soko server create --image --boot-volume-size
--delete-on-termination`` (block fills the boot volume from the image), the ready marker in
``soko server console-log``, and ``soko server delete`` removing the domain, the export,
the secret and the boot volume."""

from __future__ import annotations

import json

import pytest
import requests
from click.testing import CliRunner

from soko.compute.guest_files import READY_MARKER
from soko.tools.cli import cli
from tests.compute.conftest import Stack, served, wait_console
from tests.support import free_port

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def cloud(image_stack, real_block, driver):
    """Block and compute on the session's pool and libvirt, trusting the image stack's
    identity (tokens from its tempauth), reading images from its soko-image."""
    from soko.block import api as block_api
    from soko.block import wiring as block_wiring
    from soko.common.config import Config
    from soko.common.db import make_engine
    from soko.compute import api as compute_api
    from soko.compute import wiring as compute_wiring
    from soko.compute.service import ComputeConfig
    from soko.identity.service import db_url
    from soko.identity.tokens import FernetTokenValidator
    from soko.tools import services

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


def test_server_from_an_image_in_the_object_store(cloud, image_stack, guest_image):
    storage_url, token = image_stack.login("test:tester")
    project = storage_url.rsplit("AUTH_", 1)[1]
    image = image_stack.cli_json("create", "--file", str(guest_image), "--disk-format", "raw",
                                 "e2e-guest")
    created = json.loads(soko(cloud, token, "create", "--flavor", "m1.tiny", "--image",
                              image["id"], "--boot-volume-size", "1",
                              "--delete-on-termination", "--wait", "--format", "json", "e2e"))
    assert created["status"] == "ACTIVE" and created["image"] == image["id"]
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
    gone = requests.get(f"{cloud.block_url}/v3/{project}/volumes/{boot_volume}",
                        headers={"X-Auth-Token": token}, timeout=30)
    assert gone.status_code == 404  # delete_on_termination
    image_stack.cli("delete", image["id"])
