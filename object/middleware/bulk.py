"""Bulk operations (Swift's ``bulk`` middleware): many deletes, or a whole archive's files
stored, in one request.

- ``POST|DELETE /v1/<account>[/...]?bulk-delete``: the body lists ``/container/object`` or
  ``/container`` paths (URL-encoded, one a line); objects are deleted first, then the
  containers (so a container emptied by the same request can go too).
- ``PUT /v1/<account>[/<container>[/<prefix>]]?extract-archive=tar|tar.gz|tar.bz2``: each
  file of the archive is stored as ``<container>/<object>`` under the path (containers made
  as needed), read from the request as it arrives: never more than a chunk in memory.

Both answer ``200`` at once and report at the end, in the format the client accepts
(plain, JSON, XML): counts, an overall ``Response Status``, and each path that failed with
its status. While a long operation runs, whitespace goes out every ``yield_frequency``
seconds so that nothing between the client and the proxy times the connection out. Every
delete and store is a sub-request through the rest of the pipeline, as the caller: quotas,
large objects and access rules apply to each as to a request of its own.
"""

from __future__ import annotations

import logging
import tarfile
import time
import zlib
from collections.abc import Iterator
from functools import partial
from urllib.parse import parse_qs, quote, unquote_to_bytes

from soko.object.middleware.report import matching_format, report_body
from soko.object.middleware.subrequest import from_wsgi, request_path, subrequest
from soko.object.proxy.constraints import (
    MAX_CONTAINER_NAME_LENGTH,
    MAX_FILE_SIZE,
    MAX_OBJECT_NAME_LENGTH,
)
from soko.object.shared.nodeclient import STREAM_CHUNK

log = logging.getLogger(__name__)

MAX_CONTAINERS_PER_EXTRACTION = 10_000
MAX_FAILED_EXTRACTIONS = 1000
MAX_DELETES_PER_REQUEST = 10_000
MAX_FAILED_DELETES = 1000
YIELD_FREQUENCY = 10  # seconds between whitespace heartbeats
MAX_PATH_LENGTH = MAX_OBJECT_NAME_LENGTH + MAX_CONTAINER_NAME_LENGTH + 2
ARCHIVES = {"tar": "", "tar.gz": "gz", "tar.bz2": "bz2"}  # tarfile's stream modes
XML_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>\n'
REPORT_SEPARATOR = b"\r\n\r\n"  # between heartbeats and the report
HTML = "text/html; charset=UTF-8"
BAD_REQUEST = "400 Bad Request"
# What an extracted object takes from the archive request's own headers.
CARRIED_PREFIXES = ("HTTP_X_OBJECT_META_", "HTTP_X_DELETE_AT", "HTTP_X_DELETE_AFTER")
PAX_META_PREFIXES = ("SCHILY.xattr.user.meta.", "LIBARCHIVE.xattr.user.meta.")
PAX_TYPES = ("SCHILY.xattr.user.mime_type", "LIBARCHIVE.xattr.user.mime_type")


class Refused(Exception):
    """Ends an operation early: its report's ``Response Status`` and ``Response Body``."""

    def __init__(self, status: str, text: str = ""):
        super().__init__(status)
        self.status, self.text = status, text


class Heartbeat:
    """Whitespace at most every ``frequency`` seconds (an XML answer starts with its
    declaration instead, so it stays well-formed); once one went out, the report follows a
    blank line, as Swift's does."""

    def __init__(self, frequency: float, fmt: str | None):
        self.frequency = frequency
        self.last = time.monotonic()
        self.next = XML_DECLARATION if fmt and fmt.endswith("/xml") else b" "
        self.separator = b""

    def due(self) -> bytes:
        if time.monotonic() - self.last < self.frequency:
            return b""
        self.last = time.monotonic()
        beat, self.next, self.separator = self.next, b" ", REPORT_SEPARATOR
        return beat


def utf8_name(raw: bytes) -> str | None:
    """A name as text, None if it is not valid UTF-8 or holds NUL (Swift's 412)."""
    try:
        name = raw.decode("utf-8")
    except UnicodeError:
        return None
    return None if "\x00" in name else name


