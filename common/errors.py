"""soko's domain errors, mapped to HTTP once by the app factory.

Managers raise these (no HTTP knowledge below the API layer); the factory turns each into
its status with a body in the app's error format (``common/app.py``): soko's own APIs a JSON
body that says what went wrong and what to do about it, the Swift API Swift's short texts.
"""

from __future__ import annotations


class SokoError(Exception):
    """Base of every error a client may see; ``status`` is the HTTP answer."""

    status = 500
    title = "Internal Server Error"

    def __init__(self, message: str | None = None, *, headers: dict[str, str] | None = None,
                 content_type: str | None = None):
        super().__init__(message or self.title)
        self.message = message or self.title
        # Whether the raiser worded it: a format with fixed pages (Swift's) uses those else.
        self.worded = message is not None
        self.headers = headers or {}
        # The media type of the message where a format answers it as the body (Swift's
        # constraint errors are ``text/plain``, its other texts ``text/html``).
        self.content_type = content_type


class BadRequest(SokoError):
    status, title = 400, "Bad Request"


class Unauthorized(SokoError):
    status, title = 401, "Unauthorized"


class Forbidden(SokoError):
    status, title = 403, "Forbidden"


class NotFound(SokoError):
    status, title = 404, "Not Found"


class MethodNotAllowed(SokoError):
    status, title = 405, "Method Not Allowed"


class Conflict(SokoError):
    status, title = 409, "Conflict"


class LengthRequired(SokoError):
    status, title = 411, "Length Required"


class RequestTimeout(SokoError):
    """The client stopped sending its request (head or body) for longer than allowed."""

    status, title = 408, "Request Timeout"


class PreconditionFailed(SokoError):
    status, title = 412, "Precondition Failed"


class PayloadTooLarge(SokoError):
    """Also Cinder's answer to an exceeded quota (OverLimit)."""

    status, title = 413, "Request Entity Too Large"


class URITooLong(SokoError):
    status, title = 414, "URI Too Long"


class ExpectationFailed(SokoError):
    status, title = 417, "Expectation Failed"


class Unprocessable(SokoError):
    status, title = 422, "Unprocessable Entity"


class TooManyRequests(SokoError):
    status, title = 429, "Too Many Requests"


class HeaderFieldsTooLarge(SokoError):
    status, title = 431, "Request Header Fields Too Large"


class Unimplemented(SokoError):
    """A request feature soko does not implement (a transfer coding other than chunked)."""

    status, title = 501, "Not Implemented"


class ClientDisconnect(SokoError):
    """The client went away mid-body (nginx's 499): logged; nobody reads the answer."""

    status, title = 499, "Client Disconnect"


class ServiceUnavailable(SokoError):
    status, title = 503, "Service Unavailable"


class InsufficientStorage(SokoError):
    status, title = 507, "Insufficient Storage"
