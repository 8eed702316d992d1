"""The falcon app factory every soko service builds on.

It gives each service the same edges: a transaction id on every response (taken from the
caller when a soko service calls another, so one request can be followed end to end), an
access log, errors that never carry a traceback (JSON, or the format the app names), domain
errors mapped to HTTP once,
JSON request bodies bounded in size and depth (``common/validation.py``), and
``/healthcheck``. A service adds its routes and its auth middleware on top.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Iterable
from typing import Protocol

import falcon
from falcon.stream import BoundedStream

from soko.common.errors import SokoError
from soko.common.log import current_trans_id, info_line
from soko.common.validation import json_only_handlers

access_log = logging.getLogger("soko.access")
error_log = logging.getLogger("soko.error")

TRANS_ID_HEADER = "X-Trans-Id"
# The same id again: OpenStack clients (keystoneauth, cinderclient) log this one.
REQUEST_ID_HEADER = "X-Openstack-Request-Id"
# Set by soko's gunicorn worker (common/worker.py) to the SokoError of a request it refused
# before the app could run (malformed head, head timeout): the app answers it like its own.
REFUSAL_ENVIRON_KEY = "soko.refusal"
# A caller's id is reused only if it looks like one of ours: never echo arbitrary bytes.
TRANS_ID_PATTERN = re.compile(r"^tx[0-9a-f]{21}-[0-9a-f]{10}$")
# Set in the environ by a layer in front of the app that writes the request's access line
# itself (the Swift API's middleware pipeline, ``object/middleware/access_line.py``): the app
# then logs only the sub-requests in-process layers make of it, each marked by its source
# (``SOURCE_KEY``, Swift's name for it: ``SLO``, ``VW``...), as Swift's proxy logs them.
ACCESS_LOGGED_KEY = "soko.access_logged"
SOURCE_KEY = "swift.source"


def new_trans_id() -> str:
    """Swift's shape: ``tx`` + 21 hex chars + ``-`` + the hex time, so ids sort by time."""
    return f"tx{uuid.uuid4().hex[:21]}-{int(time.time()):010x}"


