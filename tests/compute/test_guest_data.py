"""Key pairs and the metadata API, in-process over a real SQLite DB: what a guest is booted
with and what it reads back. No hypervisor or block service is needed: nothing here boots
(the key pair and user data of a real boot are in tests/net/test_metadata_guest.py)."""

from __future__ import annotations

import base64
import json
import subprocess
import uuid

import falcon.testing
import pytest

from soko.common.db import session_scope
from soko.common.shared_secret import METADATA_SECRET_FILE, shared_secret
from soko.compute.metadata import ports_signature, signature
from soko.compute.models import Instance, KeyPair
from tests.compute.conftest import compute_without_hypervisor

A = {"X-Auth-Token": "tok-a"}
B = {"X-Auth-Token": "tok-b"}
PUBLIC = ("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDvHnDQ2ZlDyIMWzMmcRwW3VtP7dCJBt8x/pjFAm7Uq+ "
          "me@laptop")


@pytest.fixture
def cloud(tmp_path):
    app, manager = compute_without_hypervisor(tmp_path)
    client = falcon.testing.TestClient(app)
    client.app, client.manager = app, manager
    client.secret = shared_secret(tmp_path, METADATA_SECRET_FILE)
    return client


def test_keypair_import_list_show_delete_per_user(cloud, tmp_path):
    resp = cloud.simulate_post("/v2.1/os-keypairs", headers=A, json={"keypair": {
        "name": "laptop", "public_key": PUBLIC}})
    assert resp.status_code == 201, resp.text
    made = resp.json["keypair"]
    assert made["name"] == "laptop" and made["public_key"] == PUBLIC and made["type"] == "ssh"
    assert "private_key" not in made
    # Nova's fingerprint is what ssh-keygen prints as MD5.
    (tmp_path / "k.pub").write_text(PUBLIC + "\n")
    keygen = subprocess.run(["ssh-keygen", "-l", "-E", "md5", "-f", str(tmp_path / "k.pub")],
                            capture_output=True, text=True, check=True).stdout
    assert made["fingerprint"] == keygen.split()[1].removeprefix("MD5:")
    listed = cloud.simulate_get("/v2.1/os-keypairs", headers=A).json["keypairs"]
    assert [k["keypair"]["name"] for k in listed] == ["laptop"]
    shown = cloud.simulate_get("/v2.1/os-keypairs/laptop", headers=A).json["keypair"]
    assert shown["user_id"] == "user-proj-a" and shown["fingerprint"] == made["fingerprint"]
    # Another user neither sees it nor can delete it; the same name is theirs to use.
    assert cloud.simulate_get("/v2.1/os-keypairs", headers=B).json["keypairs"] == []
    assert cloud.simulate_get("/v2.1/os-keypairs/laptop", headers=B).status_code == 404
    assert cloud.simulate_delete("/v2.1/os-keypairs/laptop", headers=B).status_code == 404
    assert cloud.simulate_post("/v2.1/os-keypairs", headers=B, json={"keypair": {
        "name": "laptop", "public_key": PUBLIC}}).status_code == 201
    assert cloud.simulate_post("/v2.1/os-keypairs", headers=A, json={"keypair": {
        "name": "laptop", "public_key": PUBLIC}}).status_code == 409
    assert cloud.simulate_delete("/v2.1/os-keypairs/laptop", headers=A).status_code == 204
    assert cloud.simulate_get("/v2.1/os-keypairs/laptop", headers=A).status_code == 404


def test_generated_keypair_returns_its_private_key_once(cloud, tmp_path):
    made = cloud.simulate_post("/v2.1/os-keypairs", headers=A,
                               json={"keypair": {"name": "gen"}}).json["keypair"]
    assert made["private_key"].startswith("-----BEGIN RSA PRIVATE KEY-----")
    key = tmp_path / "id_rsa"
    key.write_text(made["private_key"])
    key.chmod(0o600)
    derived = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                             text=True, check=True).stdout.split()[:2]
    assert made["public_key"].split()[:2] == derived
    shown = cloud.simulate_get("/v2.1/os-keypairs/gen", headers=A).json["keypair"]
    assert "private_key" not in shown


