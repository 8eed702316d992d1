"""Object versioning through the real proxy: the legacy X-Versions-Location (stack) and
X-History-Location (history) modes, and versioned containers (X-Versions-Enabled)."""

from __future__ import annotations

import json
import uuid

import msgpack
import pytest
import requests
import swiftclient
from swiftclient.exceptions import ClientException

from soko.object.middleware.symlink import EMPTY_MD5
from soko.object.node.diskfile import name_hash
from soko.object.proxy.constraints import CONTAINER_LISTING_LIMIT as LISTING_LIMIT
from soko.object.shared.rings import load_rings
from soko.object.shared.timestamps import Timestamp
from soko.object.shared.version_names import version_name
from tests.object.cluster import USERS
from tests.object.middleware.test_slo import PARTS, WHOLE, put_segments
from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

MARKER = "application/x-deleted;swift_versions_deleted=1"


def versioned(api, header: str) -> tuple[str, str]:
    """A container versioned into a fresh archive: both URLs."""
    name = f"v-{uuid.uuid4().hex[:8]}"
    archive = f"{api.base}/{name}-archive"
    assert api.put(archive).status_code == 201
    assert api.put(f"{api.base}/{name}", headers={header: f"{name}-archive"}).status_code == 201
    return f"{api.base}/{name}", archive


def listing(api, url: str) -> list[dict]:
    return api.get(f"{url}?format=json").json()


def test_stack_mode_keeps_and_restores_versions(api):
    c, archive = versioned(api, "X-Versions-Location")
    assert api.head(c).headers["x-versions-location"] == archive.rsplit("/", 1)[1]
    for body in (b"v1", b"v2", b"v3"):
        assert api.put(f"{c}/o", data=body, headers={"X-Object-Meta-V": body.decode()}
                       ).status_code == 201
    stamps = []
    for entry in listing(api, archive):
        assert entry["name"].startswith("001o/")
        stamps.append(entry["name"].split("/")[1])
    assert len(stamps) == 2 and stamps == sorted(stamps)
    old = api.get(f"{archive}/001o/{stamps[0]}")
    assert old.content == b"v1" and old.headers["x-object-meta-v"] == "v1"
    assert api.get(f"{c}/o").content == b"v3"
    assert api.delete(f"{c}/o").status_code == 204
    r = api.get(f"{c}/o")
    assert r.content == b"v2" and r.headers["x-object-meta-v"] == "v2"
    assert len(listing(api, archive)) == 1
    api.delete(f"{c}/o")
    assert api.get(f"{c}/o").content == b"v1"
    assert api.delete(f"{c}/o").status_code == 204
    assert api.get(f"{c}/o").status_code == 404
    assert listing(api, archive) == []


def test_history_mode_writes_delete_markers(api):
    c, archive = versioned(api, "X-History-Location")
    head = api.head(c)
    assert "x-versions-location" not in head.headers
    assert head.headers["x-history-location"] == archive.rsplit("/", 1)[1]
    name = "ü/x"  # a UTF-8 name: the prefix counts its bytes
    api.put(f"{c}/{name}", data=b"v1")
    api.put(f"{c}/{name}", data=b"v2")
    assert api.delete(f"{c}/{name}").status_code == 204
    assert api.get(f"{c}/{name}").status_code == 404
    entries = listing(api, archive)
    assert [e["name"][:7] for e in entries] == ["004ü/x/"] * 3
    assert [e["content_type"] for e in entries][2] == MARKER
    assert api.get(f"{archive}/{entries[1]['name']}").content == b"v2"


def test_stack_mode_honours_history_delete_markers(api):
    """An archive that history mode left with a delete marker on top (the container's mode
    switched since: settings reach other proxy workers within container_info_ttl, so the
    archive is written directly here)."""
    c, archive = versioned(api, "X-Versions-Location")
    api.put(f"{archive}/001o/0000000001.00000", data=b"v1")
    api.put(f"{archive}/001o/0000000002.00000", data=b"", headers={"Content-Type": MARKER})
    assert api.delete(f"{c}/o").status_code == 204  # the marker, and v1 back in place
    assert api.get(f"{c}/o").content == b"v1"
    assert listing(api, archive) == []
    api.put(f"{archive}/001o/0000000003.00000", data=b"", headers={"Content-Type": MARKER})
    assert api.delete(f"{c}/o").status_code == 204  # the object is back: just deleted
    assert api.get(f"{c}/o").status_code == 404
    assert [e["name"] for e in listing(api, archive)] == ["001o/0000000003.00000"]


