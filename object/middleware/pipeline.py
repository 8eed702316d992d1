"""Builds the proxy's middleware pipeline from ``[proxy] pipeline``, with ``Front`` at its head.

A middleware is a class ``Name(app, section)`` (a WSGI app wrapping ``app``) with an optional
``swift_info(section)`` classmethod: what ``GET /info`` advertises under its name. Listed
here by name; the config lists names in Swift's order (a request meets the first one first).
"""

from __future__ import annotations

import logging

from soko.common.app import REQUEST_ID_HEADER, TRANS_ID_HEADER, TRANS_ID_PATTERN, new_trans_id
from soko.common.auth import AUTH_ENVIRON_KEY, TokenValidator
from soko.common.config import ConfigError
from soko.common.errors import SokoError
from soko.common.service import import_ref
from soko.object.shared.internal import OBJECT_SYSMETA_PREFIX

log = logging.getLogger(__name__)

MIDDLEWARES = {
    "tempurl": "soko.object.middleware.tempurl:TempURL",
    "formpost": "soko.object.middleware.formpost:FormPost",
    "slo": "soko.object.middleware.slo:StaticLargeObjects",
    "dlo": "soko.object.middleware.dlo:DynamicLargeObjects",
}
TRANS_ID_KEY = "HTTP_" + TRANS_ID_HEADER.upper().replace("-", "_")
# Request headers only the pipeline may set, and answer headers only it may see.
HIDDEN_PREFIXES = ("x-backend-", OBJECT_SYSMETA_PREFIX.lower())
HIDDEN_ENVIRON_PREFIXES = tuple("HTTP_" + p.upper().replace("-", "_") for p in HIDDEN_PREFIXES)


def check_names(names: list[str]) -> None:
    unknown = [name for name in names if name not in MIDDLEWARES]
    if unknown:
        raise ConfigError(f"[proxy] pipeline: unknown middleware {unknown[0]!r} "
                         f"(known: {', '.join(MIDDLEWARES)})")


def swift_info(names: list[str], section) -> dict[str, dict]:
    """What ``/info`` advertises for the pipeline's middlewares."""
    check_names(names)
    info = {}
    for name in names:
        cls = import_ref(MIDDLEWARES[name])
        if hasattr(cls, "swift_info"):
            info[name] = cls.swift_info(section)
    return info


def build(core, names: list[str], section, validator: TokenValidator):
    """``Front`` → the named middlewares in order → ``core``."""
    check_names(names)
    app = core
    for name in reversed(names):
        app = import_ref(MIDDLEWARES[name])(app, section)
    return Front(app, core, validator)


def came_with_body(environ: dict) -> bool:
    """Whether the request has a body: an error answer to it closes the connection (the body
    may be unread, and gigabytes; ``proxy/app.py``'s ``CloseAfterRefusedBody`` says why)."""
    return environ.get("CONTENT_LENGTH") not in (None, "", "0") or "chunked" in environ.get(
        "HTTP_TRANSFER_ENCODING", "").lower()


def swift_error(start_response, error: SokoError, trans_id: str | None = None):
    """An error a middleware raises, answered as Swift answers it: the message as text."""
    body = error.message.encode()
    headers = [("Content-Type", "text/plain; charset=UTF-8"),
               ("Content-Length", str(len(body))), *error.headers.items()]
    if trans_id:
        headers.append((TRANS_ID_HEADER, trans_id))
    start_response(f"{error.status} {error.title}", headers)
    return [body]


class Front:
    """The pipeline's gatekeeper: what holds for every request before any middleware.

    - The transaction id is settled here, so sub-requests log under the caller's, and every
      answer carries it (``X-Trans-Id``, ``X-Openstack-Request-Id``) as Swift's do.
    - The token is validated once (``AUTH_ENVIRON_KEY``): middlewares' sub-requests act as
      the caller. A token that does not validate goes straight to the core, which answers
      401, so no middleware works for a caller it cannot name. A caller the S3 layer in front
      already authenticated (by its signature) is kept as it is.
    - System metadata and backend headers are dropped from requests and answers.
    - An error answer to a request with a body closes the connection, whichever middleware
      gave it (``came_with_body``).
    - A ``SokoError`` a middleware raises before answering is answered as Swift would.
    """

    def __init__(self, app, core, validator: TokenValidator):
        self.app, self.core, self.validator = app, core, validator

    def __call__(self, environ, start_response):
        for key in [k for k in environ if k.startswith(HIDDEN_ENVIRON_PREFIXES)]:
            del environ[key]
        if not TRANS_ID_PATTERN.match(environ.get(TRANS_ID_KEY, "")):
            environ[TRANS_ID_KEY] = new_trans_id()
        trans_id = environ[TRANS_ID_KEY]
        close_on_error = came_with_body(environ)  # before a middleware changes the environ
        token = environ.get("HTTP_X_AUTH_TOKEN")
        # A caller already named in the environ was authenticated in-process by the layer in
        # front (the S3 API, object/s3); a client cannot set an environ key.
        if token and environ.get(AUTH_ENVIRON_KEY) is None:
            try:
                environ[AUTH_ENVIRON_KEY] = self.validator.validate(token)
            except SokoError:
                return self.core(environ, start_response)

        def filtered_start_response(status, headers, exc_info=None):
            kept = [(k, v) for k, v in headers if not k.lower().startswith(HIDDEN_PREFIXES)]
            for name in (TRANS_ID_HEADER, REQUEST_ID_HEADER):  # a middleware's answer too
                if not any(k.lower() == name.lower() for k, _ in kept):
                    kept.append((name, trans_id))
            if close_on_error and status[:1] in "45" and not any(
                    k.lower() == "connection" for k, _ in kept):
                kept.append(("Connection", "close"))
            return start_response(status, kept, exc_info)

        try:
            return self.app(environ, filtered_start_response)
        except SokoError as error:
            return swift_error(filtered_start_response, error)