class Bulk:
    ADVERTISES = ("bulk_upload", "bulk_delete")

    def __init__(self, app, section=None):
        self.app = app
        self.yield_frequency = YIELD_FREQUENCY

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {"bulk_upload": {"max_containers_per_extraction": MAX_CONTAINERS_PER_EXTRACTION,
                                "max_failed_extractions": MAX_FAILED_EXTRACTIONS},
                "bulk_delete": {"max_deletes_per_request": MAX_DELETES_PER_REQUEST,
                                "max_failed_deletes": MAX_FAILED_DELETES}}

    def __call__(self, environ, start_response):
        query = parse_qs(environ.get("QUERY_STRING", ""), keep_blank_values=True)
        method, path = environ["REQUEST_METHOD"], request_path(environ)
        if path is None:
            return self.app(environ, start_response)
        if method == "PUT" and "extract-archive" in query:
            kind = ARCHIVES.get(query["extract-archive"][-1].lower().strip("."))
            if kind is None:
                body = b"Unsupported archive format"
                start_response(BAD_REQUEST, [("Content-Type", HTML),
                                             ("Content-Length", str(len(body)))])
                return [body]
            return self.respond(environ, start_response, partial(self.extract, path, kind))
        if method in ("POST", "DELETE") and "bulk-delete" in query:
            return self.respond(environ, start_response, partial(self.delete, path))
        return self.app(environ, start_response)

    def respond(self, environ, start_response, operation):
        """200 at once (the report says how it went), in the accepted format: the body is
        the operation, run as the client reads it."""
        fmt = matching_format(environ)
        start_response("200 OK", [("Content-Type", fmt or HTML)])
        return operation(environ, fmt)

    # -- bulk delete -----------------------------------------------------------------------

    def delete(self, path, environ: dict, fmt: str | None) -> Iterator[bytes]:
        version, account = path[:2]
        beat = Heartbeat(self.yield_frequency, fmt)
        counts = {"Number Deleted": 0, "Number Not Found": 0}
        errors: list[list[str]] = []
        status, text = "200 OK", ""
        try:
            if fmt is None:
                raise Refused("406 Not Acceptable")
            given_type = environ.get("CONTENT_TYPE")
            if given_type and not given_type.startswith("text/plain"):
                raise Refused("406 Not Acceptable")
            failed_status = BAD_REQUEST
            for raw in objects_then_containers(self.names_to_delete(environ)):
                name = utf8_name(raw)
                if name is None:
                    errors.append([quote(raw), "412 Precondition Failed"])
                    continue
                answer = subrequest(self.app, environ, "DELETE",
                                    f"/{version}/{account}/{name.lstrip('/')}", source="BD")
                answer.close()
                if answer.status // 100 == 2:
                    counts["Number Deleted"] += 1
                elif answer.status == 404:
                    counts["Number Not Found"] += 1
                else:
                    if answer.status // 100 == 5:
                        failed_status = "502 Bad Gateway"
                    errors.append([quote(raw), answer.status_line])
                    if len(errors) >= MAX_FAILED_DELETES:
                        raise Refused(BAD_REQUEST, "Max delete failures exceeded")
                pulse = beat.due()
                if pulse:
                    yield pulse
            if errors:
                status = failed_status
            elif not any(counts.values()):
                status, text = BAD_REQUEST, "Invalid bulk delete."
        except Refused as refusal:
            status, text = refusal.status, refusal.text
        except Exception:
            log.exception("bulk delete failed")
            status = "500 Internal Error"
        fields = {"Response Status": status, "Response Body": text, **counts}
        yield beat.separator + report_body(fmt or "text/plain", fields, errors, "delete")

    def names_to_delete(self, environ: dict) -> list[bytes]:
        """The body's paths, percent-decoded (bytes: a name that is not UTF-8 is reported,
        not refused), read a bounded piece at a time; empty lines skipped."""
        if environ.get("CONTENT_LENGTH") in (None, "") and "chunked" not in environ.get(
                "HTTP_TRANSFER_ENCODING", "").lower():
            raise Refused("411 Length Required")
        names, pending = [], b""
        body = environ["wsgi.input"]
        while True:
            data = body.read(MAX_PATH_LENGTH)
            lines = (pending + data).split(b"\n")
            pending = lines.pop() if data else b""
            names += [unquote_to_bytes(line.strip()) for line in lines if line.strip()]
            if len(names) > MAX_DELETES_PER_REQUEST:
                raise Refused("413 Request Entity Too Large",
                              f"Maximum Bulk Deletes: {MAX_DELETES_PER_REQUEST} per request")
            if len(pending) > MAX_PATH_LENGTH * 2:
                raise Refused(BAD_REQUEST, "Invalid File Name")
            if not data:
                return names

    # -- archive extraction ----------------------------------------------------------------

    def extract(self, path, kind: str, environ: dict, fmt: str | None) -> Iterator[bytes]:
        version, account, container, obj = path
        base = f"{container}/{obj}".rstrip("/")
        beat = Heartbeat(self.yield_frequency, fmt)
        created, errors = 0, []
        status, text, failed_status = "201 Created", "", BAD_REQUEST
        try:
            if fmt is None:
                raise Refused("406 Not Acceptable")
            if environ.get("CONTENT_LENGTH") in (None, "") and "chunked" not in environ.get(
                    "HTTP_TRANSFER_ENCODING", "").lower():
                raise Refused("411 Length Required")
            containers = ContainerMaker(self.app, environ, f"/{version}/{account}")
            with tarfile.open(mode="r|" + kind, fileobj=environ["wsgi.input"],
                              encoding="utf-8", errors="surrogateescape") as archive:
                while True:
                    pulse = beat.due()
                    if pulse:
                        yield pulse
                    member = archive.next()
                    if member is None or len(errors) >= MAX_FAILED_EXTRACTIONS:
                        break
                    if not member.isfile():
                        continue
                    stored, status_line = self.store_member(
                        archive, member, base, environ, version, account, containers, errors)
                    created += stored
                    if status_line[:1] == "5":
                        failed_status = "502 Bad Gateway"
            if errors:
                status = failed_status
            elif not created:
                status, text = BAD_REQUEST, "Invalid Tar File: No Valid Files"
        except Refused as refusal:
            status, text = refusal.status, refusal.text
        except (tarfile.TarError, zlib.error, EOFError, OSError) as error:
            status, text = BAD_REQUEST, f"Invalid Tar File: {error}"
        except Exception:
            log.exception("archive extraction failed")
            status = "500 Internal Error"
        fields = {"Response Status": status, "Response Body": text,
                  "Number Files Created": created}
        yield beat.separator + report_body(fmt or "text/plain", fields, errors, "extract")

    def store_member(self, archive, member: tarfile.TarInfo, base: str, environ: dict,
                     version: str, account: str, containers: ContainerMaker,
                     errors: list) -> tuple[int, str]:
        """One file of the archive stored (1) or reported in ``errors`` (0), with the
        status of its PUT if one was made. A file at the archive's top level (no container
        to go in) is skipped, as Swift does."""
        raw = member.name.encode("utf-8", "surrogateescape").removeprefix(b"./").lstrip(b"/")
        if base:
            raw = base.encode() + b"/" + raw
        if b"/" not in raw:
            return 0, ""
        reported = quote(raw[:MAX_PATH_LENGTH])
        name = utf8_name(raw)
        if name is None:
            errors.append([reported, "412 Precondition Failed"])
            return 0, ""
        if member.size > MAX_FILE_SIZE:
            errors.append([reported, "413 Request Entity Too Large"])
            return 0, ""
        container = name.split("/", 1)[0]
        container_failure = containers.ensure(container)
        source = archive.extractfile(member)
        answer = subrequest(self.app, environ, "PUT", f"/{version}/{account}/{name}",
                            source="EA", headers=member_headers(environ, member),
                            body=iter(partial(source.read, STREAM_CHUNK), b""),
                            length=member.size)
        answer.close()
        containers.tried.add(container)
        if answer.status // 100 == 2:
            return 1, answer.status_line
        if container_failure:
            errors.append(container_failure)
        errors.append([reported, answer.status_line])
        if answer.status == 401:
            raise Refused("401 Unauthorized")
        return 0, answer.status_line