def test_settings_are_checked_and_removed(api, c):
    r = api.post(c, headers={"X-Versions-Location": "a", "X-History-Location": "b"})
    assert (r.status_code, r.text) == (
        400, "Only one of x-versions-location or x-history-location may be specified")
    r = api.post(c, headers={"X-Versions-Location": "a/b"})
    assert (r.status_code, r.text) == (412, "Container name cannot contain slashes")
    assert "x-versions-location" not in api.head(c).headers
    api.post(c, headers={"X-History-Location": "arch"})
    assert api.head(c).headers["x-history-location"] == "arch"
    api.post(c, headers={"X-Remove-History-Location": "x"})
    head = api.head(c)
    assert "x-history-location" not in head.headers
    assert not any("sysmeta" in k.lower() for k in head.headers)


def test_the_archive_must_be_writable_by_the_caller(api, cluster):
    """A user allowed to write the versioned container but not the archive: the overwrite
    is refused (412, as Swift answers an archive it cannot use) and nothing changes."""
    c, archive = versioned(api, "X-Versions-Location")
    api.put(f"{c}/o", data=b"v1")
    api.post(c, headers={"X-Container-Write": "other:otheruser",
                         "X-Container-Read": "other:otheruser"})
    other = Api(api.base, cluster.auth("other:otheruser")[1])
    assert other.put(f"{c}/o", data=b"v2").status_code == 412
    assert api.get(f"{c}/o").content == b"v1"
    assert listing(api, archive) == []
    api.post(archive, headers={"X-Container-Write": "other:otheruser",
                               "X-Container-Read": "other:otheruser"})
    assert other.put(f"{c}/o", data=b"v2").status_code == 201
    assert [e["bytes"] for e in listing(api, archive)] == [2]


def test_info_advertises_versioned_writes(cluster):
    info = Api(cluster.proxy_url, None).get(f"{cluster.proxy_url}/info").json()
    assert info["versioned_writes"]["allowed_flags"] == ["x-versions-location",
                                                         "x-history-location"]


def test_through_swiftclient(cluster):
    """What a python-swiftclient user sees: versions kept and restored, a link to an object
    the user may not read refused, and a bad link header refused leaving nothing."""
    conn = swiftclient.Connection(f"{cluster.proxy_url}/auth/v1.0", "test:tester",
                                  USERS["test:tester"], retries=0)
    name = f"sc-{uuid.uuid4().hex[:8]}"
    conn.put_container(f"{name}-archive")
    conn.put_container(name, headers={"X-Versions-Location": f"{name}-archive"})
    assert conn.head_container(name)["x-versions-location"] == f"{name}-archive"
    conn.put_object(name, "doc", b"first")
    conn.put_object(name, "doc", b"second")
    assert conn.get_object(name, "doc")[1] == b"second"
    assert [o["bytes"] for o in conn.get_container(f"{name}-archive")[1]] == [5]
    conn.delete_object(name, "doc")
    assert conn.get_object(name, "doc")[1] == b"first"

    conn.put_container(f"{name}-private")
    conn.put_object(f"{name}-private", "secret", b"secret")
    conn.put_container(f"{name}-shared", headers={"X-Container-Read": "other:otheruser"})
    conn.put_object(f"{name}-shared", "link", b"",
                    headers={"X-Symlink-Target": f"{name}-private/secret"})
    other = swiftclient.Connection(f"{cluster.proxy_url}/auth/v1.0", "other:otheruser",
                                   USERS["other:otheruser"], retries=0,
                                   preauthurl=conn.get_auth()[0])
    with pytest.raises(ClientException) as refused:
        other.get_object(f"{name}-shared", "link")
    assert refused.value.http_status == 403
    assert conn.get_object(f"{name}-shared", "link")[1] == b"secret"

    with pytest.raises(ClientException) as bad:
        conn.put_object(f"{name}-shared", "bad", b"",
                        headers={"X-Symlink-Target": "no-object-part"})
    assert bad.value.http_status == 412
    assert [o["name"] for o in conn.get_container(f"{name}-shared")[1]] == ["link"]


def versions(api, url: str, **params) -> list[tuple[str, str, bool, int]]:
    r = api.get(url, params={"versions": "", **params})
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    return [(e["name"], e["content_type"], e["is_latest"], e["bytes"]) for e in r.json()]


