"""Object versioning (Swift's ``object_versioning``, the API of ``X-Versions-Enabled``).

Storage, simpler than Swift's and the same to a client: each version is an object in the
versioned container itself under a reserved name (``shared/version_names.py``), and the
object's own name holds a static link (``symlink.py``) to its latest version, as Swift's
does. Keeping versions in their container, not in a hidden one, means the container's ACLs
govern its versions with no rule of their own (every sub-request here acts as the caller),
the container cannot be deleted while versions exist (it is not empty), and its
``X-Container-Bytes-Used`` counts them, as Swift's sums both containers. Unlike Swift's,
its ``X-Container-Object-Count`` counts versions too.

- PUT: the body becomes a new version, the link points at it, ``X-Object-Version-Id``
  answers its id. An object put while versioning was off (version ``null``) is first
  copied to a version of its own, so nothing is lost.
- DELETE: a delete marker (``DELETE_MARKER_TYPE``) becomes the latest version; the name
  then reads 404.
- ``?version-id=<id>`` (or ``null``): GET/HEAD/DELETE that version (DELETE writes no
  marker; deleting the latest removes the link too); PUT with an empty body makes that
  version the latest again; POST is refused (400).
- POST (no version id): the metadata goes to the latest version.
- ``X-Versions-Enabled: false``: new writes are plain objects (version ``null``), older
  versions stay readable; ``?versions`` lists every version (JSON), newest first per
  object, with ``version_id`` and ``is_latest``.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qs, quote, unquote

from soko.common.errors import (
    BadRequest,
    Conflict,
    NotAcceptable,
    NotFound,
    PreconditionFailed,
    ServiceUnavailable,
)
from soko.object.middleware.copies import copy_request, object_url
from soko.object.middleware.pipeline import CONTAINER_INFO_KEY
from soko.object.middleware.slo import CONTENT_TYPE_PARAMS, without_params
from soko.object.middleware.subrequest import (
    Answer,
    Refused,
    call,
    container_path,
    from_wsgi,
    object_path,
    query_value,
    subrequest,
    to_wsgi,
)
from soko.object.middleware.symlink import TARGET, link_metadata, static_link
from soko.object.proxy.controllers.obj import is_object_metadata
from soko.object.shared.internal import (
    ALLOW_RESERVED_HEADER,
    CONTAINER_SYSMETA_PREFIX,
    OBJECT_SYSMETA_PREFIX,
    RESERVED,
)
from soko.object.shared.timestamps import InvalidTimestamp, Timestamp
from soko.object.shared.version_names import parse_version_name, version_name

DELETE_MARKER_TYPE = "application/x-deleted;swift_versions_deleted=1"
LOCATION = "versions-location"  # the legacy mode's setting (versioned_writes.py)
ENABLED = "versions-enabled"
CLIENT_HEADER = "X-Versions-Enabled"
VERSION_HEADER = "X-Object-Version-Id"
SOURCE = "OV"
RESERVED_OK = {ALLOW_RESERVED_HEADER: "true"}
LISTING_PAGE = 10000


def version_headers(answer: Answer) -> dict[str, str]:
    """What a version keeps of the object it copies: type, ETag and all metadata."""
    kept = {name: value for name, value in answer.headers.items()
            if is_object_metadata(name) or name.startswith(OBJECT_SYSMETA_PREFIX.lower())}
    kept["Content-Type"] = answer.headers.get("content-type", "application/octet-stream")
    if "etag" in answer.headers:
        kept["ETag"] = answer.headers["etag"]
    return kept


def refused(answer: Answer, *, client_status: bool = True) -> None:
    """A sub-request that failed fails the client's request, as Swift's: a client error
    with its own status (404, a container gone: 412), or all of them as 412 (the legacy
    modes)."""
    if answer.status // 100 == 2:
        return
    if answer.status // 100 == 4 and client_status and answer.status != 404:
        raise Refused(answer)
    answer.close()
    if answer.status // 100 == 4:
        raise PreconditionFailed()
    raise ServiceUnavailable()


def is_true(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1", "yes", "on", "t", "y")


def checked_version(value: str) -> str:
    if value == "null":
        return value
    try:
        return Timestamp.parse(value).normal
    except InvalidTimestamp:
        raise BadRequest("Invalid version parameter") from None


class ObjectVersioning:
    def __init__(self, app, section=None):
        self.app = app

    def __call__(self, environ, start_response):
        container = container_path(environ)
        if container is not None:
            return self.container(environ, start_response)
        path = object_path(environ)
        if path is None:
            return self.app(environ, start_response)
        copy = copy_request(environ) if environ["REQUEST_METHOD"] == "COPY" else None
        if copy is not None:
            info = environ[CONTAINER_INFO_KEY](*copy[2][:2])
            if info is None or ENABLED not in info["sysmeta"]:
                return self.app(environ, start_response)
            path = as_copy_put(environ, *copy)  # versioned as the PUT it means, as Swift's
        info = environ[CONTAINER_INFO_KEY](*path[1:3])
        enabled = (info["sysmeta"] if info else {}).get(ENABLED)
        version_id = query_value(environ, "version-id")
        method = environ["REQUEST_METHOD"]
        if version_id is not None:
            if method == "POST":
                raise BadRequest("POST to a specific version is not allowed")
            if enabled is None and version_id != "null":
                raise BadRequest("version-aware operations require that the container is "
                                 "versioned")
            version_id = checked_version(version_id)
        if enabled is None:
            return self.app(environ, start_response)
        versions = ObjectVersions(self.app, environ, path, is_true(enabled))
        if version_id is not None:
            return versions.with_version(start_response, method, version_id)
        return versions.without_version(start_response, method)

    # -- containers ------------------------------------------------------------------------

    def container(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        version, account, container = container_path(environ)
        key = "HTTP_" + CLIENT_HEADER.upper().replace("-", "_")
        sysmeta = {}
        if (method in ("PUT", "POST") and key in environ) or method == "DELETE" or (
                method == "GET" and query_value(environ, "versions") is not None):
            info = environ[CONTAINER_INFO_KEY](account, container)
            sysmeta = info["sysmeta"] if info else {}
        if method in ("PUT", "POST") and key in environ:
            if sysmeta.get(LOCATION):
                raise BadRequest("Cannot enable object versioning on a container that is "
                                 "already using the legacy versioned writes feature.")
            value = str(is_true(environ.pop(key)))
            environ["HTTP_" + (CONTAINER_SYSMETA_PREFIX + ENABLED).upper().replace("-", "_")] \
                = value
        elif method == "DELETE" and ENABLED in sysmeta:
            self.refuse_delete_with_versions(environ, f"/{version}/{account}/{container}")
        elif method == "GET" and query_value(environ, "versions") is not None \
                and ENABLED in sysmeta:
            return VersionListing(self.app, environ, f"/{version}/{account}/{container}"
                                  ).answer(start_response)
        answer = call(self.app, environ)
        headers = answer.header_list
        shown = [v for k, v in headers if k.lower() == CONTAINER_SYSMETA_PREFIX.lower() + ENABLED]
        if shown:
            headers = [*headers, (CLIENT_HEADER, shown[0])]
        start_response(answer.status_line, headers)
        return answer.body

    def refuse_delete_with_versions(self, environ, url: str) -> None:
        answer = subrequest(self.app, environ, "GET", url, source=SOURCE, headers=RESERVED_OK,
                            query=f"format=json&limit=1&prefix={quote(RESERVED)}")
        if answer.status == 200 and json.loads(answer.read(1 << 20) or b"[]"):
            raise Conflict("Delete all versions before deleting container.")
        answer.close()


def as_copy_put(environ: dict, version: str, source: tuple, target: tuple) -> tuple:
    """A COPY turned into the PUT with ``X-Copy-From`` it means; the target's path."""
    for key in ("HTTP_DESTINATION", "HTTP_DESTINATION_ACCOUNT"):
        environ.pop(key, None)
    environ.update({"REQUEST_METHOD": "PUT", "PATH_INFO": to_wsgi(object_url(version, target)),
                    "HTTP_X_COPY_FROM": quote(f"{source[1]}/{source[2]}"),
                    "HTTP_X_COPY_FROM_ACCOUNT": quote(source[0])})
    return (version, *target)


