"""In-process calls from the S3 layer into the Swift proxy app, as the credential's project.

An S3 request becomes one or more Swift API requests handed straight to the proxy's WSGI
app (no socket), as Swift's s3api sends subrequests down its pipeline. Who is calling rides
in the environ (``common.auth.AUTH_ENVIRON_KEY``), where a client cannot put it, and the
S3 request's transaction id rides along so the logs of both layers join up; the proxy logs
each call as a sub-request of source ``S3`` (the S3 layer logs the client's request).
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable
from urllib.parse import urlencode

from soko.common.app import SOURCE_KEY
from soko.common.auth import AUTH_ENVIRON_KEY, AuthContext
from soko.object.middleware.pipeline import IN_PROCESS_KEY
from soko.object.middleware.subrequest import call
from soko.object.s3.sigv4 import environ_key

ACCOUNT_PREFIX = "AUTH_"  # a project's account, as tempauth and the catalog name it
COPIED_ENVIRON = ("SERVER_NAME", "SERVER_PORT", "SERVER_PROTOCOL", "REMOTE_ADDR",
                  "wsgi.url_scheme", "wsgi.errors", "wsgi.version", "wsgi.multithread",
                  "wsgi.multiprocess", "wsgi.run_once", "gunicorn.socket")


@dataclasses.dataclass
class SwiftAnswer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: Iterable[bytes]

    def read(self) -> bytes:
        try:
            return b"".join(self.body)
        finally:
            self.close()

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()

    def json(self):
        return json.loads(self.read() or b"null")


def wsgi_path(text: str) -> str:
    """A PATH_INFO as WSGI carries it: the UTF-8 bytes seen as latin-1."""
    return text.encode("utf-8").decode("latin-1")


class SwiftCaller:
    """Swift API calls on the caller's account, made within one S3 request."""

    def __init__(self, app, environ: dict, who: AuthContext | None, trans_id: str,
                 account: str | None = None):
        """``who`` None: an anonymous caller, on ``account`` (its ACLs decide)."""
        self.app = app
        self.environ = environ
        self.who = who
        self.trans_id = trans_id
        self.account = account if account is not None else ACCOUNT_PREFIX + who.project_id

    def path(self, container: str | None = None, obj: str | None = None) -> str:
        parts = [self.account, *(p for p in (container, obj) if p is not None)]
        return "/v1/" + "/".join(parts)

    def call(self, method: str, path: str, *, query: dict | None = None,
             headers: dict[str, str] | None = None, body=None,
             length: int | None = None) -> SwiftAnswer:
        env = {key: self.environ[key] for key in COPIED_ENVIRON if key in self.environ}
        if isinstance(body, bytes):
            body, length = io.BytesIO(body), len(body)
        env.update({
            "REQUEST_METHOD": method, "SCRIPT_NAME": "", "PATH_INFO": wsgi_path(path),
            "QUERY_STRING": urlencode(query or {}),
            "wsgi.input": body if body is not None else io.BytesIO(b""),
            "HTTP_X_TRANS_ID": self.trans_id, IN_PROCESS_KEY: True, SOURCE_KEY: "S3",
        })
        if self.who is not None:
            env[AUTH_ENVIRON_KEY] = self.who
        if length is not None:
            env["CONTENT_LENGTH"] = str(length)
        for name, value in (headers or {}).items():
            env[environ_key(name)] = value
        answer = call(self.app, env)  # start_response may come with the first chunk
        return SwiftAnswer(answer.status, answer.headers, answer.body)
