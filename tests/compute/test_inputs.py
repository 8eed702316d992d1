"""Bad input to compute, image, and block's image side is a 4xx before anything exists
(issue 13): sizes beyond the database's range, ids that are not ids on their way into
another service's URL, a flavor id no URL can reach, boots that could only end in ERROR,
NUL in names, and image errors that showed a temporary path on the server."""

from __future__ import annotations

import struct

import pytest

from tests.cloud import PROJECT, TOKENS, cloud  # noqa: F401 (the in-process cloud)

ADMIN = {"X-Auth-Token": TOKENS["admin"]}
MEMBER = {"X-Auth-Token": TOKENS["member"]}


@pytest.fixture
def unchanged(cloud):  # noqa: F811
    before = cloud.state()
    yield
    assert cloud.state() == before


def boot(cloud, image_id, volume_size=1, **mapping):  # noqa: F811
    return cloud.clients["compute"].simulate_post("/v2.1/servers", headers=MEMBER, json={
        "server": {"name": "s", "flavorRef": "m1.tiny", "block_device_mapping_v2": [{
            "boot_index": 0, "uuid": image_id, "source_type": "image",
            "destination_type": "volume", "volume_size": volume_size, **mapping}]}})


@pytest.mark.parametrize("flavor, field", [
    ({"vcpus": 2**70, "ram": 512}, "vcpus"),
    ({"vcpus": 1, "ram": 2**63}, "ram"),
    ({"vcpus": 1, "ram": 512, "disk": 2**31}, "disk"),
    ({"vcpus": 1, "ram": 512, "id": "../x"}, "id"),
    ({"vcpus": 1, "ram": 512, "id": ".."}, "id"),
    ({"vcpus": 1, "ram": 512, "id": "a/b"}, "id"),
])
def test_bad_flavors_are_400(cloud, unchanged, flavor, field):  # noqa: F811
    resp = cloud.clients["compute"].simulate_post(
        "/v2.1/flavors", headers=ADMIN, json={"flavor": {"name": "f.bad", **flavor}})
    assert resp.status_code == 400, resp.text
    assert field in resp.json["error"]["message"]


def test_a_flavor_id_of_url_safe_characters_is_reachable(cloud):  # noqa: F811
    client = cloud.clients["compute"]
    resp = client.simulate_post("/v2.1/flavors", headers=ADMIN, json={
        "flavor": {"name": "f.ok", "vcpus": 1, "ram": 64, "id": "c1.m-64_x"}})
    assert resp.status_code == 200, resp.text
    assert client.simulate_get("/v2.1/flavors/c1.m-64_x", headers=MEMBER).status_code == 200
    assert client.simulate_delete("/v2.1/flavors/c1.m-64_x", headers=ADMIN).status_code == 202


def test_boot_from_a_queued_image_is_refused_before_anything_exists(cloud, unchanged):  # noqa: F811
    resp = boot(cloud, cloud.ids["image"])
    assert resp.status_code == 400 and "queued" in resp.json["error"]["message"]


@pytest.mark.parametrize("size, status", [(10**20, 400), (2**31, 400), (5000, 413)])
def test_a_boot_volume_no_quota_or_database_holds_is_refused_at_once(
        cloud, unchanged, size, status):  # noqa: F811
    resp = boot(cloud, cloud.ids["raw_image"], volume_size=size)
    assert resp.status_code == status, resp.text


@pytest.mark.parametrize("ref", ["../../v2/images", "..", "%2e%2e", "a/b", "x" * 36])
def test_ids_that_are_not_ids_never_reach_a_url(cloud, unchanged, ref):  # noqa: F811
    assert boot(cloud, ref).status_code == 400
    resp = cloud.clients["compute"].simulate_post(
        f"/v2.1/servers/{cloud.ids['server']}/os-volume_attachments", headers=MEMBER,
        json={"volumeAttachment": {"volumeId": ref}})
    assert resp.status_code == 400


@pytest.mark.parametrize("ref", ["../../v2/images", "../images", "?x=1"])
def test_block_never_puts_an_image_ref_into_a_url(cloud, unchanged, ref):  # noqa: F811
    """Was a 500: ``imageRef`` went into the image service's URL unescaped, and block
    fetched the image list instead of an image. A name is looked up as a query parameter."""
    resp = cloud.clients["block"].simulate_post(
        f"/v3/{PROJECT}/volumes", headers=MEMBER,
        json={"volume": {"size": 1, "imageRef": ref}})
    assert resp.status_code == 400, resp.text
    assert "does not exist" in resp.json["error"]["message"]


def test_an_image_name_with_nul_is_refused(cloud, unchanged):  # noqa: F811
    resp = cloud.clients["image"].simulate_post(
        "/v2/images", headers=MEMBER, json={"name": "a\x00b", "disk_format": "raw"})
    assert resp.status_code == 400 and "NUL" in resp.json["error"]["message"]


def test_image_errors_show_no_server_path(cloud, unchanged):  # noqa: F811
    """qemu-img names the file it could not open: for an upload, a temp file on the server."""
    header = b"QFI\xfb" + struct.pack(">I", 99) + bytes(504)  # qcow2 version 99
    resp = cloud.clients["image"].simulate_put(
        f"/v2/images/{cloud.ids['image']}/file", body=header,
        headers={**MEMBER, "Content-Type": "application/octet-stream"})
    assert resp.status_code == 400
    message = resp.json["error"]["message"]
    assert "version 99" in message
    assert "/tmp" not in message and "soko-probe" not in message and "'/" not in message
