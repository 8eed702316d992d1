"""Static large objects through the real proxy: manifests put, read, ranged, checked,
deleted, nested, and what happens when a segment goes away."""

from __future__ import annotations

import hashlib
import json

import pytest
import requests

from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def put_segments(api, c: str, parts: list[bytes], prefix: str = "seg") -> list[dict]:
    """Uploads ``parts`` as objects; their manifest entries."""
    entries = []
    for index, data in enumerate(parts):
        assert api.put(f"{c}/{prefix}/{index:03d}", data=data).status_code == 201
        name = c.rsplit("/", 1)[1]
        entries.append({"path": f"/{name}/{prefix}/{index:03d}", "etag": md5(data),
                        "size_bytes": len(data)})
    return entries


PARTS = [b"a" * 10, b"b" * 7, b"c" * 5]
WHOLE = b"".join(PARTS)


def test_info_advertises_slo_with_swift_limits(cluster):
    info = requests.get(f"{cluster.proxy_url}/info", timeout=10).json()
    assert info["slo"]["max_manifest_segments"] == 1000
    assert info["slo"]["max_manifest_size"] == 8 * 1024 * 1024
    assert info["slo"]["min_segment_size"] == 1
    assert "dlo" in info


def test_put_get_head_and_listing(api, c):
    entries = put_segments(api, c, PARTS)
    r = api.put(f"{c}/big?multipart-manifest=put", data=json.dumps(entries),
                headers={"X-Object-Meta-Kind": "slo", "Content-Type": "text/plain"})
    assert r.status_code == 201, r.text
    slo_etag = md5("".join(md5(p) for p in PARTS).encode())
    assert r.headers["etag"] == f'"{slo_etag}"'
    r = api.get(f"{c}/big")
    assert r.status_code == 200 and r.content == WHOLE
    assert r.headers["etag"] == f'"{slo_etag}"' and r.headers["x-static-large-object"] == "True"
    assert r.headers["content-type"] == "text/plain"
    assert r.headers["x-object-meta-kind"] == "slo"
    assert not any(k.lower().startswith("x-object-sysmeta") for k in r.headers)
    head = api.head(f"{c}/big")
    assert head.headers["content-length"] == str(len(WHOLE))
    assert head.headers["etag"] == f'"{slo_etag}"'
    listing = {e["name"]: e for e in api.get(f"{c}?format=json").json()}
    assert listing["big"]["bytes"] == len(WHOLE)
    assert listing["big"]["slo_etag"] == f'"{slo_etag}"'
    assert listing["big"]["content_type"] == "text/plain"


def test_ranges_across_segment_boundaries(api, c):
    entries = put_segments(api, c, PARTS)
    api.put(f"{c}/big?multipart-manifest=put", data=json.dumps(entries))
    for first, last in [(8, 11), (0, 21), (9, 17), (17, 17), (3, 3), (15, 21)]:
        r = api.get(f"{c}/big", headers={"Range": f"bytes={first}-{last}"})
        assert r.status_code == 206, (first, last)
        assert r.content == WHOLE[first:last + 1], (first, last)
        assert r.headers["content-range"] == f"bytes {first}-{last}/{len(WHOLE)}"
    r = api.get(f"{c}/big", headers={"Range": "bytes=-4"})
    assert r.content == WHOLE[-4:]
    r = api.get(f"{c}/big", headers={"Range": "bytes=5-11,15-16"})
    assert r.status_code == 206 and r.headers["content-type"].startswith("multipart/byteranges")
    assert WHOLE[5:12] in r.content and WHOLE[15:17] in r.content
    r = api.get(f"{c}/big", headers={"Range": "bytes=50-"})
    assert r.status_code == 416 and r.headers["content-range"] == f"bytes */{len(WHOLE)}"


def test_conditional_gets_use_the_slo_etag(api, c):
    entries = put_segments(api, c, PARTS)
    etag = api.put(f"{c}/big?multipart-manifest=put", data=json.dumps(entries)).headers["etag"]
    assert api.get(f"{c}/big", headers={"If-None-Match": etag}).status_code == 304
    assert api.get(f"{c}/big", headers={"If-Match": etag}).content == WHOLE
    r = api.get(f"{c}/big", headers={"If-Match": '"nope"'})
    assert r.status_code == 412 and r.headers["etag"] == etag
    r = api.get(f"{c}/big", headers={"If-Match": etag, "Range": "bytes=9-10"})
    assert r.content == b"ab"


