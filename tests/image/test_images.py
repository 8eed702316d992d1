"""``soko image`` and the image API against a real object cluster: data round-trips with
its checksums, spans segments, wrong formats are refused before anything is stored, and
visibility keeps a private image to its project while a public one serves everyone."""

from __future__ import annotations

import hashlib
import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.image.image_stack import ADMIN, SEGMENT_SIZE

pytestmark = pytest.mark.privileged


def random_raw(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def make_qcow2(path: Path) -> Path:
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", "write -P 0x5a 1M 256k", str(path)],
                   check=True, capture_output=True)
    return path


def test_create_list_show_download_round_trip(image_stack, tmp_path):
    disk = random_raw(tmp_path / "disk.img", 5 * SEGMENT_SIZE + 12345)
    data = disk.read_bytes()
    created = image_stack.cli_json("create", "--file", str(disk), "--disk-format", "raw",
                                   "round-trip")
    assert created["status"] == "active"
    assert created["size"] == created["virtual_size"] == len(data)
    assert created["checksum"] == hashlib.md5(data).hexdigest()
    assert created["os_hash_algo"] == "xxh3_128" and len(created["os_hash_value"]) == 32
    assert created["segments"] == 6  # 5 full segments and a short one
    assert len([n for n in image_stack.objects() if n.startswith(created["id"])]) == 6

    listed = image_stack.cli_json("list")
    assert created["id"] in {i["id"] for i in listed}
    assert image_stack.cli_json("show", "round-trip")["id"] == created["id"]
    table = image_stack.cli("list").output
    assert "round-trip" in table and "active" in table

    out = tmp_path / "back.img"
    result = image_stack.cli("download", created["id"], "--file", str(out))
    assert "checksums verified" in result.output
    assert out.read_bytes() == data

    image_stack.cli("delete", created["id"])
    assert not [n for n in image_stack.objects() if n.startswith(created["id"])]
    missing = image_stack.cli("show", created["id"], check=False)
    assert missing.exit_code != 0 and "no image" in missing.output


def test_qcow2_records_virtual_size(image_stack, tmp_path):
    disk = make_qcow2(tmp_path / "disk.qcow2")
    created = image_stack.cli_json("create", "--file", str(disk), "--disk-format", "qcow2",
                                   "small-qcow2")
    try:
        assert created["disk_format"] == "qcow2"
        assert created["virtual_size"] == 64 << 20
        assert created["size"] == disk.stat().st_size
    finally:
        image_stack.cli("delete", created["id"])


def test_wrong_format_refused_and_nothing_stored(image_stack, tmp_path):
    qcow2 = make_qcow2(tmp_path / "disk.qcow2")
    before = (image_stack.cli_json("list"), image_stack.objects())
    result = image_stack.cli("create", "--file", str(qcow2), "--disk-format", "raw", "liar",
                             check=False)
    assert result.exit_code != 0
    assert "qcow2 image, not raw" in result.output and "--disk-format qcow2" in result.output
    raw = random_raw(tmp_path / "disk.img", 4096)
    result = image_stack.cli("create", "--file", str(raw), "--disk-format", "qcow2", "liar",
                             check=False)
    assert result.exit_code != 0 and "raw image, not qcow2" in result.output
    assert (image_stack.cli_json("list"), image_stack.objects()) == before


def test_a_chunked_upload_stores_every_byte(image_stack):
    """Glance's client streams image data chunked, with no Content-Length: it was refused
    as 'the image data is empty'."""
    headers = {"X-Auth-Token": image_stack.token()}
    data = os.urandom(2 * SEGMENT_SIZE + 999)
    image = requests.post(f"{image_stack.url}/v2/images", headers=headers, timeout=10,
                          json={"name": "chunked", "disk_format": "raw"}).json()
    try:
        r = requests.put(f"{image_stack.url}/v2/images/{image['id']}/file", headers=headers,
                         data=(data[i:i + 65536] for i in range(0, len(data), 65536)),
                         timeout=30)
        assert r.status_code == 204, r.text
        r = requests.get(f"{image_stack.url}/v2/images/{image['id']}/file", headers=headers,
                         timeout=30)
        assert r.content == data
    finally:
        requests.delete(f"{image_stack.url}/v2/images/{image['id']}", headers=headers,
                        timeout=10)


def test_api_refuses_lying_upload_before_storing(image_stack, tmp_path):
    """A client that skips the CLI's check still cannot store a qcow2 file as raw."""
    headers = {"X-Auth-Token": image_stack.token()}
    image = requests.post(f"{image_stack.url}/v2/images", headers=headers, timeout=10,
                          json={"name": "api-liar", "disk_format": "raw"}).json()
    try:
        r = requests.put(f"{image_stack.url}/v2/images/{image['id']}/file", headers=headers,
                         data=make_qcow2(tmp_path / "d.qcow2").read_bytes(), timeout=30)
        assert r.status_code == 400 and "qcow2 image, not raw" in r.json()["error"]["message"]
        again = requests.get(f"{image_stack.url}/v2/images/{image['id']}", headers=headers,
                             timeout=10).json()
        assert again["status"] == "queued" and again["size"] is None
        assert not [n for n in image_stack.objects() if n.startswith(image["id"])]
    finally:
        requests.delete(f"{image_stack.url}/v2/images/{image['id']}", headers=headers,
                        timeout=10)