class RequestContext:
    """Assigns the transaction id, times the request and writes the access log line."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        incoming = req.get_header(TRANS_ID_HEADER)
        trans_id = incoming if incoming and TRANS_ID_PATTERN.match(incoming) else new_trans_id()
        req.context.trans_id = trans_id
        req.context.started = time.monotonic()
        req.context.trans_token = current_trans_id.set(trans_id)
        resp.set_header(TRANS_ID_HEADER, trans_id)
        resp.set_header(REQUEST_ID_HEADER, trans_id)
        refusal = req.env.get(REFUSAL_ENVIRON_KEY)
        if refusal is not None:
            raise refusal

    def process_response(self, req, resp, resource, req_succeeded: bool) -> None:
        started = getattr(req.context, "started", None)
        if started is None:
            return
        trans_id = req.context.trans_id
        resp.set_header(TRANS_ID_HEADER, trans_id)
        resp.set_header(REQUEST_ID_HEADER, trans_id)
        source = req.env.get(SOURCE_KEY)
        if source is not None or not req.env.get(ACCESS_LOGGED_KEY):
            log_access(req.remote_addr, trans_id, req.method, req.relative_uri,
                       resp.status[:3] if isinstance(resp.status, str) else resp.status,
                       time.monotonic() - started, source=source)
        current_trans_id.reset(req.context.trans_token)


def log_access(remote_addr: str | None, trans_id: str, method: str, uri: str, status,
               duration: float, *, transferred: tuple[int, int] | None = None,
               source: str | None = None) -> None:
    """One access-log line: ``addr trans "METHOD uri" status seconds [received sent]
    [(source)]``: the body bytes received from the client and sent to it (in that order, as
    Swift's ``bytes_recvd bytes_sent``) where the layer writing it counted them, the source
    for a sub-request."""
    info_line(access_log, f'{remote_addr} {trans_id} "{method} {uri}" {status} {duration:.4f}'
                          f'{"" if transferred is None else " {} {}".format(*transferred)}'
                          f'{"" if source is None else f" ({source})"}')


def error_body(status: int, title: str, message: str, trans_id: str | None) -> str:
    return json.dumps(
        {"error": {"code": status, "title": title, "message": message, "trans_id": trans_id}}
    )


class ErrorFormat(Protocol):
    """How an app words its errors: one format per app, every error goes through it."""

    def render(self, req: falcon.Request, resp: falcon.Response, error: SokoError) -> None:
        """Sets the body (and may adjust the status line and headers) for ``error``."""


class JsonErrors:
    """soko's own APIs: ``{"error": {code, title, message, trans_id}}``."""

    def render(self, req: falcon.Request, resp: falcon.Response, error: SokoError) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = error_body(error.status, error.title, error.message,
                               getattr(req.context, "trans_id", None))


JSON_ERRORS = JsonErrors()


class ErrorHandlers:
    """Every error an app can meet — soko's, falcon's own (unknown route, bad method...),
    a bug — answered in the app's ``ErrorFormat``, never with a traceback."""

    def __init__(self, errors: ErrorFormat):
        self.errors = errors

    def soko_error(self, req, resp, exc: SokoError, params) -> None:
        resp.status = exc.status
        for name, value in exc.headers.items():
            resp.set_header(name, value)
        self.errors.render(req, resp, exc)

    def http_error(self, req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError):
        """falcon has set the status and the error's headers already."""
        reason = exc.status[4:] if isinstance(exc.status, str) else str(exc.status)
        title = reason if exc.title in (exc.status, None) else exc.title
        error = SokoError(exc.description or f"{title}: {req.method} {req.path}")
        error.status, error.title = exc.status_code, title
        error.worded = exc.description is not None
        self.errors.render(req, resp, error)

    def unexpected(self, req, resp, exc: Exception, params) -> None:
        """A bug: log it with its traceback, tell the client only the transaction id."""
        trans_id = getattr(req.context, "trans_id", None)
        error_log.exception("unhandled error in %s %s", req.method, req.path)
        self.soko_error(req, resp, SokoError(
            f"The server failed to handle this request; quote transaction {trans_id} to the "
            "operator."), params)


class Healthcheck:
    """``GET /healthcheck``: 200 ``OK`` while the process serves requests (as Swift's)."""

    public = True  # auth middlewares let resources marked public through

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_TEXT
        resp.text = "OK"

    on_head = on_get


class Request(falcon.Request):
    """falcon's request, except that a chunked body is read to its end: falcon takes a body
    without ``Content-Length`` for an empty one, so a client that streamed its JSON (or an
    image) was answered as if it had sent nothing. The server (gunicorn) decodes the chunks
    and ends the stream; the readers bound what they take (``MAX_JSON_BYTES``)."""

    def _get_wrapped_wsgi_input(self) -> BoundedStream:
        if self.content_length is None and "chunked" in self.env.get(
                "HTTP_TRANSFER_ENCODING", "").lower():
            return BoundedStream(self.env["wsgi.input"], sys.maxsize)
        return super()._get_wrapped_wsgi_input()


def make_base_app(middleware: Iterable[object] = (),
                  errors: ErrorFormat = JSON_ERRORS) -> falcon.App:
    """A falcon app with soko's shared edges; the service adds routes and its middleware."""
    handlers = ErrorHandlers(errors)
    app = falcon.App(middleware=[RequestContext(), *middleware], request_type=Request)
    app.req_options.auto_parse_qs_csv = False
    app.req_options.strip_url_path_trailing_slash = False
    app.req_options.media_handlers = json_only_handlers()  # bounded size and depth
    app.set_error_serializer(handlers.http_error)
    app.add_error_handler(Exception, handlers.unexpected)
    app.add_error_handler(SokoError, handlers.soko_error)
    app.add_route("/healthcheck", Healthcheck())
    return app