def test_versioned_container_keeps_every_version(api, c):
    assert api.post(c, headers={"X-Versions-Enabled": "true"}).status_code == 204
    assert api.head(c).headers["x-versions-enabled"] == "True"
    ids = []
    for body in (b"one", b"two!"):
        r = api.put(f"{c}/o", data=body, headers={"Content-Type": "text/x-v"})
        assert r.status_code == 201
        ids.append(r.headers["x-object-version-id"])
    r = api.get(f"{c}/o")
    assert r.content == b"two!" and r.headers["x-object-version-id"] == ids[1]
    assert r.headers["content-location"].endswith(f"/o?version-id={ids[1]}")
    assert api.get(f"{c}/o", params={"version-id": ids[0]}).content == b"one"
    plain = api.get(f"{c}?format=json").json()
    assert [(e["name"], e["bytes"], e["version_symlink"]) for e in plain] == [("o", 4, True)]
    assert plain[0]["symlink_path"].endswith(f"/o?version-id={ids[1]}")
    assert api.get(c).text == "o\n"
    # The versions' reserved names are out of clients' reach, even asked for.
    assert api.get(c, params={"prefix": "\x00", "format": "json"}).json() == []
    assert api.get(f"{c}/%00o%00").status_code == 412
    assert versions(api, c) == [("o", "text/x-v", True, 4), ("o", "text/x-v", False, 3)]
    assert int(api.head(c).headers["x-container-bytes-used"]) == 7

    r = api.delete(f"{c}/o")
    assert r.status_code == 204
    marker = r.headers["x-object-version-id"]
    assert api.get(f"{c}/o").status_code == 404
    assert versions(api, c) == [("o", MARKER, True, 0), ("o", "text/x-v", False, 4),
                                ("o", "text/x-v", False, 3)]
    assert api.get(f"{c}/o", params={"version-id": marker}).status_code == 404
    assert api.get(f"{c}/o", params={"version-id": "junk"}).status_code == 400
    assert api.post(f"{c}/o", params={"version-id": ids[0]}).status_code == 400
    r = api.delete(c)
    assert (r.status_code, r.text) == (409, "Delete all versions before deleting container.")

    # An old version made the latest again, then each version deleted by its id.
    assert api.put(f"{c}/o", params={"version-id": ids[0]}, data=b"").status_code == 201
    assert api.get(f"{c}/o").content == b"one"
    for version_id in (marker, ids[1], ids[0]):
        r = api.delete(f"{c}/o", params={"version-id": version_id})
        assert r.status_code == 204 and r.headers["x-object-version-id"] == version_id
    assert api.get(f"{c}/o").status_code == 404
    assert versions(api, c) == []
    assert api.delete(c).status_code == 204


def test_a_versioned_slo_is_listed_with_its_slo_etag(api, c):
    """As Swift lists it: the link and the version show the SLO's size and ETag
    (``slo_etag``), the hash is the manifest's."""
    segments = f"{api.base}/segs-{uuid.uuid4().hex[:8]}"
    assert api.put(segments).status_code == 201
    entries = put_segments(api, segments, PARTS)
    assert api.post(c, headers={"X-Versions-Enabled": "true"}).status_code == 204
    assert api.put(f"{c}/big?multipart-manifest=put",
                   data=json.dumps(entries)).status_code == 201
    head = api.head(f"{c}/big")
    assert head.status_code == 200
    for entry in (listing(api, c)[0], api.get(c, params={"versions": ""}).json()[0]):
        assert (entry["name"], entry["bytes"]) == ("big", len(WHOLE))
        assert (entry["hash"], entry["slo_etag"]) == (head.headers["x-manifest-etag"],
                                                      head.headers["etag"])


def test_versions_listing_pages_past_the_first_page_of_the_container(api, c, cluster):
    """``?versions`` pages through every version with marker/version_marker, however many
    the container holds. The 10,005 versions are merged into each container replica through
    the DB replication RPC (as a replica would bring them): 10,005 PUTs would cost minutes."""
    assert api.post(c, headers={"X-Versions-Enabled": "true"}).status_code == 204
    account, container = c.split("/")[-2:]
    stamp = Timestamp.now()
    rows = [(version_name(f"o{i:05d}", stamp.normal), stamp.normal, 1, "text/plain",
             EMPTY_MD5, 0) for i in range(LISTING_LIMIT + 5)]
    part, nodes = load_rings(cluster.config)["container"].get_nodes(account, container)
    for node in nodes:
        r = requests.post(
            f"http://{node['ip']}:{node['port']}/replicate/container/{node['device']}/{part}/"
            f"{name_hash(account, container)}", headers={"Content-Type": "application/msgpack"},
            data=msgpack.packb({"op": "merge_items", "uid": "test", "rows": rows,
                                "max_seq": len(rows)}), timeout=60)
        assert r.status_code == 200, r.text
    first = api.get(c, params={"versions": ""}).json()
    assert len(first) == LISTING_LIMIT
    rest = api.get(c, params={"versions": "", "marker": first[-1]["name"],
                              "version_marker": first[-1]["version_id"]}).json()
    assert [e["name"] for e in rest] == [f"o{i:05d}" for i in range(LISTING_LIMIT,
                                                                    LISTING_LIMIT + 5)]
    assert api.get(c, params={"versions": "", "marker": "o10003", "limit": "1"}
                   ).json()[0]["name"] == "o10004"


