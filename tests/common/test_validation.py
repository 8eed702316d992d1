"""The shared input checks: JSON bodies bounded in size and depth on every app built by the
factory, whole numbers in the database's range, ids shaped as ids, text without NUL."""

from __future__ import annotations

import falcon.testing
import pytest

from soko.common.app import make_base_app
from soko.common.errors import BadRequest
from soko.common.validation import (
    DB_INT_MAX,
    MAX_JSON_BYTES,
    MAX_JSON_DEPTH,
    check_id,
    check_text,
    check_whole,
)


class Echo:
    def on_post(self, req, resp):
        resp.media = {"got": req.get_media()}


@pytest.fixture
def client():
    app = make_base_app()
    app.add_route("/echo", Echo())
    return falcon.testing.TestClient(app)


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_json_within_the_bounds_is_read(client):
    body = nested(MAX_JSON_DEPTH)
    assert client.simulate_post("/echo", body=body).status_code == 200
    assert client.simulate_post("/echo", json={"a": [1, 2.5, "x"]}).json == {
        "got": {"a": [1, 2.5, "x"]}}


@pytest.mark.parametrize("body", [
    nested(1000), nested(MAX_JSON_DEPTH + 1), '{"a":' * 5000 + "1" + "}" * 5000,
    "[" * 100000,
])
def test_deep_json_is_a_400_not_a_recursion_error(client, body):
    resp = client.simulate_post("/echo", body=body, headers={"Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert resp.json["error"]["trans_id"] and "Traceback" not in resp.text


@pytest.mark.parametrize("body", ["NaN", "[Infinity]", '{"x": -Infinity}', "1e400",
                                  "{not json", b"\xff\xfe", "1" * 5000])
def test_non_json_and_non_finite_numbers_are_400(client, body):
    assert client.simulate_post("/echo", body=body).status_code == 400


def test_oversized_json_is_413(client):
    body = '["' + "x" * MAX_JSON_BYTES + '"]'
    assert client.simulate_post("/echo", body=body).status_code == 413


@pytest.mark.parametrize("content_type", ["application/x-www-form-urlencoded",
                                          "multipart/form-data; boundary=x", "text/plain"])
def test_bodies_other_than_json_are_415(client, content_type):
    resp = client.simulate_post("/echo", body="a=b", headers={"Content-Type": content_type})
    assert resp.status_code == 415


def test_whole_numbers_stay_in_the_database_range():
    assert check_whole(DB_INT_MAX, "n") == DB_INT_MAX and check_whole("12", "n") == 12
    for bad in (DB_INT_MAX + 1, 2**63, 2**70, -1, True, 1.5, "1e3", "9" * 40, None, [1]):
        with pytest.raises(BadRequest):
            check_whole(bad, "n")


def test_ids_are_uuids():
    assert check_id("5b7e0c3a-1f2e-4d5c-8b9a-0123456789ab", "id")
    for bad in ("../../v2/images", "..", "", "x" * 36, None, 7, "5b7e0c3a-1f2e-4d5c-8b9a-0123456789a/"):
        with pytest.raises(BadRequest):
            check_id(bad, "id")


def test_text_without_nul():
    assert check_text("a b", "name", 10) == "a b" and check_text(None, "name", 10) is None
    for bad in ("a\x00b", "x" * 11, 5):
        with pytest.raises(BadRequest):
            check_text(bad, "name", 10)