def test_manifest_get_and_raw_format(api, c):
    entries = put_segments(api, c, PARTS)
    entries[1]["range"] = "1-3"
    api.put(f"{c}/big?multipart-manifest=put", data=json.dumps(entries))
    assert api.get(f"{c}/big").content == PARTS[0] + PARTS[1][1:4] + PARTS[2]
    r = api.get(f"{c}/big?multipart-manifest=get")
    assert r.headers["content-type"] == "application/json; charset=utf-8"
    stored = r.json()
    assert [e["name"] for e in stored] == [e["path"] for e in entries]
    assert stored[1]["range"] == "1-3" and stored[0]["bytes"] == 10
    assert r.headers["etag"] == md5(r.content)
    raw = api.get(f"{c}/big?multipart-manifest=get&format=raw").json()
    assert raw == [{"etag": e["etag"], "path": e["path"], "size_bytes": e["size_bytes"],
                    **({"range": e["range"]} if "range" in e else {})} for e in entries]
    # the raw format is the put format: it makes the same SLO again
    r = api.put(f"{c}/again?multipart-manifest=put", data=json.dumps(raw))
    assert r.status_code == 201 and api.get(f"{c}/again").content == api.get(f"{c}/big").content


def test_nested_slo(api, c):
    inner = put_segments(api, c, PARTS, "inner")
    api.put(f"{c}/inner?multipart-manifest=put", data=json.dumps(inner))
    outer = put_segments(api, c, [b"X" * 4], "outer")
    name = c.rsplit("/", 1)[1]
    outer.insert(0, {"path": f"{name}/inner"})
    r = api.put(f"{c}/outer?multipart-manifest=put", data=json.dumps(outer))
    assert r.status_code == 201, r.text
    assert api.get(f"{c}/outer").content == WHOLE + b"X" * 4
    r = api.get(f"{c}/outer", headers={"Range": "bytes=20-23"})
    assert r.content == WHOLE[20:] + b"XX"
    assert api.get(f"{c}/outer?multipart-manifest=get").json()[0]["sub_slo"] is True


def bad_manifests(name: str, good: list[dict]) -> list[tuple[bytes, int, str]]:
    e0 = good[0]
    return [
        (b"nope", 400, "Manifest must be valid JSON.\n"),
        (b'{"a": 1}', 400, "Manifest must be a list.\n"),
        (json.dumps([{**e0, "foo": 1}]).encode(), 400, 'Index 0: extraneous keys "foo"\n'),
        (json.dumps([{"path": "nocontainer"}]).encode(), 400,
         "Index 0: path does not refer to an object. Path must be of the form "
         "/container/object.\n"),
        (json.dumps([{**e0, "size_bytes": "x"}]).encode(), 400,
         "Index 0: invalid size_bytes\n"),
        (json.dumps([{**e0, "range": "x"}]).encode(), 400, "Index 0: invalid range\n"),
        (json.dumps([{**e0, "range": "1-2,4-5"}]).encode(), 400,
         "Index 0: multiple ranges (only one allowed)\n"),
        (json.dumps([{**e0, "size_bytes": 0}, e0]).encode(), 400,
         "Index 0: too small; each segment must be at least 1 byte.\n"),
        (json.dumps([{"path": f"/{name}/bad"}]).encode(), 400,
         "Index 0: manifest must not include itself as a segment\n"),
        (json.dumps([e0] * 1001).encode(), 413,
         "Number of object-backed segments must be <= 1000"),
        (json.dumps([{**e0, "size_bytes": 11}, {**e0, "etag": "x" * 32},
                     {"path": f"/{name}/missing"}, {"path": good[1]["path"], "range": "20-30"}]).encode(),
         400, f"Errors:\n{e0['path']}, Size Mismatch\n{e0['path']}, Etag Mismatch\n"
              f"/{name}/missing, 404 Not Found\n{good[1]['path']}, Unsatisfiable Range\n"),
    ]


def test_bad_manifests_are_refused_and_leave_nothing(api, c):
    good = put_segments(api, c, PARTS)
    name = c.rsplit("/", 1)[1]
    for body, status, text in bad_manifests(name, good):
        r = api.put(f"{c}/bad?multipart-manifest=put", data=body)
        assert (r.status_code, r.text) == (status, text), body[:80]
        assert api.head(f"{c}/bad").status_code == 404
    r = api.put(f"{c}/bad?multipart-manifest=put", data=json.dumps(good),
                headers={"ETag": "0" * 32})
    assert r.status_code == 422
    r = api.put(f"{c}/bad", data=b"x", headers={"X-Static-Large-Object": "True"})
    assert r.status_code == 400 and "reserved header" in r.text
    r = api.put(f"{c}/bad", data=b"x", headers={"X-Object-Sysmeta-Slo-Size": "99"})
    assert r.status_code == 201 and "x-object-sysmeta-slo-size" not in api.head(f"{c}/bad").headers
    assert api.put(f"{c}/bad?multipart-manifest=put", data=b"x" * (8 * 1024 * 1024 + 1)
                   ).status_code == 413
    names = [e["name"] for e in api.get(f"{c}?format=json").json()]
    assert names == ["bad", *(e["path"].split("/", 2)[2] for e in good)]