class ObjectVersions:
    """One object of a versioned container, worked on as the caller."""

    def __init__(self, app, environ: dict, path: tuple[str, str, str, str], enabled: bool):
        self.app, self.environ, self.enabled = app, environ, enabled
        version, account, self.container, self.obj = path
        self.container_url = f"/{version}/{account}/{self.container}"
        self.url = f"{self.container_url}/{self.obj}"

    def version_url(self, version_id: str) -> str:
        return f"{self.container_url}/{version_name(self.obj, version_id)}"

    def latest_link(self) -> tuple[Answer, str | None]:
        """The object itself (not followed) and the version it links to (None: not a
        versioned object, a ``null`` version or nothing)."""
        answer = subrequest(self.app, self.environ, "HEAD", self.url, query="symlink=get",
                            source=SOURCE)
        answer.close()
        target = unquote(from_wsgi(answer.headers.get(TARGET, ""))).partition("/")[2]
        parsed = parse_version_name(target) if answer.status // 100 == 2 else None
        return answer, parsed[1] if parsed and parsed[0] == self.obj else None

    # -- without a version id --------------------------------------------------------------

    def without_version(self, start_response, method: str):
        if method == "PUT":
            return self.put(start_response)
        if method == "DELETE" and self.enabled:
            return self.delete(start_response)
        if method == "POST":
            return self.post(start_response)
        if method in ("GET", "HEAD"):
            return self.read(start_response)
        return self.pass_on(start_response, "null" if method in ("PUT", "DELETE") else None)

    def pass_on(self, start_response, version_id: str | None):
        answer = call(self.app, self.environ)
        headers = answer.header_list
        if version_id and answer.status // 100 == 2:
            headers = [*headers, (VERSION_HEADER, version_id)]
        start_response(answer.status_line, headers)
        return answer.body

    def keep_null_version(self) -> None:
        """A plain object (put while versioning was off) copied to a version of its own."""
        current, version_id = self.latest_link()
        if current.status // 100 != 2 or version_id is not None:
            return
        source = subrequest(self.app, self.environ, "GET", self.url, query="symlink=get",
                            source=SOURCE)
        if source.status == 404:
            source.close()
            return
        refused(source)
        stamp = Timestamp.parse(source.headers["x-timestamp"]).normal
        self.store(self.version_url(stamp), source, version_headers(source),
                   int(source.headers.get("content-length", "0")))

    def store(self, url: str, body, headers: dict[str, str], length: int | None) -> Answer:
        try:
            answer = subrequest(self.app, self.environ, "PUT", url, source=SOURCE,
                                headers={**headers, **RESERVED_OK}, body=body, length=length)
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        refused(answer)
        answer.close()
        return answer

    def link_latest(self, version_id: str, version: Answer) -> Answer:
        """The object's name made a static link to the version whose HEAD is ``version``
        (an SLO's: listed with its size and ``slo_etag``, as Swift's)."""
        stored = {"X-Symlink-Target": quote(f"{self.container}/"
                                            f"{version_name(self.obj, version_id)}"),
                  **static_link(version, version.headers["etag"].strip('"'))}
        content_type = version.headers.get("content-type", "application/octet-stream")
        answer = subrequest(self.app, self.environ, "PUT", self.url, source=SOURCE,
                            headers={"Content-Type": without_params(content_type,
                                                                    *CONTENT_TYPE_PARAMS),
                                     **link_metadata(stored)})
        refused(answer)
        answer.close()
        return answer

    def put(self, start_response):
        """A new version with the client's body, then the link to it."""
        if not self.enabled:
            return self.pass_on(start_response, "null")
        self.keep_null_version()
        version_id = Timestamp.now().normal
        env = dict(self.environ, PATH_INFO=to_wsgi(self.version_url(version_id)),
                   HTTP_X_BACKEND_ALLOW_RESERVED_NAMES="true")
        answer = call(self.app, env)
        if answer.status // 100 != 2:
            start_response(answer.status_line, answer.header_list)
            return answer.body
        answer.close()
        head = subrequest(self.app, self.environ, "HEAD", self.version_url(version_id),
                          query="symlink=get", headers=RESERVED_OK, source=SOURCE)
        refused(head)
        head.close()
        self.link_latest(version_id, head)
        headers = [(k, v) for k, v in answer.header_list if k.lower() != "content-location"]
        start_response(answer.status_line, [*headers, (VERSION_HEADER, version_id)])
        return []

    def delete(self, start_response):
        """A delete marker as the latest version, and the name gone."""
        self.keep_null_version()
        version_id = Timestamp.now().normal
        self.store(self.version_url(version_id), b"", {"Content-Type": DELETE_MARKER_TYPE}, 0)
        answer = subrequest(self.app, self.environ, "DELETE", self.url, source=SOURCE)
        answer.close()
        start_response(answer.status_line, [*answer.header_list, (VERSION_HEADER, version_id)])
        return []

    def post(self, start_response):
        """Metadata on the latest version (a plain object: on it, as any POST)."""
        _, version_id = self.latest_link()
        if version_id is None:
            return self.pass_on(start_response, None)
        env = dict(self.environ, PATH_INFO=to_wsgi(self.version_url(version_id)),
                   HTTP_X_BACKEND_ALLOW_RESERVED_NAMES="true")
        answer = call(self.app, env)
        start_response(answer.status_line, answer.header_list)
        return answer.body

    def read(self, start_response):
        """The latest version (the link followed), its id said, its reserved name not."""
        answer = call(self.app, self.environ)
        headers, version_id = [], "null"
        for name, value in answer.header_list:
            if name.lower() == "content-location":
                parsed = parse_version_name(unquote(from_wsgi(value)).split("/", 4)[-1])
                if parsed and parsed[0] == self.obj:
                    version_id = parsed[1]
                    value = to_wsgi(f"{self.url}?version-id={version_id}")
            headers.append((name, value))
        if answer.status // 100 == 2 or answer.status == 304:
            headers.append((VERSION_HEADER, version_id))
        start_response(answer.status_line, headers)
        return answer.body

    # -- with a version id -----------------------------------------------------------------

    def with_version(self, start_response, method: str, version_id: str):
        if method == "PUT":
            if version_id == "null":
                raise BadRequest("Invalid version parameter")
            return self.restore(start_response, version_id)
        if version_id == "null":  # the plain object, if that is what the name holds
            current, latest = self.latest_link()
            if latest is not None or current.status // 100 != 2:
                raise NotFound()
            env = dict(self.environ, QUERY_STRING="symlink=get")
            return self.pass_on_version(start_response, env, "null")
        if method == "DELETE" and self.latest_link()[1] == version_id:
            gone = subrequest(self.app, self.environ, "DELETE", self.url, source=SOURCE)
            gone.close()
        env = dict(self.environ, PATH_INFO=to_wsgi(self.version_url(version_id)),
                   QUERY_STRING="", HTTP_X_BACKEND_ALLOW_RESERVED_NAMES="true")
        return self.pass_on_version(start_response, env, version_id)

    def pass_on_version(self, start_response, env: dict, version_id: str):
        answer = call(self.app, env)
        if env["REQUEST_METHOD"] in ("GET", "HEAD") and \
                answer.headers.get("content-type") == DELETE_MARKER_TYPE:
            answer.close()  # a delete marker reads as nothing there
            raise NotFound(headers={VERSION_HEADER: version_id})
        headers = [(k, v) for k, v in answer.header_list if k.lower() != "content-location"]
        if answer.status // 100 == 2 or answer.status in (304, 404):
            headers.append((VERSION_HEADER, version_id))
        start_response(answer.status_line, headers)
        return answer.body

    def restore(self, start_response, version_id: str):
        """``PUT ?version-id=<id>`` (empty body): that version the latest again."""
        if (self.environ.get("CONTENT_LENGTH") or "0").strip() != "0":
            raise BadRequest("PUT version-id requests require a zero byte body")
        head = subrequest(self.app, self.environ, "HEAD", self.version_url(version_id),
                          query="symlink=get", headers=RESERVED_OK, source=SOURCE)
        head.close()
        if head.status == 404 or head.headers.get("content-type") == DELETE_MARKER_TYPE:
            raise NotFound("The specified version does not exist")
        refused(head)
        self.keep_null_version()
        answer = self.link_latest(version_id, head)
        start_response(answer.status_line, [*answer.header_list, (VERSION_HEADER, version_id)])
        return []