class ContainerMaker:
    """Creates each container an archive's files go into, once per extraction (a HEAD, then
    a PUT if it is missing). A failure is reported only with a file that then failed."""

    def __init__(self, app, environ: dict, account_url: str):
        self.app, self.environ, self.account_url = app, environ, account_url
        self.tried: set[str] = set()
        self.created = 0

    def ensure(self, container: str) -> list[str] | None:
        if container in self.tried:
            return None
        url = f"{self.account_url}/{container}"
        answer = subrequest(self.app, self.environ, "HEAD", url, source="EA")
        answer.close()
        if answer.status // 100 == 2:
            return None
        if answer.status == 404:
            answer = subrequest(self.app, self.environ, "PUT", url, source="EA")
            answer.close()
            if answer.status // 100 == 2:
                self.created += 1
                if self.created > MAX_CONTAINERS_PER_EXTRACTION:
                    raise Refused(BAD_REQUEST, f"More than {MAX_CONTAINERS_PER_EXTRACTION} "
                                               "containers to create from tar.")
                return None
        if answer.status == 401:
            raise Refused("401 Unauthorized")
        return [quote(url.encode()[:MAX_PATH_LENGTH]), answer.status_line]


def objects_then_containers(names: list[bytes]) -> Iterator[bytes]:
    yield from (name for name in names if b"/" in name.strip(b"/"))
    yield from (name for name in names if b"/" not in name.strip(b"/"))


def member_headers(environ: dict, member: tarfile.TarInfo) -> dict[str, str]:
    """The request's object metadata and expiry, then the member's own (pax) metadata and
    type, as Swift's bulk sets them."""
    headers = {}
    for key, value in environ.items():
        if key.startswith(CARRIED_PREFIXES):
            try:
                headers[key[5:].replace("_", "-")] = from_wsgi(value)
            except UnicodeError:
                continue  # a value that is not UTF-8 cannot be passed on as text
    for key, value in member.pax_headers.items():
        if key in PAX_TYPES:
            headers["Content-Type"] = value
        for prefix in PAX_META_PREFIXES:
            if key.startswith(prefix):
                headers["X-Object-Meta-" + key[len(prefix):]] = value
    return headers
