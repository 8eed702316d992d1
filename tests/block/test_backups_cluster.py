"""Backups on the real components: the reflink pool (loop-backed XFS, FICLONE snapshots),
a real 3-node object cluster reached through its proxy's Swift API with the user's own
identity token, and QEMU's iSCSI client reading a restored volume through tgt.

The 1 GiB proof runs once; the other cases use mostly-empty volumes to stay quick."""

from __future__ import annotations

import dataclasses
import os
import random
import subprocess
import uuid

import falcon.testing
import pytest
import requests

from soko.block import wiring
from soko.block.api import make_app
from soko.block.backups import wiring as backup_wiring
from soko.common.config import Config
from soko.common.db import make_engine
from soko.identity.service import db_url
from soko.identity.tokens import FernetTokenValidator
from tests.block.backup_support import MiB, allocated, same_content, write_random
from tests.block.iscsi import image_opts

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

GiB = 1 << 30
BLOCK = 64 << 10
HOST = "iqn.2026-11.org.test:backup-reader"


class Project:
    """One identity user's view: the block API with their token, and their Swift account."""

    def __init__(self, app, cluster, user):
        self.storage_url, token = cluster.auth(user)
        self.project_id = self.storage_url.rsplit("AUTH_", 1)[1]
        self.headers = {"X-Auth-Token": token}
        self.client = falcon.testing.TestClient(app)
        self.base = f"/v3/{self.project_id}"

    def call(self, method, path, body=None, status=None):
        resp = self.client.simulate_request(method, self.base + path, headers=self.headers,
                                            json=body)
        if status is not None:
            assert resp.status_code == status, resp.text
        return resp

    def swift(self, method, name="", **kwargs):
        return requests.request(method, f"{self.storage_url}/volumebackups/{name}",
                                headers=self.headers, timeout=60, **kwargs)

    def chunk_names(self):
        resp = self.swift("GET", params={"prefix": "chunks/", "format": "json"})
        return [o["name"] for o in resp.json()] if resp.status_code == 200 else []


@pytest.fixture(scope="module")
def env(cluster, real_block):
    section = dataclasses.replace(real_block.section("block"),
                                  backup_object_store_url=cluster.proxy_url)
    config = Config(data_dir=real_block.data_dir, sections={"block": section})
    volumes = wiring.make_manager(config)
    backups = backup_wiring.make_manager(config, volumes)
    identity_db = make_engine(db_url(cluster.config))  # disposed: it lives on the XFS mount
    validator = FernetTokenValidator.from_config(cluster.config, engine=identity_db)
    app = make_app(config, validator=validator, manager=volumes, backups=backups)
    tester, other = Project(app, cluster, "test:tester"), Project(app, cluster, "other:otheruser")
    yield tester, other, volumes, backups
    backups.wait_idle(120)
    for project in (tester, other):  # nothing may stay behind in the pool or the store
        for backup in project.call("GET", "/backups").json["backups"]:
            project.call("DELETE", f"/backups/{backup['id']}")
            backups.wait_idle(120)
        for vol in project.call("GET", "/volumes").json["volumes"]:
            project.call("DELETE", f"/volumes/{vol['id']}")
    identity_db.dispose()


def new_volume(project, size=1, name=None) -> str:
    return project.call("POST", "/volumes", {"volume": {"size": size, "name": name}},
                        202).json["volume"]["id"]


def backup(project, backups, volume_id, **spec) -> dict:
    resp = project.call("POST", "/backups", {"backup": {"volume_id": volume_id, **spec}}, 202)
    backups.wait_idle(600)
    found = project.call("GET", f"/backups/{resp.json['backup']['id']}", status=200)
    assert found.json["backup"]["status"] == "available", found.json["backup"]["fail_reason"]
    return found.json["backup"]


def restore(project, backups, backup_id, **spec) -> str:
    resp = project.call("POST", f"/backups/{backup_id}/restore", {"restore": spec}, 202)
    backups.wait_idle(600)
    return resp.json["restore"]["volume_id"]


def volume_status(project, volume_id) -> str:
    return project.call("GET", f"/volumes/{volume_id}").json["volume"]["status"]


