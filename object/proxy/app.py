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
from soko.common.errors import BadRequest, NotFound, PreconditionFailed
from soko.object.middleware import pipeline
from soko.object.proxy.access import Access, AccessRules
from soko.object.proxy.constraints import SWIFT_INFO, check_utf8
from soko.object.proxy.controllers.account import AccountController
from soko.object.proxy.controllers.base import ProxyState
from soko.object.proxy.controllers.container import ContainerController
from soko.object.proxy.controllers.obj import ObjectController
from soko.object.proxy.cors import CorsHeaders, CorsRules
from soko.object.proxy.swift_errors import SWIFT_ERRORS
from soko.object.shared.internal import ALLOW_RESERVED_HEADER
from soko.object.shared.nodeclient import ConnectionPool
from soko.object.shared.rings import load_rings

OWN_PATHS = ("/info", "/healthcheck")
SWOB_CONTENT_TYPE = "text/html; charset=UTF-8"  # what Swift's answers say by default


class Info:
    """``GET /info``: capabilities and constraints, as Swift clients read them (the
    pipeline's middlewares add theirs)."""

    public = True

    def __init__(self, cors: CorsRules, middlewares: dict[str, dict]):
        self.cors = cors
        self.middlewares = middlewares

    def on_get(self, req, resp):
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({
            "swift": {"version": "soko", "strict_cors_mode": self.cors.strict, **SWIFT_INFO},
            **self.middlewares, "tempauth": {"account_acls": True}})


class PathCheck:
    """Swift's answers to paths no controller serves, before routing (its proxy's
    ``handle_request`` and ``get_controller``, with ``split_path(path, 1, 4, True)``): not
    valid UTF-8 or holding NUL, 412; an empty segment before the last, 404; no account
    (``/v1``, ``/v1/``, ``/anything``), 412 ``Bad URL``; an unknown API version, 400."""

    def process_request(self, req, resp):
        path = req.env.get("PATH_INFO", "")
        check_utf8(path, allow_nul=req.get_header(ALLOW_RESERVED_HEADER) == "true")
        if path in OWN_PATHS or path.startswith("/auth/"):
            return
        segments = path.split("/", 4)[1:]
        if path[:1] != "/" or not segments[0] or not all(segments[:-1]):
            raise NotFound()
        if len(segments) < 2 or not segments[1]:
            raise PreconditionFailed("Bad URL")
        if segments[0] not in SWIFT_INFO["valid_api_versions"]:
            raise BadRequest()


class CloseAfterRefusedBody:
    """An error answer to a request that came with a body closes the connection.

    The body was most likely not read (413 too large, 411, 401...), and the client may still
    be sending it: reading it all to keep the connection could mean gigabytes, and reusing
    the connection without reading it would parse body bytes as the next request.
    """

    def process_response(self, req, resp, resource, req_succeeded):
        if pipeline.came_with_body(req.env) and int(resp.status_code) >= 400:
            resp.set_header("Connection", "close")


class SwiftHeaders:
    """Answers with the headers Swift's have: names title-cased (swob's ``HeaderKeyDict``:
    ``X-Object-Meta-Color``, ``Etag``; falcon writes lower case), and a 204 with its
    ``Content-Length: 0`` and swob's default content type (falcon leaves both out).
    Otherwise the falcon app it wraps."""

    def __init__(self, app: falcon.App):
        self.app = app

    def __call__(self, environ, start_response):
        def start(status, headers, exc_info=None):
            headers = [(k.title(), v) for k, v in headers]
            if status.startswith("204"):
                names = {k for k, _ in headers}
                headers += [(k, v) for k, v in (("Content-Type", SWOB_CONTENT_TYPE),
                                                ("Content-Length", "0")) if k not in names]
            return start_response(status, headers, exc_info)

        return self.app(environ, start)

    def __getattr__(self, name):
        return getattr(self.app, name)


def make_app(config: Config, *, validator: TokenValidator | None = None, tempauth=None,
             rings: dict | None = None, pool: ConnectionPool | None = None):
    """The proxy's WSGI app: the S3 layer (``object/s3``) in front of the Swift API app."""
    from soko.object.s3.layer import S3Layer

    section = config.section("proxy")
    swift = make_swift_app(config, validator=validator, tempauth=tempauth, rings=rings,
                           pool=pool)
    roots = {"auth", *SWIFT_INFO["valid_api_versions"], *(p.strip("/") for p in OWN_PATHS)}
    return S3Layer(swift, config, domain=section.s3_domain, region=section.s3_region,
                   swift_roots=frozenset(roots), min_part_size=section.s3_min_part_size,
                   parts_per_manifest=section.slo_max_manifest_segments)


def make_swift_app(config: Config, *, validator: TokenValidator | None = None, tempauth=None,
                   rings: dict | None = None, pool: ConnectionPool | None = None):
    """The Swift API: the middleware pipeline (``object/middleware``) in front of the core
    app; tests inject a validator, tempauth resource, rings or pool."""
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
                       section.container_info_ttl,
                       Access(AccessRules.from_section(section), validator),
                       CorsRules.from_section(section))
    app = make_base_app(middleware=[CloseAfterRefusedBody(), PathCheck(),
                                    CorsHeaders(state), AuthMiddleware(validator)],
                        errors=SWIFT_ERRORS)
    app.resp_options.default_media_type = SWOB_CONTENT_TYPE
    app.add_route("/info", Info(state.cors, pipeline.swift_info(section.pipeline, section)))
    app.add_route("/auth/v1.0", tempauth)
    accounts, containers = AccountController(state), ContainerController(state)
    objects = ObjectController(state)
    for version in SWIFT_INFO["valid_api_versions"]:
        app.add_route(f"/{version}/{{account}}", accounts)
        app.add_route(f"/{version}/{{account}}/", accounts)
        app.add_route(f"/{version}/{{account}}/{{container}}", containers)
        app.add_route(f"/{version}/{{account}}/{{container}}/", containers)
        app.add_route(f"/{version}/{{account}}/{{container}}/{{obj:path}}", objects)
    return SwiftHeaders(pipeline.build(
        app, section.pipeline, section, validator,
        lambda trans_id, account, container: state.container_info(trans_id, account, container,
                                                                 use_cache=True)))
