"""CORS as Swift's proxy answers it (``proxy/controllers/base.py``: ``Controller.OPTIONS``
for preflights, ``cors_validation`` for actual requests, ``is_origin_allowed``; the copy
middleware adds ``COPY`` to a successful object preflight). Checked against Swift 2.38 on
this machine: the header sets below are what it sent (its expose list is unordered)."""

from __future__ import annotations

import tomllib
import uuid

import falcon.testing
import pytest
import requests

from soko.common import services
from soko.common.config import dump_toml
from soko.common.db import make_engine
from soko.identity.service import db_url
from soko.identity.tempauth import TempAuth
from soko.identity.tokens import FernetTokenValidator
from soko.object.proxy.app import make_app

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

ORIGIN = "http://a.example"
CORS_META = {"X-Container-Meta-Access-Control-Allow-Origin": f"{ORIGIN} http://b.example",
             "X-Container-Meta-Access-Control-Max-Age": "600",
             "X-Container-Meta-Access-Control-Expose-Headers": "X-Foo  x-bar"}
ALWAYS_EXPOSED = {"cache-control", "content-language", "content-type", "expires",
                  "last-modified", "pragma", "etag", "x-timestamp", "x-trans-id",
                  "x-openstack-request-id"}
METHODS = "POST, PUT, GET, OPTIONS, DELETE, HEAD"


def tokens(value: str | None) -> set[str]:
    return {v.strip() for v in (value or "").split(",") if v.strip()}


def preflight(url: str, origin: str = ORIGIN, method: str = "PUT", **headers):
    return requests.options(url, timeout=10, headers={
        "Origin": origin, "Access-Control-Request-Method": method, **headers})


@pytest.fixture
def cors_c(api) -> str:
    """A container made with CORS settings (so no proxy worker knows it without them)."""
    url = f"{api.base}/cors-{uuid.uuid4().hex[:8]}"
    assert api.put(url, headers=CORS_META).status_code == 201
    assert api.put(f"{url}/obj", data=b"secret").status_code == 201
    return url


def test_preflight_needs_no_token(api, cors_c):
    r = preflight(f"{cors_c}/obj",
                  **{"Access-Control-Request-Headers": "x-auth-token, Content-Type"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert r.headers["Access-Control-Max-Age"] == "600"
    assert r.headers["Access-Control-Allow-Methods"] == r.headers["Allow"] == METHODS + ", COPY"
    assert tokens(r.headers["Access-Control-Allow-Headers"]) == {"x-auth-token", "Content-Type"}
    assert tokens(r.headers["Vary"]) == {"Origin", "Access-Control-Request-Headers"}

    r = preflight(cors_c, method="GET")
    assert r.status_code == 200 and r.headers["Access-Control-Allow-Methods"] == METHODS
    assert "Access-Control-Allow-Headers" not in r.headers

    for refused in (preflight(f"{cors_c}/obj", origin="http://c.example"),
                    preflight(f"{cors_c}/obj", method="PATCH"),
                    preflight(f"{cors_c}/obj", method="COPY")):
        assert refused.status_code == 401 and refused.headers["Allow"] == METHODS
        assert "Access-Control-Allow-Origin" not in refused.headers

    plain = requests.options(f"{cors_c}/obj", timeout=10)
    assert plain.status_code == 200 and plain.headers["Allow"] == METHODS + ", COPY"
    account = preflight(api.base, method="GET")
    assert account.status_code == 200 and account.headers["Allow"] == "POST, GET, OPTIONS, HEAD"
    assert "Access-Control-Allow-Origin" not in account.headers

    assert api.post(cors_c, headers={
        "X-Container-Meta-Access-Control-Allow-Origin": "*"}).status_code == 204
    r = preflight(f"{cors_c}/obj", origin="http://anywhere.example")
    assert r.headers["Access-Control-Allow-Origin"] == "*" and "Vary" not in r.headers


def test_actual_requests_expose_headers_to_allowed_origins(api, cors_c):
    assert api.post(f"{cors_c}/obj", headers={"X-Object-Meta-Color": "red"}).status_code == 202
    r = api.get(f"{cors_c}/obj", headers={"Origin": ORIGIN})
    assert r.content == b"secret"
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN and r.headers["Vary"] == "Origin"
    assert tokens(r.headers["Access-Control-Expose-Headers"]) == \
        ALWAYS_EXPOSED | {"x-object-meta-color", "x-foo", "x-bar"}
    r = api.head(cors_c, headers={"Origin": ORIGIN})
    assert tokens(r.headers["Access-Control-Expose-Headers"]) >= {
        "x-container-meta-access-control-allow-origin", "x-foo"}
    for answer in (api.put(f"{cors_c}/new", data=b"x", headers={"Origin": ORIGIN}),
                   api.get(f"{cors_c}/missing", headers={"Origin": ORIGIN}),
                   requests.get(f"{cors_c}/obj", headers={"Origin": ORIGIN}, timeout=10)):
        assert answer.status_code in (201, 404, 401)
        assert answer.headers["Access-Control-Allow-Origin"] == ORIGIN, answer.status_code
    for no_cors in (api.get(f"{cors_c}/obj", headers={"Origin": "http://c.example"}),
                    api.get(api.base, headers={"Origin": ORIGIN})):
        assert "Access-Control-Allow-Origin" not in no_cors.headers


def test_proxy_wide_origins_and_lenient_mode(cluster, api, c):
    """``cors_allow_origin`` allows an origin on every container; with
    ``strict_cors_mode = false`` every origin gets the headers on actual requests. (The
    proxy app is built in-process on the same cluster: a config, not a process, differs.)"""
    raw = tomllib.loads(cluster.config_path.read_text())
    raw["proxy"].update(cors_allow_origin=["http://everywhere.example"], strict_cors_mode=False)
    path = cluster.data_dir / "cors-lenient.toml"
    path.write_text(dump_toml(raw))
    config = services.load(path, cluster.data_dir)
    engine = make_engine(db_url(config))  # disposed: no open file may keep the mount busy
    try:
        validator = FernetTokenValidator.from_config(config, engine=engine)
        app = make_app(config, validator=validator, tempauth=TempAuth(authenticator=None))
        check_lenient(falcon.testing.TestClient(app), c.split(cluster.proxy_url, 1)[1],
                      api.headers["X-Auth-Token"])
    finally:
        engine.dispose()


def check_lenient(client: falcon.testing.TestClient, route: str, token: str) -> None:
    r = client.simulate_options(f"{route}/obj", headers={
        "Origin": "http://everywhere.example", "Access-Control-Request-Method": "GET"})
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == "http://everywhere.example"
    r = client.simulate_get(f"{route}/obj", headers={
        "X-Auth-Token": token, "Origin": "http://c.example"})
    assert r.content == b"secret"
    assert r.headers["Access-Control-Allow-Origin"] == "http://c.example"
    assert client.simulate_get("/info").json["swift"]["strict_cors_mode"] is False