def test_bad_requests_are_4xx(image_stack):
    headers = {"X-Auth-Token": image_stack.token()}
    url = f"{image_stack.url}/v2/images"
    r = requests.post(url, headers=headers, json={"name": "x", "disk_format": "vmdk"}, timeout=10)
    assert r.status_code == 400 and "disk_format" in r.json()["error"]["message"]
    r = requests.get(f"{url}/not-an-image", headers=headers, timeout=10)
    assert r.status_code == 404
    assert requests.get(url, timeout=10).status_code == 401
    r = requests.post(url, headers=headers, timeout=10,
                      json={"name": "x", "disk_format": "raw", "visibility": "public"})
    assert r.status_code == 403 and "admins" in r.json()["error"]["message"]


def test_private_stays_private_public_serves_everyone(image_stack, tmp_path):
    disk = random_raw(tmp_path / "disk.img", 3 * SEGMENT_SIZE)
    private = image_stack.cli_json("create", "--file", str(disk), "--disk-format", "raw",
                                   "mine")
    public = image_stack.cli_json("create", "--file", str(disk), "--disk-format", "raw",
                                  "--public", "shared", user=ADMIN[0])
    other = "other:otheruser"
    try:
        assert public["visibility"] == "public"
        seen = {i["id"] for i in image_stack.cli_json("list", user=other)}
        assert public["id"] in seen and private["id"] not in seen
        assert image_stack.cli("show", private["id"], user=other, check=False).exit_code != 0
        headers = {"X-Auth-Token": image_stack.token(other)}
        r = requests.get(f"{image_stack.url}/v2/images/{private['id']}/file",
                         headers=headers, timeout=10)
        assert r.status_code == 404
        out = tmp_path / "public.img"
        image_stack.cli("download", public["id"], "--file", str(out), user=other)
        assert out.read_bytes() == disk.read_bytes()
        r = requests.delete(f"{image_stack.url}/v2/images/{public['id']}", headers=headers,
                            timeout=10)
        assert r.status_code == 403  # seen, but not theirs to delete
    finally:
        image_stack.cli("delete", private["id"])
        image_stack.cli("delete", public["id"], user=ADMIN[0])
    assert not image_stack.objects(container="images-public")


def test_refused_upload_tells_why(image_stack, tmp_path):
    """The service refuses a big upload before reading any of it (a finished image, a bad
    token): the client still gets the reason, not a broken pipe (gunicorn reads the rest
    of the body before it answers the next request on the connection)."""
    created = image_stack.cli_json("create", "--file", str(random_raw(tmp_path / "a", 4096)),
                                   "--disk-format", "raw", "once")
    disk = tmp_path / "big.img"
    with open(disk, "wb") as f:
        f.truncate(256 << 20)  # far more than the socket buffers hold
    try:
        r = requests.put(f"{image_stack.url}/v2/images/{created['id']}/file",
                         data=disk.open("rb"), timeout=30,
                         headers={"X-Auth-Token": image_stack.token()})
        assert r.status_code == 409 and "active" in r.json()["error"]["message"]
        r = requests.put(f"{image_stack.url}/v2/images/{created['id']}/file",
                         data=disk.open("rb"), timeout=30, headers={"X-Auth-Token": "bogus"})
        assert r.status_code == 401
    finally:
        image_stack.cli("delete", created["id"])


def test_upload_cut_off_leaves_no_segments(image_stack):
    """A client that dies mid-upload: the image is killed and every segment it stored is
    removed; deleting the killed image then clears the record too."""
    import socket
    from urllib.parse import urlsplit

    headers = {"X-Auth-Token": image_stack.token()}
    image = requests.post(f"{image_stack.url}/v2/images", headers=headers, timeout=10,
                          json={"name": "cut-off", "disk_format": "raw"}).json()
    url = urlsplit(image_stack.url)
    sent = os.urandom(3 * SEGMENT_SIZE + 100)
    with socket.create_connection((url.hostname, url.port), timeout=10) as conn:
        conn.sendall((f"PUT /v2/images/{image['id']}/file HTTP/1.1\r\n"
                      f"Host: {url.netloc}\r\nX-Auth-Token: {headers['X-Auth-Token']}\r\n"
                      f"Content-Type: application/octet-stream\r\n"
                      f"Content-Length: {10 * SEGMENT_SIZE}\r\n\r\n").encode() + sent)
    show = f"{image_stack.url}/v2/images/{image['id']}"
    deadline = time.monotonic() + 60
    while requests.get(show, headers=headers, timeout=10).json()["status"] != "killed":
        assert time.monotonic() < deadline, "the cut-off upload was never killed"
        time.sleep(0.2)
    assert not [n for n in image_stack.objects() if n.startswith(image["id"])]
    image_stack.cli("delete", image["id"])
    assert requests.get(show, headers=headers, timeout=10).status_code == 404


def test_version_discovery_for_openstack_clients(image_stack):
    from keystoneauth1 import discover, session

    versions = discover.get_version_data(session.Session(), image_stack.url)
    assert versions[0]["status"] == "CURRENT"
    assert versions[0]["links"][0]["href"] == f"{image_stack.url}/v2/"