def fill_random(path: str, size: int, seed: int) -> None:
    rng = random.Random(seed)
    with open(path, "r+b") as f:
        for _ in range(size // (4 * MiB)):
            f.write(rng.randbytes(4 * MiB))
        os.fsync(f.fileno())


def test_one_gib_full_then_one_percent_incremental(env, capsys):
    tester, _, volumes, backups = env
    volume_id = new_volume(tester, name="proof")
    path = volumes.pool.path(volume_id)
    fill_random(path, GiB, seed=1)
    full = backup(tester, backups, volume_id)
    before = tester.call("POST", "/snapshots", {"snapshot": {"volume_id": volume_id}},
                         202).json["snapshot"]
    rng = random.Random(2)  # 1 % of the volume, in 64 KiB pieces at random offsets
    for block in rng.sample(range(GiB // BLOCK), GiB // 100 // BLOCK):
        write_random(path, block * BLOCK, BLOCK, rng)
    incr = backup(tester, backups, volume_id, incremental=True)
    f, i = full["stats"], incr["stats"]
    assert f["bytes_new"] == GiB and f["bytes_uploaded"] >= GiB
    assert 0.009 * GiB <= i["bytes_new"] <= 0.011 * GiB
    assert i["bytes_uploaded"] <= 0.011 * GiB + 4096  # only the changed blocks were sent
    assert i["bytes_read"] <= 0.011 * GiB  # the rest still shares blocks with the kept base
    with capsys.disabled():
        print(f"\n1 GiB full: {f['seconds']:.1f} s ({GiB / f['seconds'] / 1e6:.0f} MB/s); "
              f"1 % incremental: {i['seconds']:.1f} s "
              f"({i['seconds'] / f['seconds']:.1%} of the full), read "
              f"{i['bytes_read'] / GiB:.0%}, uploaded {i['bytes_uploaded'] / MiB:.1f} MiB")
    full_copy = restore(tester, backups, full["id"])
    incr_copy = restore(tester, backups, incr["id"], name="incr-copy")
    assert volume_status(tester, full_copy) == volume_status(tester, incr_copy) == "available"
    assert same_content(volumes.pool.snapshot_path(before["id"]), volumes.pool.path(full_copy))
    assert same_content(path, volumes.pool.path(incr_copy))
    # and the restored volume reads back the same through iSCSI (tgt + QEMU's client)
    data = tester.call("POST", f"/volumes/{incr_copy}/action", {
        "os-attach": {"connector": {"initiator": HOST}}}, 200).json["connection_info"]["data"]
    try:
        compared = subprocess.run(
            ["qemu-img", "compare", *image_opts(data, HOST),
             f"driver=raw,file.driver=file,file.filename={path}"],
            capture_output=True, text=True, timeout=300)
        assert compared.returncode == 0, compared.stdout + compared.stderr
    finally:
        tester.call("POST", f"/volumes/{incr_copy}/action", {"os-detach": {}}, 202)
    tester.call("DELETE", f"/snapshots/{before['id']}", status=202)
    resp = tester.call("DELETE", f"/backups/{full['id']}", status=409)
    assert "depend" in resp.json["error"]["message"]


def test_mostly_zero_volume_corruption_and_deletes(env):
    tester, other, volumes, backups = env
    volume_id = new_volume(tester, name="sparse")
    write_random(volumes.pool.path(volume_id), 300 * MiB, 4 * MiB, random.Random(3))
    chunks_before = set(tester.chunk_names())
    sparse = backup(tester, backups, volume_id, name="sparse")
    assert sparse["stats"]["bytes_uploaded"] < 5 * MiB  # of a 1 GiB volume
    head = tester.swift("HEAD")
    assert int(head.headers["X-Container-Object-Count"]) >= 3
    restored = restore(tester, backups, sparse["id"])
    assert same_content(volumes.pool.path(volume_id), volumes.pool.path(restored))
    assert allocated(volumes.pool.path(restored)) <= 8 * MiB  # restored sparse
    # another project sees nothing of it
    assert other.call("GET", f"/backups/{sparse['id']}").status_code == 404
    assert other.call("POST", f"/backups/{sparse['id']}/restore",
                      {"restore": {}}).status_code == 404
    assert tester.call("POST", "/backups",  # an id, of no volume
                       {"backup": {"volume_id": str(uuid.uuid4())}}).status_code == 404
    assert tester.call("POST", "/backups",  # not an id at all
                       {"backup": {"volume_id": "no-such-volume"}}).status_code == 400
    # restoring over an in-use volume is refused, and nothing changes
    tester.call("POST", f"/volumes/{restored}/action",
                {"os-attach": {"connector": {"initiator": HOST}}}, 200)
    assert tester.call("POST", f"/backups/{sparse['id']}/restore",
                       {"restore": {"volume_id": restored}}).status_code == 409
    assert volume_status(tester, restored) == "in-use"
    tester.call("POST", f"/volumes/{restored}/action", {"os-detach": {}}, 202)
    # a corrupted chunk object fails the restore loudly: the target is marked error
    new_chunks = sorted(set(tester.chunk_names()) - chunks_before)
    good = tester.swift("GET", new_chunks[0]).content
    tester.swift("PUT", new_chunks[0], data=good[:-1] + bytes([good[-1] ^ 1]))
    broken = restore(tester, backups, sparse["id"])
    assert volume_status(tester, broken) == "error"
    failed = tester.call("GET", f"/backups/{sparse['id']}").json["backup"]
    assert "corrupted" in failed["fail_reason"]
    tester.swift("PUT", new_chunks[0], data=good)
    # deleting the backup removes its manifest and the chunks no other backup uses
    tester.call("DELETE", f"/backups/{sparse['id']}", status=202)
    backups.wait_idle(120)
    assert tester.call("GET", f"/backups/{sparse['id']}").status_code == 404
    assert set(tester.chunk_names()) == chunks_before
    assert tester.swift("GET", f"manifests/{sparse['id']}").status_code == 404