def test_heartbeat_put(api, c):
    good = put_segments(api, c, PARTS)
    r = api.put(f"{c}/hb?multipart-manifest=put&heartbeat=on", data=json.dumps(good))
    assert r.status_code == 202
    assert r.text.startswith(" ") and "Response Status: 201 Created\n" in r.text
    assert api.get(f"{c}/hb").content == WHOLE
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/hb2?multipart-manifest=put&heartbeat=on",
                data=json.dumps([{"path": f"{name}/nope"}]), headers={"Accept": "application/json"})
    assert r.status_code == 202
    assert json.loads(r.text.strip())["Errors"] == [[f"{name}/nope", "404 Not Found"]]
    assert api.head(f"{c}/hb2").status_code == 404


def test_manifest_delete_removes_segments(api, c):
    inner = put_segments(api, c, PARTS[:2], "inner")
    name = c.rsplit("/", 1)[1]
    api.put(f"{c}/inner?multipart-manifest=put", data=json.dumps(inner))
    outer = [{"path": f"{name}/inner"}, *put_segments(api, c, [b"z" * 3], "outer")]
    api.put(f"{c}/outer?multipart-manifest=put", data=json.dumps(outer))
    r = api.delete(f"{c}/outer?multipart-manifest=delete")
    assert r.status_code == 200
    assert r.text == ("Number Deleted: 5\nNumber Not Found: 0\nResponse Body: \n"
                      "Response Status: 200 OK\nErrors:\n")
    assert api.get(f"{c}?format=json").json() == []
    r = api.delete(f"{c}/outer?multipart-manifest=delete",
                   headers={"Accept": "application/json"})
    assert r.json()["Number Not Found"] == 1


def test_vanished_or_changed_segment_fails_the_get(api, c):
    parts = [b"p" * 300_000, b"q" * 300_000, b"r" * 300_000]
    entries = put_segments(api, c, parts)
    api.put(f"{c}/big?multipart-manifest=put", data=json.dumps(entries))
    api.delete(f"{c}/seg/000")
    r = api.get(f"{c}/big")
    assert r.status_code == 409  # the first segment: refused before the answer starts
    api.put(f"{c}/seg/000", data=parts[0])
    api.put(f"{c}/seg/002", data=b"R" * 300_000)  # same size, other bytes
    r = api.get(f"{c}/big", stream=True)
    assert r.status_code == 200
    received = bytearray()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):  # cut, never wrong bytes
        for chunk in r.iter_content(65536):
            received += chunk
    assert len(received) < 900_000 and bytes(received) == b"".join(parts)[:len(received)]


def test_copies_of_an_slo(api, c):
    entries = put_segments(api, c, PARTS)
    api.put(f"{c}/big?multipart-manifest=put", data=json.dumps(entries),
            headers={"X-Object-Meta-Color": "red"})
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/flat", headers={"X-Copy-From": f"{name}/big"})
    assert r.status_code == 201, r.text
    assert r.headers["etag"] == md5(WHOLE) and r.headers["x-copied-from"] == f"{name}/big"
    r = api.get(f"{c}/flat")
    assert r.content == WHOLE and "x-static-large-object" not in r.headers
    assert r.headers["x-object-meta-color"] == "red"
    r = api.request("COPY", f"{c}/big", headers={"Destination": f"{name}/flat2"})
    assert r.status_code == 201 and api.get(f"{c}/flat2").content == WHOLE
    r = api.request("COPY", f"{c}/big?multipart-manifest=get",
                    headers={"Destination": f"{name}/manifest-copy"})
    assert r.status_code == 201, r.text
    r = api.get(f"{c}/manifest-copy")
    assert r.content == WHOLE and r.headers["x-static-large-object"] == "True"
    assert r.headers["x-object-meta-color"] == "red"
    assert api.head(f"{c}/manifest-copy").headers["etag"] == api.head(f"{c}/big").headers["etag"]


def test_segments_are_read_as_the_caller(api, cluster, c):
    """A manifest the caller may read whose segments sit in a container the caller may not
    read serves none of their bytes (segments are read with the caller's rights), and the
    caller cannot make a manifest of them either."""
    private = put_segments(api, c, PARTS)
    reader = Api(api.base, cluster.auth("other:otheruser")[1])
    name = c.rsplit("/", 1)[1]
    # a manifest in a container they may read, whose segments sit in one they may not
    shared = f"{api.base}/shared-{name}"
    api.put(shared, headers={"X-Container-Read": "other:otheruser"})
    api.put(f"{shared}/big?multipart-manifest=put", data=json.dumps(private))
    assert api.get(f"{shared}/big").content == WHOLE
    r = reader.get(f"{shared}/big")
    assert r.status_code == 409 and WHOLE[:10] not in r.content
    assert reader.head(f"{shared}/big").status_code == 200  # the manifest itself is theirs to see
    api.post(shared, headers={"X-Container-Write": "other:otheruser"})
    r = reader.put(f"{shared}/steal?multipart-manifest=put", data=json.dumps(private))
    assert r.status_code == 400 and r.text.count("403 Forbidden") == len(PARTS)
    assert reader.head(f"{shared}/steal").status_code == 404