@pytest.mark.parametrize("body", [
    {"keypair": {"name": "k", "public_key": "ssh-rsa not-base64!"}},
    {"keypair": {"name": "k", "public_key": "ssh-ed25519 " + base64.b64encode(b"junk").decode()}},
    {"keypair": {"name": "k", "public_key": 7}},
    {"keypair": {"name": "bad/name", "public_key": PUBLIC}},
    {"keypair": {"name": "", "public_key": PUBLIC}},
    {"keypair": {"name": "x" * 256, "public_key": PUBLIC}},
    {"keypair": {"name": "k", "public_key": PUBLIC, "type": "x509"}},
    {"keypair": {"name": "k", "public_key": PUBLIC, "colour": "red"}},
    {"keypair": "k"},
    [],
])
def test_bad_keypairs_are_400_and_stored_nowhere(cloud, body):
    resp = cloud.simulate_post("/v2.1/os-keypairs", headers=A, json=body)
    assert resp.status_code == 400, resp.text
    with session_scope(cloud.manager.sessions) as s:
        assert s.query(KeyPair).count() == 0


def boot(volume: str = "4b0c5e0e-0000-4000-8000-000000000001", **extra) -> dict:
    return {"server": {"name": "vm", "flavorRef": "1", "block_device_mapping_v2": [{
        "boot_index": 0, "uuid": volume, "source_type": "volume",
        "destination_type": "volume"}], **extra}}


@pytest.mark.parametrize("extra, message", [
    ({"key_name": "nobody-has-this"}, "Invalid key_name"),
    ({"key_name": 3}, "key_name"),
    ({"user_data": "not base64 ###"}, "base64"),
    ({"user_data": "QUFB" * 16384}, "User data too large"),
    ({"user_data": ["x"]}, "user_data"),
])
def test_server_create_refuses_bad_key_name_or_user_data_first(cloud, extra, message):
    resp = cloud.simulate_post("/v2.1/servers", headers=A, json=boot(**extra))
    assert resp.status_code == 400 and message in resp.json["error"]["message"], resp.text
    with session_scope(cloud.manager.sessions) as s:
        assert s.query(Instance).count() == 0


def add_instance(cloud, name="web 1", project="proj-a", **columns) -> Instance:
    instance = Instance(id=str(uuid.uuid4()), project_id=project, user_id="user-" + project,
                        name=name, flavor_id="1", vcpus=1, ram=512, vm_state="active", **columns)
    with session_scope(cloud.manager.sessions) as s:
        s.add(instance)
    return instance


PORTS = [{"id": "8c3f1ad0-1111-4000-8000-000000000001", "mac": "fa:16:3e:00:00:01",
          "network_id": "net-1", "ip": "10.0.0.5", "cidr": "10.0.0.0/24",
          "gateway": "10.0.0.1", "dhcp": True, "floating_ip": "172.24.4.9", "mtu": 1500,
          "dns": ["10.0.0.2"]}]


def signed(cloud, instance, project=None, ports=PORTS) -> dict:
    packed = base64.b64encode(json.dumps(ports).encode()).decode()
    return {"X-Instance-ID": instance.id, "X-Tenant-ID": project or instance.project_id,
            "X-Instance-ID-Signature": signature(cloud.secret, instance.id),
            "X-Soko-Ports": packed,
            "X-Soko-Ports-Signature": ports_signature(cloud.secret, instance.id, packed)}


def test_metadata_answers_the_openstack_and_ec2_paths(cloud):
    script = "#!/bin/sh\necho hi\n"
    vm = add_instance(cloud, key_name="laptop", key_data=PUBLIC,
                      user_data=base64.b64encode(script.encode()).decode())
    headers = signed(cloud, vm)

    def get(path):
        resp = cloud.simulate_get(path, headers=headers)
        assert resp.status_code == 200, (path, resp.text)
        return resp

    assert "latest" in get("/openstack").text.split("\n")
    assert "user_data" in get("/openstack/latest").text.split("\n")
    meta = get("/openstack/latest/meta_data.json").json
    assert meta["uuid"] == vm.id and meta["name"] == "web 1" and meta["hostname"] == "web-1"
    assert meta["public_keys"] == {"laptop": PUBLIC} and meta["project_id"] == "proj-a"
    assert meta["availability_zone"] and meta["keys"][0]["data"] == PUBLIC
    assert get("/openstack/2013-10-17/meta_data.json").json["uuid"] == vm.id
    assert get("/openstack/latest/user_data").text == script
    net = get("/openstack/latest/network_data.json").json
    assert net["links"][0]["ethernet_mac_address"] == "fa:16:3e:00:00:01"
    assert net["networks"][0]["type"] == "ipv4_dhcp"
    assert net["services"] == [{"type": "dns", "address": "10.0.0.2"}]
    listing = get("/latest/meta-data/").text.split("\n")
    assert {"instance-id", "hostname", "local-ipv4", "public-ipv4", "public-keys/"} <= set(listing)
    assert get("/latest/meta-data/instance-id").text == vm.id
    assert get("/latest/meta-data/hostname").text == "web-1"
    assert get("/latest/meta-data/local-ipv4").text == "10.0.0.5"
    assert get("/latest/meta-data/public-ipv4").text == "172.24.4.9"
    assert get("/latest/meta-data/public-keys/").text == "0=laptop"
    assert get("/latest/meta-data/public-keys/0/").text == "openssh-key"
    assert get("/latest/meta-data/public-keys/0/openssh-key").text == PUBLIC + "\n"
    assert get("/latest/user-data").text == script
    assert get("/2009-04-04/meta-data/instance-id").text == vm.id
    for missing in ("/latest/meta-data/nothing", "/openstack/1999-01-01/meta_data.json",
                    "/openstack/latest/nothing"):
        assert cloud.simulate_get(missing, headers=headers).status_code == 404


