from __future__ import annotations

import json
import logging

import falcon.testing
import pytest

from soko.common.app import TRANS_ID_PATTERN, make_base_app
from soko.common.errors import Conflict


class Broken:
    def on_get(self, req, resp):
        raise RuntimeError("secret-internal-detail")


class Busy:
    def on_delete(self, req, resp):
        raise Conflict("volume is in-use: detach it first")


@pytest.fixture
def client():
    app = make_base_app()
    app.add_route("/broken", Broken())
    app.add_route("/busy", Busy())
    return falcon.testing.TestClient(app)


def test_healthcheck(client):
    resp = client.simulate_get("/healthcheck")
    assert resp.status_code == 200 and resp.text == "OK"


def test_unknown_route_is_json_404_with_trans_id(client):
    resp = client.simulate_get("/no/such/thing")
    assert resp.status_code == 404
    assert TRANS_ID_PATTERN.match(resp.headers["X-Trans-Id"])
    body = resp.json["error"]
    assert body["code"] == 404 and body["trans_id"] == resp.headers["X-Trans-Id"]
    assert "/no/such/thing" in body["message"]


def test_handler_exception_is_json_500_without_traceback(client, caplog):
    with caplog.at_level(logging.ERROR, logger="soko.error"):
        resp = client.simulate_get("/broken")
    assert resp.status_code == 500
    assert "secret-internal-detail" not in resp.text and "Traceback" not in resp.text
    trans_id = resp.headers["X-Trans-Id"]
    assert trans_id in resp.json["error"]["message"]
    # ...but the operator's log has the traceback, tagged with the same transaction id.
    assert "secret-internal-detail" in caplog.text


def test_domain_error_maps_to_status_and_message(client):
    resp = client.simulate_delete("/busy")
    assert resp.status_code == 409
    assert resp.json["error"]["message"] == "volume is in-use: detach it first"


def test_caller_trans_id_is_propagated_only_when_well_formed(client):
    good = "tx0123456789abcdef01234-0000000001"
    resp = client.simulate_get("/healthcheck", headers={"X-Trans-Id": good})
    assert resp.headers["X-Trans-Id"] == good
    resp = client.simulate_get("/healthcheck", headers={"X-Trans-Id": "<script>"})
    assert resp.headers["X-Trans-Id"] != "<script>"
    assert TRANS_ID_PATTERN.match(resp.headers["X-Trans-Id"])


def test_wrong_method_is_json_405(client):
    resp = client.simulate_post("/healthcheck")
    assert resp.status_code == 405
    assert json.loads(resp.text)["error"]["code"] == 405
