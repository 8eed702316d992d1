"""Bulk delete and archive extraction through the real proxy (answers as Swift 2.38's, probed
on the reference), and the unmodified ``swift`` CLI's ``delete`` using bulk delete."""

from __future__ import annotations

import io
import tarfile
import uuid

import falcon.testing
import pytest
import requests

from soko.object.middleware.bulk import Bulk
from tests.object.middleware.test_swift_cli_segments import run_swift

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


def tar_of(files: dict[str, bytes], mode: str = "w", pax: dict | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.PAX_FORMAT) as archive:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.pax_headers = (pax or {}).get(name, {})
            archive.addfile(info, io.BytesIO(data))
        folder = tarfile.TarInfo("folder-entries-are-skipped")
        folder.type = tarfile.DIRTYPE
        archive.addfile(folder)
    return out.getvalue()


def names(api, url: str) -> list[str]:
    return [entry["name"] for entry in api.get(f"{url}?format=json").json()]


def test_info_advertises_both_with_swifts_limits(cluster):
    info = requests.get(f"{cluster.proxy_url}/info", timeout=10).json()
    assert info["bulk_upload"] == {"max_containers_per_extraction": 10000,
                                   "max_failed_extractions": 1000}
    assert info["bulk_delete"] == {"max_deletes_per_request": 10000, "max_failed_deletes": 1000}


