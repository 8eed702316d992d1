"""Copying a large object (``COPY``, or ``PUT`` with ``X-Copy-From``, of an SLO or a DLO).

As in Swift, the copy is an ordinary object holding the whole concatenation (so at most
the 5 GiB object limit: larger is a 413), streamed from the large-object layer's GET into
a PUT below it; with ``?multipart-manifest=get`` the manifest itself is what is copied
(``slo.py`` does that for an SLO by putting the manifest again, segments checked). The
source's user metadata comes along unless ``X-Fresh-Metadata: true``, as for any copy.
"""

from __future__ import annotations

import io

from soko.common.errors import SokoError
from soko.object.middleware.subrequest import (
    Answer,
    IterableInput,
    call,
    object_path,
    subrequest,
    to_wsgi,
)
from soko.object.proxy.controllers.obj import account_in_header, object_in_header
from soko.object.shared.nodeclient import STREAM_CHUNK

Location = tuple[str, str, str]  # account, container, object
COPY_KEYS = ("HTTP_X_COPY_FROM", "HTTP_X_COPY_FROM_ACCOUNT", "HTTP_DESTINATION",
             "HTTP_DESTINATION_ACCOUNT", "HTTP_RANGE", "HTTP_ETAG", "HTTP_TRANSFER_ENCODING")
# What comes along from the source besides X-Object-Meta-* (as the core's copy).
CARRIED = ("content-disposition", "content-encoding")


class EnvironHeaders:
    """The request's headers as the core's header parsers read them (``get_header``)."""

    def __init__(self, environ: dict):
        self.environ = environ

    def get_header(self, name: str) -> str | None:
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))


def copy_request(environ: dict) -> tuple[str, Location, Location] | None:
    """``(version, source, target)`` of a copy, None if this is none (or one the core
    refuses: a malformed header is its to answer)."""
    path = object_path(environ)
    if path is None:
        return None
    version, account = path[0], path[1]
    headers, method = EnvironHeaders(environ), environ["REQUEST_METHOD"]
    try:
        if method == "COPY" and headers.get_header("Destination"):
            target = (account_in_header(headers, "Destination-Account") or account,
                      *object_in_header(headers, "Destination"))
            return version, path[1:], target
        if method == "PUT" and headers.get_header("X-Copy-From"):
            source = (account_in_header(headers, "X-Copy-From-Account") or account,
                      *object_in_header(headers, "X-Copy-From"))
            return version, source, path[1:]
    except SokoError:
        return None
    return None


def object_url(version: str, location: Location) -> str:
    return "/".join(("", version, *location))


def source_head(app, environ: dict, version: str, source: Location) -> Answer:
    """The source's own headers (a manifest's, not its concatenation's)."""
    answer = subrequest(app, environ, "HEAD", object_url(version, source),
                        query="multipart-manifest=get", source="COPY")
    answer.close()
    return answer


def target_environ(environ: dict, version: str, target: Location, source: Answer,
                   query: str = "") -> dict:
    """The caller's request turned into the PUT of the copy, with the source's metadata."""
    env = {k: v for k, v in environ.items() if k not in COPY_KEYS}
    env.update({"REQUEST_METHOD": "PUT", "PATH_INFO": to_wsgi(object_url(version, target)),
                "QUERY_STRING": query})
    if (environ.get("HTTP_X_FRESH_METADATA") or "").lower() != "true":
        for name, value in source.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if (name.startswith("x-object-meta-") or name in CARRIED) and key not in env:
                env[key] = value
    if not env.get("CONTENT_TYPE"):
        env["CONTENT_TYPE"] = source.headers.get("content-type", "application/octet-stream")
    return env


def copied_from(headers: list[tuple[str, str]], source: Location, target: Location) -> list:
    headers = [*headers, ("X-Copied-From", to_wsgi(f"{source[1]}/{source[2]}"))]
    if source[0] != target[0]:
        headers.append(("X-Copied-From-Account", to_wsgi(source[0])))
    return headers


def copy_whole(layer, environ: dict, start_response, version: str, source: Location,
               target: Location):
    """The concatenation read through ``layer`` (the SLO or DLO middleware) and stored
    through the app below it as one object."""
    whole = subrequest(layer, environ, "GET", object_url(version, source), source="COPY")
    if whole.status != 200:
        start_response(whole.status_line, whole.header_list)
        return whole.body
    env = target_environ(environ, version, target, whole)
    env["wsgi.input"] = io.BufferedReader(IterableInput(whole), STREAM_CHUNK)
    env["CONTENT_LENGTH"] = whole.headers.get("content-length", "0")
    try:
        put = call(layer.app, env)
    finally:
        whole.close()
    start_response(put.status_line, copied_from(put.header_list, source, target))
    return put.body
