"""The header sets of the Swift API's answers are Swift's: the same names (title-cased, as
swob's ``HeaderKeyDict`` writes them), none Swift doesn't send, ``Content-Length: 0`` and
swob's default content type on a 204, swob's page as the body of an object POST's 202.
Each set below is what Swift 2.38 answered to the same request (``X-Trans-Id``,
``X-Openstack-Request-Id`` and ``Date`` are on every answer of both)."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.object.proxy.raw_http import raw

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

ALWAYS = {"X-Trans-Id", "X-Openstack-Request-Id", "Date", "Content-Type", "Content-Length"}
CONTAINER = {"X-Container-Object-Count", "X-Container-Bytes-Used", "X-Timestamp",
             "Last-Modified", "Accept-Ranges", "X-Storage-Policy", "Vary"}
OBJECT = {"Etag", "Last-Modified", "X-Timestamp", "Accept-Ranges", "X-Object-Meta-Color"}
ACCOUNT = {"X-Account-Container-Count", "X-Account-Object-Count", "X-Account-Bytes-Used",
           "X-Timestamp", "Accept-Ranges", "Vary", "X-Account-Storage-Policy-{}-Container-Count",
           "X-Account-Storage-Policy-{}-Object-Count", "X-Account-Storage-Policy-{}-Bytes-Used"}
SWOB = "text/html; charset=UTF-8"


def test_answers_carry_swifts_header_sets(cluster, cluster_api, cluster_container):
    port, token = cluster.proxy_port, ("X-Auth-Token", cluster_api.headers["X-Auth-Token"])
    account = urlsplit(cluster_api.base).path.encode()
    c = account + b"/" + cluster_container.encode()

    def names(method, path, headers=(), body=None, status=None):
        answer = raw(port, method, path, [token, *headers], body)
        assert status is None or answer.status == status, (method, path, answer.body)
        return {k for k, _ in answer.headers}, answer

    assert names("POST", c, [("X-Container-Meta-Foo", "bar")], status=204)[0] == ALWAYS
    got, answer = names("HEAD", c, status=204)
    assert got == ALWAYS | CONTAINER | {"X-Container-Meta-Foo"}
    assert answer.header("Content-Length") == "0"
    got, answer = names("PUT", c + b"/o", [("x-object-meta-color", "red")], b"x", status=201)
    assert got == ALWAYS | {"Etag", "Last-Modified"} and answer.header("Content-Type") == SWOB
    for method in ("HEAD", "GET"):
        assert names(method, c + b"/o", status=200)[0] == ALWAYS | OBJECT
    got, answer = names("POST", c + b"/o", [("X-Object-Meta-Color", "blue")], status=202)
    assert got == ALWAYS and answer.body == (
        b"<html><h1>Accepted</h1><p>The request is accepted for processing.</p></html>")
    got, answer = names("DELETE", c + b"/o", status=204)
    assert got == ALWAYS and answer.header("Content-Type") == SWOB
    got, answer = names("HEAD", account, status=204)
    got = {k for k in got if not k.startswith("X-Account-Meta-")}  # other tests' metadata
    assert got == ALWAYS | {name.format("Policy-0") for name in ACCOUNT}
    assert names("POST", account, [("X-Account-Meta-Swerr", "")], status=204)[0] == ALWAYS


def test_storage_policy_of_a_container(cluster_api, cluster_container):
    """HEAD names the default policy; an unknown name on PUT is 400 even with one policy
    (``swift/proxy/controllers/container.py`` ``_convert_policy_to_index``)."""
    api = cluster_api
    assert api.head(f"{api.base}/{cluster_container}").headers["X-Storage-Policy"] == "Policy-0"
    r = api.put(f"{api.base}/{cluster_container}-p", headers={"X-Storage-Policy": "nope"})
    assert (r.status_code, r.text) == (400, "Invalid X-Storage-Policy 'nope'")
    assert api.head(f"{api.base}/{cluster_container}-p").status_code == 404
    r = api.put(f"{api.base}/{cluster_container}-p", headers={"X-Storage-Policy": "policy-0"})
    assert r.status_code == 201


def test_tempauth_answers_headers_alone(cluster):
    """Swift's tempauth ``handle_get_token``: the token and storage URL in headers, no body."""
    answer = raw(cluster.proxy_port, "GET", b"/auth/v1.0",
                 [("X-Auth-User", "test:tester"), ("X-Auth-Key", "testing123")])
    assert {k for k, _ in answer.headers} == ALWAYS | {
        "X-Auth-Token", "X-Storage-Token", "X-Auth-Token-Expires", "X-Storage-Url"}
    assert (answer.status, answer.header("Content-Type"), answer.body) == (200, SWOB, b"")