class VersionListing:
    """``GET ?versions``: every version of the container's objects (JSON only, as Swift's:
    another format is 406), by name, newest first: the reserved versions, and the plain
    (``null``) objects. ``prefix``, ``delimiter`` (a ``subdir`` per common prefix),
    ``marker`` with ``version_marker`` (the versions after that one), ``end_marker``,
    ``reverse`` (the whole order backwards: then ``marker`` names the end) and ``limit``
    (at most ``LISTING_PAGE``), over all the container's names and versions, read page by
    page."""

    def __init__(self, app, environ: dict, url: str):
        self.app, self.environ, self.url = app, environ, url

    def page(self, query: dict[str, str], reserved: bool) -> list[dict]:
        answer = subrequest(self.app, self.environ, "GET", self.url, source=SOURCE,
                            query="&".join(f"{k}={quote(v)}" for k, v in query.items()),
                            headers=RESERVED_OK if reserved else {})
        refused(answer)
        return json.loads(answer.read(256 << 20) or b"[]") if answer.status == 200 else []

    def listing(self, prefix: str, reserved: bool) -> list[dict]:
        """Every entry under ``prefix``, page after page (a container holds any number)."""
        entries: list[dict] = []
        while True:
            query = {"format": "json", "prefix": prefix, "limit": str(LISTING_PAGE)}
            if entries:
                query["marker"] = entries[-1]["name"]
            page = self.page(query, reserved)
            entries += page
            if len(page) < LISTING_PAGE:
                return entries

    def answer(self, start_response):
        params = {k: v[-1] for k, v in parse_qs(self.environ.get("QUERY_STRING", ""),
                                                 keep_blank_values=True).items()}
        accept = self.environ.get("HTTP_ACCEPT") or "*/*"
        if params.get("format", "json").lower() != "json" or ("format" not in params and not any(
                kind in accept for kind in ("json", "*/*", "application/*"))):
            raise NotAcceptable()
        prefix, marker = params.get("prefix", ""), params.get("marker", "")
        version_marker = params.get("version_marker")
        if version_marker is not None:
            if not marker:
                raise BadRequest("version_marker param requires marker")
            try:
                version_marker = Timestamp.parse(version_marker).normal if \
                    version_marker != "null" else version_marker
            except InvalidTimestamp:
                raise BadRequest("invalid version_marker param") from None
        limit = int(params["limit"]) if params.get("limit", "").isdigit() else LISTING_PAGE
        entries = self.all_versions(prefix)
        reverse = is_true(params.get("reverse"))
        if reverse:
            entries.reverse()
        entries = [e for e in entries if after_marker(e, marker, version_marker, reverse)
                   and before_end(e["name"], params.get("end_marker", ""), reverse)]
        entries = with_subdirs(entries, prefix, params.get("delimiter", ""))
        body = json.dumps(entries[:min(limit, LISTING_PAGE)]).encode("ascii")
        start_response("200 OK", [("Content-Type", "application/json; charset=utf-8"),
                                  ("Content-Length", str(len(body)))])
        return [body]

    def all_versions(self, prefix: str) -> list[dict]:
        """The versions under ``prefix``, by name and newest first."""
        latest = {e["name"]: e for e in self.listing(prefix, False)}
        versions = self.listing(RESERVED + prefix, True)
        entries, seen = [], set()
        for entry in versions:
            parsed = parse_version_name(entry["name"])
            if parsed is None:
                continue
            obj, version_id = parsed
            link = latest.get(obj)
            if link is not None and link.get("version_symlink"):
                is_latest = link["symlink_path"].endswith(f"?version-id={version_id}")
            else:  # the newest version (listed first) of a name that is no object now
                is_latest = link is None and obj not in seen
            seen.add(obj)
            entries.append({**entry, "name": obj, "is_latest": is_latest,
                            "version_id": version_id})
        for entry in latest.values():
            if not entry.get("version_symlink") and "subdir" not in entry:
                entries.append({**entry, "is_latest": True, "version_id": "null"})
        entries.sort(key=version_order)
        return entries


