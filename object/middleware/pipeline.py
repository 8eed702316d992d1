"""Builds the proxy's middleware pipeline from ``[proxy] pipeline``, with ``Front`` at its head.

A middleware is a class ``Name(app, section)`` (a WSGI app wrapping ``app``) with an optional
``swift_info(section)`` classmethod: what ``GET /info`` advertises under its name (or, for one
that advertises several capabilities as Swift's bulk does, ``ADVERTISES`` names them and
``swift_info`` returns each one's). Listed here by name; the config lists names in Swift's
order (a request meets the first one first).

A middleware that must know a container's system metadata before the request goes on (e.g.
whether it is versioned) calls ``environ[CONTAINER_INFO_KEY](account, container)``: the
proxy's cached container info (None if there is no such container), as Swift's
``get_container_info``; it decides nothing about access.
"""

from __future__ import annotations

import functools
import logging

from soko.common.app import (
    ACCESS_LOGGED_KEY,
    REQUEST_ID_HEADER,
    SOURCE_KEY,
    TRANS_ID_HEADER,
    TRANS_ID_PATTERN,
    new_trans_id,
)
from soko.common.auth import AUTH_ENVIRON_KEY, TokenValidator
from soko.common.config import ConfigError
from soko.common.errors import SokoError
from soko.common.service import import_ref
from soko.object.middleware.access_line import AccessLine
from soko.object.proxy.swift_errors import swift_page
from soko.object.shared.internal import CONTAINER_SYSMETA_PREFIX, OBJECT_SYSMETA_PREFIX

log = logging.getLogger(__name__)

MIDDLEWARES = {
    "bulk": "soko.object.middleware.bulk:Bulk",
    "tempurl": "soko.object.middleware.tempurl:TempURL",
    "ratelimit": "soko.object.middleware.ratelimit:RateLimit",
    "crossdomain": "soko.object.middleware.crossdomain:CrossDomain",
    "formpost": "soko.object.middleware.formpost:FormPost",
    "staticweb": "soko.object.middleware.staticweb:StaticWeb",
    "container_quotas": "soko.object.middleware.container_quotas:ContainerQuotas",
    "account_quotas": "soko.object.middleware.account_quotas:AccountQuotas",
    "slo": "soko.object.middleware.slo:StaticLargeObjects",
    "dlo": "soko.object.middleware.dlo:DynamicLargeObjects",
    "versioned_writes": "soko.object.middleware.versioned_writes:VersionedWrites",
    "symlink": "soko.object.middleware.symlink:Symlinks",
}
TRANS_ID_KEY = "HTTP_" + TRANS_ID_HEADER.upper().replace("-", "_")
CONTAINER_INFO_KEY = "soko.container_info"
# Request headers only the pipeline may set, and answer headers only it may see.
HIDDEN_PREFIXES = ("x-backend-", OBJECT_SYSMETA_PREFIX.lower(), CONTAINER_SYSMETA_PREFIX.lower())
HIDDEN_ENVIRON_PREFIXES = tuple("HTTP_" + p.upper().replace("-", "_") for p in HIDDEN_PREFIXES)
# Set by a layer in front of the pipeline in the same process (the S3 API, object/s3) on the
# requests it builds itself from headers it chose: they may carry system metadata (S3's
# multipart ETag) and see it in answers, as Swift's s3api does from inside the pipeline.
IN_PROCESS_KEY = "soko.in_process"


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
        if hasattr(cls, "ADVERTISES"):
            info.update(cls.swift_info(section))
        elif hasattr(cls, "swift_info"):
            info[name] = cls.swift_info(section)
        if hasattr(cls, "other_swift_info"):  # a middleware with two features (versioning)
            info.update(cls.other_swift_info(section))
    return info


def build(core, names: list[str], section, validator: TokenValidator, container_info):
    """``Front`` → the named middlewares in order → ``core``; ``container_info(trans_id,
    account, container)`` is what ``CONTAINER_INFO_KEY`` asks."""
    check_names(names)
    app = core
    for name in reversed(names):
        app = import_ref(MIDDLEWARES[name])(app, section)
    return Front(app, core, validator, container_info)


def came_with_body(environ: dict) -> bool:
    """Whether the request has a body: an error answer to it closes the connection (the body
    may be unread, and gigabytes; ``proxy/app.py``'s ``CloseAfterRefusedBody`` says why)."""
    return environ.get("CONTENT_LENGTH") not in (None, "", "0") or "chunked" in environ.get(
        "HTTP_TRANSFER_ENCODING", "").lower()


def swift_error(start_response, error: SokoError, trans_id: str | None = None):
    """An error a middleware raises, answered as Swift answers it: the message as text (or
    the error's own content type), or Swift's page for the status when the error says
    nothing of its own."""
    body = (error.message if error.worded else swift_page(error.status)).encode()
    content_type = error.content_type or (
        "text/plain; charset=UTF-8" if error.worded else "text/html; charset=UTF-8")
    headers = [("Content-Type", content_type),
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
    - System metadata and backend headers are dropped from requests and answers (but for
      the requests an in-process layer built itself, ``IN_PROCESS_KEY``).
    - An error answer to a request with a body closes the connection, whichever middleware
      gave it (``came_with_body``).
    - A ``SokoError`` a middleware raises before answering is answered as Swift would.
    - A client's request gets one access-log line, whichever layer answers it
      (``access_line.py``); a request an in-process layer sends with its source (the S3
      API's) is logged by the core app as that layer's sub-request.
    """

    def __init__(self, app, core, validator: TokenValidator, container_info):
        self.app, self.core, self.validator = app, core, validator
        self.container_info = container_info

    def __call__(self, environ, start_response):
        in_process = environ.get(IN_PROCESS_KEY) is True
        for key in [k for k in environ if k.startswith(HIDDEN_ENVIRON_PREFIXES)
                    and not in_process]:
            del environ[key]
        if not TRANS_ID_PATTERN.match(environ.get(TRANS_ID_KEY, "")):
            environ[TRANS_ID_KEY] = new_trans_id()
        trans_id = environ[TRANS_ID_KEY]
        if SOURCE_KEY in environ:
            return self.answer(environ, start_response, trans_id, in_process)
        environ[ACCESS_LOGGED_KEY] = True
        line = AccessLine(environ, trans_id)
        try:
            return line.body(self.answer(environ, line.watch(start_response), trans_id,
                                         in_process))
        except BaseException:
            line.write("500")  # the server answers 500 to an app that raised
            raise

    def answer(self, environ, start_response, trans_id: str, in_process: bool):
        environ[CONTAINER_INFO_KEY] = functools.partial(self.container_info, trans_id)
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
            kept = [(k, v) for k, v in headers
                    if in_process or not k.lower().startswith(HIDDEN_PREFIXES)]
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
