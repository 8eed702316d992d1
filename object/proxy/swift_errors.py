"""Errors on the Swift API as Swift words them: scripts and SDKs match on these bodies.

Swift answers an error either with a short text (``Non-integer X-Delete-After``,
``Invalid UTF8 or contains NULL``; ``text/plain`` for its constraint checks, else
``text/html; charset=UTF-8``) or, where its code gives none, with a fixed page per status,
``<html><h1>Not Found</h1><p>The resource could not be found.</p></html>`` (swob's
``RESPONSE_REASONS``, whose reason phrases are also its status lines: ``500 Internal Error``).
So a soko error raised on the proxy carries a message only where Swift has that text. 401,
403, 404, 408 and 5xx always get the fixed page: Swift words none of them on the paths soko
serves, and code shared with soko's own APIs (auth, the HTTP layer's timeouts) words them
for those (the words go to the log).
A 401 says which realm to authenticate to, as Swift's tempauth sets it.
"""

from __future__ import annotations

import logging
from urllib.parse import quote

import falcon

from soko.common.errors import SokoError

log = logging.getLogger(__name__)

HTML = "text/html; charset=UTF-8"
REASONS = {  # swift/common/swob.py RESPONSE_REASONS
    202: ("Accepted", "The request is accepted for processing."),
    400: ("Bad Request", "The server could not comply with the request since it is either "
          "malformed or otherwise incorrect."),
    401: ("Unauthorized", "This server could not verify that you are authorized to access the "
          "document you requested."),
    403: ("Forbidden", "Access was denied to this resource."),
    404: ("Not Found", "The resource could not be found."),
    405: ("Method Not Allowed", "The method is not allowed for this resource."),
    406: ("Not Acceptable", "The resource is not available in a format acceptable to your "
          "browser."),
    408: ("Request Timeout", "The server has waited too long for the request to be sent by "
          "the client."),
    409: ("Conflict", "There was a conflict when trying to complete your request."),
    411: ("Length Required", "Content-Length header required."),
    412: ("Precondition Failed", "A precondition for this request was not met."),
    413: ("Request Entity Too Large", "The body of your request was too large for this "
          "server."),
    414: ("Request URI Too Long", "The request URI was too long for this server."),
    416: ("Requested Range Not Satisfiable", "The Range requested is not available."),
    417: ("Expectation Failed", "Expectation failed."),
    422: ("Unprocessable Entity", "Unable to process the contained instructions"),
    499: ("Client Disconnect", "The client was disconnected during request."),
    500: ("Internal Error", "The server has either erred or is incapable of performing the "
          "requested operation."),
    501: ("Not Implemented", "The requested method is not implemented by this server."),
    503: ("Service Unavailable", "The server is currently unavailable. Please try again at a "
          "later time."),
    507: ("Insufficient Storage", "There was not enough space to save the resource."),
}
FIXED_PAGE = frozenset({401, 403, 404, 408})


def swift_page(status: int) -> str:
    title, explanation = REASONS.get(status, ("Error", ""))
    return f"<html><h1>{title}</h1><p>{explanation}</p></html>"


def realm(req: falcon.Request) -> str:
    """The account for ``/v1/<account>...``; for tempauth the project of ``X-Auth-User``
    (swob's ``www_authenticate``, tempauth's ``handle_get_token``); else ``unknown``."""
    if req.path.startswith("/auth/"):
        user = req.get_header("X-Auth-User") or req.get_header("X-Storage-User") or ""
        project, colon, _ = user.partition(":")
        return project if colon and project else "unknown"
    parts = req.path.split("/")
    if len(parts) < 3 or not parts[2] or parts[2] in ("v1.0", "auth"):
        return "unknown"
    return parts[2]


class SwiftErrors:
    """The proxy's ``ErrorFormat`` (``common/app.py``)."""

    def render(self, req: falcon.Request, resp: falcon.Response, error: SokoError) -> None:
        status = error.status
        if status in REASONS:
            resp.status = f"{status} {REASONS[status][0]}"
        if error.worded and status not in FIXED_PAGE and status < 500:
            resp.content_type = error.content_type or HTML
            resp.text = error.message
        else:
            if error.worded:
                log.log(logging.WARNING if status >= 500 else logging.DEBUG,
                        "answered %s with Swift's page: %s", status, error.message)
            resp.content_type = HTML
            resp.text = swift_page(status)
        if req.method == "HEAD":
            resp.text = ""  # Swift's HEAD answers say Content-Length: 0, not the body's
        if status == 401:
            resp.set_header("WWW-Authenticate", f'Swift realm="{quote(realm(req))}"')


SWIFT_ERRORS = SwiftErrors()