def test_metadata_trusts_only_a_valid_signature(cloud):
    vm = add_instance(cloud)
    other = add_instance(cloud, name="theirs", project="proj-b")
    good = signed(cloud, vm)
    path = "/openstack/latest/meta_data.json"
    assert cloud.simulate_get(path, headers=good).json["uuid"] == vm.id
    assert cloud.simulate_get(path).status_code == 400  # no identity at all
    forged = {**good, "X-Instance-ID": other.id, "X-Tenant-ID": "proj-b"}
    assert cloud.simulate_get(path, headers=forged).status_code == 403
    wrong_key = {**good, "X-Instance-ID-Signature": signature(b"guess", vm.id)}
    assert cloud.simulate_get(path, headers=wrong_key).status_code == 403
    other_ports = {**good, "X-Soko-Ports": base64.b64encode(b"[]").decode()}
    assert cloud.simulate_get(path, headers=other_ports).status_code == 403
    assert cloud.simulate_get(path, headers=signed(cloud, vm, "proj-b")).status_code == 404
    # No user data: not listed, and 404 (as Nova).
    assert "user_data" not in cloud.simulate_get("/openstack/latest", headers=good).text
    assert cloud.simulate_get("/latest/user-data", headers=good).status_code == 404
    # A token is no way in either: metadata is for the signed proxy only.
    assert cloud.simulate_get(path, headers=A).status_code == 400


def test_keypair_and_server_create_commands(cloud, tmp_path):
    from click.testing import CliRunner

    from soko.tools.cli import cli
    from tests.support import served

    with served(cloud.app) as url:
        def run(*args, ok=True):
            result = CliRunner().invoke(cli, [args[0], "--os-url", f"{url}/v2.1", "--os-token",
                                              "tok-a", "--data-dir", str(tmp_path), *args[1:]])
            assert (result.exit_code == 0) == ok, result.output
            return result.output

        (tmp_path / "me.pub").write_text(PUBLIC + "\n")
        made = json.loads(run("keypair", "create", "mine", "--public-key",
                              str(tmp_path / "me.pub"), "--format", "json"))
        assert made["name"] == "mine" and "private_key" not in made
        run("keypair", "create", "gen", "--private-key", str(tmp_path / "gen.pem"))
        assert (tmp_path / "gen.pem").read_text().startswith("-----BEGIN RSA PRIVATE KEY")
        assert (tmp_path / "gen.pem").stat().st_mode & 0o777 == 0o600
        listed = json.loads(run("keypair", "list", "--format", "json"))
        assert sorted(k["name"] for k in listed) == ["gen", "mine"]
        assert run("keypair", "show", "mine", "--public-key").strip() == PUBLIC
        assert "409" in run("keypair", "create", "mine", "--public-key",
                            str(tmp_path / "me.pub"), ok=False)
        run("keypair", "delete", "mine", "gen")
        assert json.loads(run("keypair", "list", "--format", "json")) == []
        (tmp_path / "ud.sh").write_text("#!/bin/sh\necho hi\n")
        out = run("server", "create", "vm", "--flavor", "m1.tiny", "--volume",
                  "4b0c5e0e-0000-4000-8000-000000000001", "--key-name", "gone",
                  "--user-data", str(tmp_path / "ud.sh"), ok=False)
        assert "400" in out and "Invalid key_name" in out