def test_versioning_disabled_and_enabled_again(api, c):
    api.post(c, headers={"X-Versions-Enabled": "true"})
    first = api.put(f"{c}/o", data=b"v1").headers["x-object-version-id"]
    api.post(c, headers={"X-Versions-Enabled": "false"})
    assert api.head(c).headers["x-versions-enabled"] == "False"
    r = api.put(f"{c}/o", data=b"plain")
    assert r.headers["x-object-version-id"] == "null"
    assert api.get(f"{c}/o").headers["x-object-version-id"] == "null"
    assert api.get(f"{c}/o", params={"version-id": first}).content == b"v1"
    assert api.get(f"{c}/o", params={"version-id": "null"}).content == b"plain"
    assert [v[2:] for v in versions(api, c)] == [(True, 5), (False, 2)]
    api.post(c, headers={"X-Versions-Enabled": "true"})
    api.put(f"{c}/o", data=b"v3")  # the null version is kept as a version of its own
    assert [v[2:] for v in versions(api, c)] == [(True, 2), (False, 5), (False, 2)]
    # Copies are versions too, both ways of asking for one.
    name = c.rsplit("/", 1)[1]
    api.put(f"{c}/src", data=b"copied")
    r = api.request("COPY", f"{c}/src", headers={"Destination": f"{name}/o"})
    assert r.status_code == 201 and r.headers["x-object-version-id"]
    r = api.put(f"{c}/o", data=b"", headers={"X-Copy-From": f"{name}/src"})
    assert r.status_code == 201 and r.headers["x-object-version-id"]
    assert [v[2:] for v in versions(api, c, prefix="o")][:3] == [(True, 6), (False, 6),
                                                                 (False, 2)]
    assert api.post(c, headers={"X-Versions-Location": "arch"}).status_code == 400


def test_versions_follow_the_containers_acls(api, cluster, c):
    api.post(c, headers={"X-Versions-Enabled": "true"})
    first = api.put(f"{c}/o", data=b"v1").headers["x-object-version-id"]
    api.put(f"{c}/o", data=b"v2")
    other = Api(api.base, cluster.auth("other:otheruser")[1])
    assert other.get(f"{c}/o", params={"version-id": first}).status_code == 403
    assert other.get(f"{c}/o").status_code == 403
    api.post(c, headers={"X-Container-Read": "other:otheruser"})
    assert other.get(f"{c}/o", params={"version-id": first}).content == b"v1"
    assert other.get(f"{c}/o").content == b"v2"
    assert other.delete(f"{c}/o").status_code == 403


def test_versions_listing_parameters(api, c):
    """``?versions`` with Swift 2.38's parameters, as the reference answered them."""
    assert api.post(c, headers={"X-Versions-Enabled": "true"}).status_code == 204
    for name in ("a", "a", "b", "d/x", "d/y"):
        assert api.put(f"{c}/{name}", data=name.encode()).status_code == 201
    assert api.delete(f"{c}/b").status_code == 204

    def listed(**params):
        r = api.get(c, params={"versions": "", **params})
        assert r.status_code == 200, r.text
        return [(e.get("name") or e["subdir"], e.get("version_id")) for e in r.json()]

    everything = listed()
    (_, a2), (_, a1), (_, b2), (_, b1), (_, x), (_, y) = everything
    assert [name for name, _ in everything] == ["a", "a", "b", "b", "d/x", "d/y"]
    assert listed(marker="a", version_marker=a2) == everything[1:]
    assert listed(marker="a") == everything[2:]
    assert listed(end_marker="b", limit=3) == everything[:2]
    assert listed(limit=3) == everything[:3]
    assert listed(prefix="d/") == [("d/x", x), ("d/y", y)]
    assert listed(delimiter="/") == [*everything[:4], ("d/", None)]
    assert listed(reverse="true", limit=2) == [("d/y", y), ("d/x", x)]
    assert listed(reverse="true", marker="d") == everything[3::-1]
    for bad, text in (({"version_marker": a2}, "version_marker param requires marker"),
                      ({"marker": "a", "version_marker": "bad"},
                       "invalid version_marker param")):
        r = api.get(c, params={"versions": "", **bad})
        assert (r.status_code, r.text) == (400, text)
    for refused in ({"format": "xml"}, {"format": "plain"}):
        assert api.get(c, params={"versions": "", **refused}).status_code == 406
    assert api.get(c, params={"versions": ""}, headers={"Accept": "text/plain"}
                   ).status_code == 406
