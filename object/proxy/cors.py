"""CORS on the Swift API, as Swift's proxy does it (``proxy/controllers/base.py``).

A container allows origins with ``X-Container-Meta-Access-Control-Allow-Origin`` (space
separated, ``*`` for any), besides the proxy's ``cors_allow_origin``:

- a preflight (``OPTIONS`` with ``Origin``, no token needed) to a container or object is
  200 with ``Access-Control-Allow-*`` headers if the origin and the requested method are
  allowed, else 401; to an account it is a plain 200, as are ``OPTIONS`` without ``Origin``;
- an actual request with ``Origin`` to a container or object gets
  ``Access-Control-Allow-Origin`` and ``-Expose-Headers`` on its answer (errors included);
  with ``strict_cors_mode`` (the default) only if its origin is allowed.
"""

from __future__ import annotations

import dataclasses

import falcon

from soko.common.errors import SokoError, Unauthorized

# Swift's proxy lists them in this order (its ``allowed_methods`` set); soko has no
# account PUT or DELETE (Swift's allow_account_management off). Objects add COPY.
CONTAINER_METHODS = ("POST", "PUT", "GET", "OPTIONS", "DELETE", "HEAD")
ACCOUNT_METHODS = ("POST", "GET", "OPTIONS", "HEAD")
ACTUAL_METHODS = frozenset({"GET", "HEAD", "PUT", "POST", "DELETE"})
# CORS's simple response headers, and what Swift adds to them.
ALWAYS_EXPOSED = ("cache-control", "content-language", "content-type", "expires",
                  "last-modified", "pragma", "etag", "x-timestamp", "x-trans-id",
                  "x-openstack-request-id")


@dataclasses.dataclass(frozen=True)
class CorsRules:
    allow_origin: tuple[str, ...] = ()
    expose_headers: tuple[str, ...] = ()
    strict: bool = True

    @classmethod
    def from_section(cls, section) -> CorsRules:
        return cls(tuple(section.cors_allow_origin), tuple(section.cors_expose_headers),
                   section.strict_cors_mode)

    def origin_allowed(self, cors: dict, origin: str) -> bool:
        allowed = {*(cors.get("allow-origin") or "").split(), *self.allow_origin}
        return origin in allowed or "*" in allowed


def container_cors(state, req: falcon.Request, account: str, container: str, *,
                   use_cache: bool) -> dict:
    """The container's CORS metadata (empty when it does not exist).

    A preflight reads it afresh; an actual request takes what its own authorization just
    read into this worker's cache (afresh, unless the caller is the owner, whose answers
    may then lag a change made through another worker by ``container_info_ttl``).
    """
    info = state.container_info(req.context.trans_id, account, container,
                                use_cache=use_cache)
    return info["cors"] if info else {}


def add_vary(resp: falcon.Response, value: str) -> None:
    vary = resp.get_header("Vary")
    resp.set_header("Vary", f"{vary}, {value}" if vary else value)


def allow_origin(resp: falcon.Response, cors: dict, origin: str) -> None:
    if (cors.get("allow-origin") or "").strip() == "*":
        resp.set_header("Access-Control-Allow-Origin", "*")
    else:
        resp.set_header("Access-Control-Allow-Origin", origin)
        add_vary(resp, "Origin")


def preflight(state, req: falcon.Request, resp: falcon.Response, account: str,
              container: str | None = None, obj: bool = False) -> None:
    """``OPTIONS``: what may be asked of this resource, and from which origins."""
    methods = CONTAINER_METHODS if container is not None else ACCOUNT_METHODS
    allow = ", ".join(methods)
    resp.status = falcon.HTTP_200
    resp.content_type = "text/html; charset=UTF-8"  # Swift's, for its empty answer
    resp.set_header("Allow", allow)
    origin = req.get_header("Origin")
    if not origin or container is None:
        if obj:
            resp.set_header("Allow", allow + ", COPY")
        return
    cors = container_cors(state, req, account, container, use_cache=False)
    if not state.cors.origin_allowed(cors, origin) or \
            req.get_header("Access-Control-Request-Method") not in methods:
        raise Unauthorized("This server could not verify that you are authorized to access "
                           "the document you requested.", headers={"Allow": allow})
    if obj:  # Swift's copy middleware adds COPY to a successful answer
        allow += ", COPY"
        resp.set_header("Allow", allow)
    allow_origin(resp, cors, origin)
    if cors.get("max-age") is not None:
        resp.set_header("Access-Control-Max-Age", cors["max-age"])
    resp.set_header("Access-Control-Allow-Methods", allow)
    asked = [h.strip() for h in (req.get_header("Access-Control-Request-Headers") or "")
             .split(",") if h.strip()]
    if asked:
        resp.set_header("Access-Control-Allow-Headers", ", ".join(dict.fromkeys(asked)))
        add_vary(resp, "Access-Control-Request-Headers")


class CorsHeaders:
    """Adds the CORS headers to actual requests' answers (errors too, as Swift does).

    Placed before the auth middleware, so a request refused for its token still learns
    which container it was for.
    """

    def __init__(self, state):
        self.state = state

    def process_resource(self, req, resp, resource, params) -> None:
        if "container" in params and req.method in ACTUAL_METHODS and req.get_header("Origin"):
            req.context.cors_target = (params["account"], params["container"])

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        target = getattr(req.context, "cors_target", None)
        if target is None or resp.get_header("Access-Control-Allow-Origin"):
            return
        origin = req.get_header("Origin")
        try:
            cors = container_cors(self.state, req, *target, use_cache=True)
        except SokoError:  # the answer stands, without CORS headers
            return
        rules = self.state.cors
        if rules.strict and not rules.origin_allowed(cors, origin):
            return
        exposed = {*ALWAYS_EXPOSED, *(h.lower() for h in rules.expose_headers),
                   *(h for h in resp.headers if h.startswith(("x-container-meta",
                                                              "x-object-meta")))}
        exposed.update(h.lower() for h in (cors.get("expose-headers") or "").split())
        resp.set_header("Access-Control-Expose-Headers", ", ".join(sorted(exposed)))
        allow_origin(resp, cors, origin)
