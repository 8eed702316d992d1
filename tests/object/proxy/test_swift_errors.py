"""Errors on the Swift API as Swift answers them: status line, content type and body.

Each expectation was read off Swift 2.38 (the reference all-in-one) and is defined in its
source: fixed pages from ``swift/common/swob.py`` ``RESPONSE_REASONS``; worded ones from
``swift/common/constraints.py`` (``check_object_creation``, ``check_delete_headers``,
``check_metadata``: ``text/plain``), ``swift/proxy/server.py`` ``handle_request`` (``Bad URL``,
``Invalid UTF8 or contains NULL``), ``swift/common/middleware/copy.py`` (``Destination header
required``); the 401 realm from swob's ``www_authenticate`` and tempauth's
``handle_get_token``.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
import requests

from tests.object.proxy import raw_http

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

HTML = "text/html; charset=UTF-8"
NOT_FOUND = "<html><h1>Not Found</h1><p>The resource could not be found.</p></html>"


def page(title: str, explanation: str) -> str:
    return f"<html><h1>{title}</h1><p>{explanation}</p></html>"


def raw(cluster, method: str, path: bytes, headers: dict[str, str] | None = None):
    answer = raw_http.raw(cluster.proxy_port, method, path, (headers or {}).items())
    return answer.status, answer.reason, answer.header("content-type"), answer.text


def assert_answer(r, status: int, content_type: str, body: str) -> None:
    assert (r.status_code, r.headers.get("content-type"), r.text) == (
        status, content_type, body), r.headers


def test_worded_errors_are_swifts_texts(cluster, cluster_api, cluster_container):
    api, url = cluster_api, f"{cluster_api.base}/{cluster_container}"
    assert_answer(api.put(f"{url}/o", data=b"x", headers={"X-Delete-After": "abc"}),
                  400, "text/plain", "Non-integer X-Delete-After")
    assert_answer(api.put(f"{url}/o", data=b"x", headers={"X-Delete-At": "5"}),
                  400, "text/plain", "X-Delete-At in past")
    assert_answer(api.put(f"{url}/o", data=b"x", headers={"If-None-Match": "abc"}),
                  400, "text/plain", "If-None-Match only supports *")
    assert_answer(api.put(f"{url}/o", headers={"X-Object-Meta-": "x"}, data=b"x"),
                  400, "text/plain", "Metadata name cannot be empty")
    long_name = "N" + "n" * 128
    assert_answer(api.post(url, headers={f"X-Container-Meta-{long_name.lower()}": "x"}),
                  400, "text/plain", f"Metadata name too long: x-container-meta-{long_name}")
    assert_answer(api.put(f"{url}/o", headers={"Content-Length": "6000000000"}),
                  413, "text/plain", "Your request is too large.")
    assert raw(cluster, "PUT", urlsplit(f"{url}/o").path.encode(), {
        "X-Auth-Token": api.headers["X-Auth-Token"]}) == (
        411, "Length Required", "text/plain", "Missing Content-Length header.")
    assert_answer(api.request("COPY", f"{url}/o"), 412, HTML, "Destination header required")
    assert_answer(api.put(f"{api.base}/{cluster_container}x", headers={
        "X-Storage-Policy": "nope"}), 400, "text/plain", "Invalid X-Storage-Policy 'nope'")


def test_unworded_errors_are_swifts_fixed_pages(cluster_api, cluster_container):
    api, url = cluster_api, f"{cluster_api.base}/{cluster_container}"
    assert_answer(api.get(f"{url}/missing"), 404, HTML, NOT_FOUND)
    assert_answer(api.post(f"{url}/missing"), 404, HTML, NOT_FOUND)
    assert_answer(api.get(f"{url}x"), 404, HTML, NOT_FOUND)
    r = api.head(f"{url}/missing")
    assert (r.status_code, r.headers["content-type"], r.headers["content-length"]) == (
        404, HTML, "0")
    assert api.put(f"{url}/o", data=b"0123456789").status_code == 201
    assert_answer(api.delete(url), 409, HTML, page(
        "Conflict", "There was a conflict when trying to complete your request."))
    assert_answer(api.put(f"{url}/o", data=b"x", headers={"If-None-Match": "*"}), 412, HTML,
                  page("Precondition Failed", "A precondition for this request was not met."))
    assert_answer(api.put(f"{url}/o", data=b"x", headers={"ETag": "abc"}), 422, HTML,
                  page("Unprocessable Entity", "Unable to process the contained instructions"))
    assert_answer(api.get(f"{url}/o", headers={"Range": "bytes=20-"}), 416, HTML,
                  page("Requested Range Not Satisfiable",
                       "The Range requested is not available."))
    r = api.request("PATCH", f"{url}/o")
    assert_answer(r, 405, HTML, page("Method Not Allowed",
                                     "The method is not allowed for this resource."))


def test_paths_no_controller_serves(cluster, cluster_api):
    """``/v1`` with no account is ``412 Bad URL``, an empty segment 404, an unknown version
    400 (Swift's ``get_controller`` with ``split_path(path, 1, 4, True)``)."""
    account = cluster_api.account
    token = {"X-Auth-Token": cluster_api.headers["X-Auth-Token"]}
    bad_url = (412, "Precondition Failed", HTML, "Bad URL")
    assert raw(cluster, "GET", b"/v1") == bad_url
    assert raw(cluster, "GET", b"/v1/") == bad_url
    assert raw(cluster, "GET", b"/anything") == bad_url
    assert raw(cluster, "GET", b"/") == (404, "Not Found", HTML, NOT_FOUND)
    assert raw(cluster, "GET", b"/v1//c", token) == (404, "Not Found", HTML, NOT_FOUND)
    # A "/" in a container name is the path's: container "none", object "d" (none exists)
    assert raw(cluster, "GET", f"/v1/{account}/none%2Fd".encode(), token) == (
        404, "Not Found", HTML, NOT_FOUND)
    assert raw(cluster, "GET", f"/v2/{account}".encode(), token) == (
        400, "Bad Request", HTML, page("Bad Request", "The server could not comply with the "
                                       "request since it is either malformed or otherwise "
                                       "incorrect."))
    invalid = (412, "Precondition Failed", HTML, "Invalid UTF8 or contains NULL")
    assert raw(cluster, "GET", f"/v1/{account}/c%FF".encode(), token) == invalid
    assert raw(cluster, "GET", f"/v1/{account}/c/o%00".encode(), token) == invalid


def test_401_names_the_realm(cluster, cluster_api):
    unauthorized = page("Unauthorized", "This server could not verify that you are authorized "
                        "to access the document you requested.")
    for url, headers, realm in (
            (cluster_api.base, {}, cluster_api.account),
            (cluster_api.base, {"X-Auth-Token": "not-a-token"}, cluster_api.account),
            (f"{cluster.proxy_url}/auth/v1.0",
             {"X-Auth-User": "test:tester", "X-Auth-Key": "wrong"}, "test"),
            (f"{cluster.proxy_url}/auth/v1.0", {}, "unknown")):
        r = requests.get(url, headers=headers, timeout=10)
        assert_answer(r, 401, HTML, unauthorized)
        assert r.headers["www-authenticate"] == f'Swift realm="{realm}"', url



def test_names_too_long_to_exist_are_404_unless_created(cluster_api, cluster_container):
    """Swift checks a container name's length on container PUT and an object name's in
    ``check_object_creation`` (PUT); any other request for such a name is 404."""
    api, url = cluster_api, f"{cluster_api.base}/{cluster_container}"
    long_object, long_container = "n" * 1025, "n" * 257
    for method in ("GET", "HEAD", "POST", "DELETE"):
        assert api.request(method, f"{url}/{long_object}").status_code == 404, method
        assert api.request(method, f"{api.base}/{long_container}").status_code == 404, method
    assert_answer(api.put(f"{url}/{long_object}", data=b"x"), 400, "text/plain",
                  "Object name length of 1025 longer than 1024")
    assert_answer(api.put(f"{api.base}/{long_container}"), 400, HTML,
                  "Container name length of 257 longer than 256")
    assert api.put(f"{api.base}/{long_container}/o", data=b"x").status_code == 404