def test_bulk_delete_objects_then_containers_with_a_report(api, c):
    name = c.rsplit("/", 1)[1]
    for obj in ("a", "sp ace", "keep"):
        assert api.put(f"{c}/{obj}", data=b"x").status_code == 201
    empty = f"bd-{uuid.uuid4().hex[:6]}"
    assert api.put(f"{api.base}/{empty}").status_code == 201
    body = (f"{name}/a\n/{name}/sp%20ace\n{name}/nothere\n\n{empty}\n{name}/%FF\n{name}\n"
            f"/{empty}/gone-with-its-container\n")
    r = api.post(f"{api.base}?bulk-delete", data=body.encode(),
                 headers={"Content-Type": "text/plain"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain"
    assert r.text == ("Number Deleted: 3\nNumber Not Found: 2\nResponse Body: \n"
                      f"Response Status: 400 Bad Request\nErrors:\n"
                      f"{name}/%FF, 412 Precondition Failed\n{name}, 409 Conflict\n")
    assert names(api, c) == ["keep"]
    assert api.head(f"{api.base}/{empty}").status_code == 404


def test_bulk_delete_formats_and_refusals(api, c):
    name = c.rsplit("/", 1)[1]
    assert api.put(f"{c}/o", data=b"x").status_code == 201
    r = api.delete(f"{api.base}?bulk-delete", data=f"{name}/o\n{name}\n",
                   headers={"Accept": "application/json", "Content-Type": "text/plain"})
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {"Response Status": "200 OK", "Response Body": "", "Number Deleted": 2,
                        "Number Not Found": 0, "Errors": []}
    r = api.post(f"{api.base}?bulk-delete", data="x/y", headers={"Accept": "application/xml"})
    assert r.text.startswith("<delete>\n") and "<number_not_found>1</number_not_found>" in r.text
    # A body not said to be plain text, an Accept naming no format Swift writes, nothing to
    # delete, and too many paths: each reported (200, as Swift: the answer started already).
    r = api.post(f"{api.base}?bulk-delete", data="x/y",
                 headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert "Response Status: 406 Not Acceptable\n" in r.text
    r = api.post(f"{api.base}?bulk-delete", data="x/y", headers={"Accept": "text/html"})
    assert r.status_code == 200 and "Response Status: 406 Not Acceptable\n" in r.text
    r = api.post(f"{api.base}?bulk-delete", data="\n\n")
    assert "Response Body: Invalid bulk delete.\nResponse Status: 400 Bad Request\n" in r.text
    r = api.post(f"{api.base}?bulk-delete", data="c/o\n" * 10001)
    assert ("Response Body: Maximum Bulk Deletes: 10000 per request\n"
            "Response Status: 413 Request Entity Too Large\n") in r.text


def test_extract_archive_reports_exactly_the_bad_members(api):
    target = f"ex-{uuid.uuid4().hex[:6]}"
    long_name = f"{target}/" + "n" * 1100
    long_container = "c" * 300
    archive = tar_of({f"{target}/a.txt": b"hello", "top-level-is-skipped.txt": b"no",
                      long_name: b"too long", f"{long_container}/b.txt": b"no container",
                      f"./{target}/dir/c.txt": b"deep", f"{target}/meta": b"hi"},
                     pax={f"{target}/meta": {"SCHILY.xattr.user.meta.color": "red",
                                             "SCHILY.xattr.user.mime_type": "text/x-foo"}})
    r = api.put(f"{api.base}?extract-archive=tar", data=archive,
                headers={"X-Object-Meta-From": "tar"})
    assert r.status_code == 200 and r.headers["content-type"] == "text/plain"
    assert r.text == (
        "Number Files Created: 3\nResponse Body: \nResponse Status: 400 Bad Request\n"
        f"Errors:\n{long_name}, 400 Bad Request\n"
        f"/v1/{api.account}/{long_container}, 400 Bad Request\n"
        f"{long_container}/b.txt, 404 Not Found\n")
    assert names(api, f"{api.base}/{target}") == ["a.txt", "dir/c.txt", "meta"]
    meta = api.get(f"{api.base}/{target}/meta")
    assert meta.content == b"hi" and meta.headers["content-type"] == "text/x-foo"
    assert meta.headers["x-object-meta-color"] == "red"
    assert meta.headers["x-object-meta-from"] == "tar"


def test_extract_compressed_under_a_prefix_and_bad_archives(api, c):
    name = c.rsplit("/", 1)[1]
    r = api.put(f"{c}/pre/?extract-archive=.tar.gz", headers={"Accept": "application/json"},
                data=tar_of({"x/1": b"one", "2": b"two"}, mode="w:gz"))
    assert r.json() == {"Response Status": "201 Created", "Response Body": "",
                        "Number Files Created": 2, "Errors": []}
    assert names(api, c) == ["pre/2", "pre/x/1"]
    assert api.get(f"{c}/pre/x/1").content == b"one"
    r = api.put(f"{api.base}/{name}?extract-archive=tar.bz2", data=b"not a tarball")
    assert "Response Status: 400 Bad Request\n" in r.text
    assert "Response Body: Invalid Tar File: " in r.text
    r = api.put(f"{c}?extract-archive=zip", data=b"x")
    assert r.status_code == 400 and r.text == "Unsupported archive format"
    assert names(api, c) == ["pre/2", "pre/x/1"]


def test_swift_cli_delete_uses_bulk_delete(cluster, api, tmp_path):
    target = f"cli-bd-{uuid.uuid4().hex[:6]}"
    files = {f"{target}/o{i:02d}": b"x" for i in range(5)}
    r = api.put(f"{api.base}?extract-archive=tar", data=tar_of(files),
                headers={"Accept": "application/json"})
    assert r.json()["Number Files Created"] == 5
    # One object thread: more than two objects go in bulk deletes (swiftclient's rule).
    out = run_swift(cluster, "--debug", "delete", "--object-threads", "1", target,
                    cwd=tmp_path, stderr=True)
    assert "?bulk-delete" in out
    assert api.head(f"{api.base}/{target}").status_code == 404


def test_a_long_operation_keeps_the_connection_with_whitespace(api, c, inprocess_proxy):
    """Every step counts as long (``yield_frequency`` 0): the XML declaration, spaces, then
    the report after a blank line, as Swift's heartbeat."""
    name = c.rsplit("/", 1)[1]
    for obj in ("a", "b"):
        assert api.put(f"{c}/{obj}", data=b"x").status_code == 201
    bulk = Bulk(inprocess_proxy())
    bulk.yield_frequency = 0
    environ = falcon.testing.create_environ(
        method="DELETE", path="/" + api.base.split("/", 3)[3], query_string="bulk-delete",
        headers={"X-Auth-Token": api.headers["X-Auth-Token"], "Accept": "application/xml"},
        body=f"{name}/a\n{name}/b\n")
    chunks = list(bulk(environ, lambda status, headers: None))
    assert chunks[:2] == [b'<?xml version="1.0" encoding="UTF-8"?>\n', b" "]
    assert chunks[-1].startswith(b"\r\n\r\n<delete>\n<number_deleted>2</number_deleted>")