def version_order(entry: dict) -> tuple:
    """By name; the ``null`` version first, then the newest first (as Swift lists them)."""
    version_id = entry["version_id"]
    return (entry["name"], version_id != "null",
            0 if version_id == "null" else -Timestamp.parse(version_id).ticks)


def after_marker(entry: dict, marker: str, version_marker: str | None, reverse: bool) -> bool:
    """Whether ``entry`` comes after the marker (and the version marker) in listing order."""
    if not marker:
        return True
    if version_marker is None or entry["name"] != marker:
        return entry["name"] < marker if reverse else entry["name"] > marker
    position = version_order({"name": marker, "version_id": version_marker})
    return version_order(entry) < position if reverse else version_order(entry) > position


def before_end(name: str, end_marker: str, reverse: bool) -> bool:
    if not end_marker:
        return True
    return name > end_marker if reverse else name < end_marker


def with_subdirs(entries: list[dict], prefix: str, delimiter: str) -> list[dict]:
    """Entries whose name goes on past ``prefix`` + a ``delimiter`` as one ``subdir`` each."""
    if not delimiter:
        return entries
    shown, seen = [], set()
    for entry in entries:
        cut = entry["name"].find(delimiter, len(prefix))
        if cut < 0:
            shown.append(entry)
        elif (subdir := entry["name"][:cut + len(delimiter)]) not in seen:
            seen.add(subdir)
            shown.append({"subdir": subdir})
    return shown
