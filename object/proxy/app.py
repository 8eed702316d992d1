"""The Swift API proxy: ``/v1/<account>[/<container>[/<object>]]``, ``/info``, tempauth.

It holds no state but the rings: every request becomes requests to the replicas the rings
name (``replicas.Replicas``). Controllers are split by what they serve
(``controllers/account``, ``controllers/container``, ``controllers/obj``); this module builds
the app and ``controllers/base`` holds what they share.
"""

from __future__ import annotations

import json

import falcon

from soko.common.app import make_base_app
from soko.common.auth import AuthMiddleware, TokenValidator
from soko.common.config import Config
from soko.object.proxy.constraints import SWIFT_INFO, check_utf8
from soko.object.proxy.controllers.account import AccountController
from soko.object.proxy.controllers.base import ProxyState
from soko.object.proxy.controllers.container import ContainerController
from soko.object.proxy.controllers.obj import ObjectController
from soko.object.shared.nodeclient import ConnectionPool
from soko.object.shared.rings import load_rings


class Info:
    """``GET /info``: capabilities and constraints, as Swift clients read them."""

    public = True

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"swift": {"version": "soko", **SWIFT_INFO},
                                "tempauth": {"account_acls": False}})


class PathCheck:
    """Refuses a ``/v1`` path that is not valid UTF-8 or holds NUL (412), before routing."""

    def process_request(self, req, resp):
        if req.env.get("PATH_INFO", "").startswith(("/v1/", "/v1.0/")):
            check_utf8(req.env["PATH_INFO"])


class CloseAfterRefusedBody:
    """An error answer to a request that came with a body closes the connection.

    The body was most likely not read (413 too large, 411, 401...), and the client may still
    be sending it: reading it all to keep the connection could mean gigabytes, and reusing
    the connection without reading it would parse body bytes as the next request.
    """

    def process_response(self, req, resp, resource, req_succeeded):
        has_body = req.get_header("Content-Length") not in (None, "0") or "chunked" in (
            req.get_header("Transfer-Encoding") or "").lower()
        if has_body and int(resp.status_code) >= 400:
            resp.set_header("Connection", "close")


def make_app(config: Config, *, validator: TokenValidator | None = None, tempauth=None,
             rings: dict | None = None, pool: ConnectionPool | None = None):
    """The proxy's WSGI app: the S3 layer (``object/s3``) in front of the Swift API app."""
    from soko.object.s3.layer import S3Layer

    section = config.section("proxy")
    swift = make_swift_app(config, validator=validator, tempauth=tempauth, rings=rings,
                           pool=pool)
    return S3Layer(swift, config, domain=section.s3_domain, region=section.s3_region)


def make_swift_app(config: Config, *, validator: TokenValidator | None = None, tempauth=None,
                   rings: dict | None = None, pool: ConnectionPool | None = None) -> falcon.App:
    """The Swift API app; tests inject a validator, tempauth resource, rings or pool."""
    section = config.section("proxy")
    if validator is None:
        from soko.identity.tokens import FernetTokenValidator

        validator = FernetTokenValidator.from_config(config)
    if tempauth is None:
        from soko.identity.tempauth import TempAuth

        tempauth = TempAuth.from_config(config, storage_url_base=section.public_url or None)
    state = ProxyState(rings or load_rings(config),
                       pool or ConnectionPool(section.conn_timeout, section.node_timeout,
                                              section.error_limit, section.error_interval),
                       section.container_info_ttl)
    app = make_base_app(middleware=[CloseAfterRefusedBody(), PathCheck(),
                                          AuthMiddleware(validator)])
    app.add_route("/info", Info())
    app.add_route("/auth/v1.0", tempauth)
    accounts, containers = AccountController(state), ContainerController(state)
    objects = ObjectController(state)
    for version in SWIFT_INFO["valid_api_versions"]:
        app.add_route(f"/{version}/{{account}}", accounts)
        app.add_route(f"/{version}/{{account}}/", accounts)
        app.add_route(f"/{version}/{{account}}/{{container}}", containers)
        app.add_route(f"/{version}/{{account}}/{{container}}/", containers)
        app.add_route(f"/{version}/{{account}}/{{container}}/{{obj:path}}", objects)
    return app
