"""Legacy object versioning (Swift's ``versioned_writes``, its ``legacy`` mode): a container
with ``X-Versions-Location: <archive>`` or ``X-History-Location: <archive>`` keeps each
object's overwritten versions in the archive container, named
``<len(name) as 3 hex digits><name>/<timestamp of that version>``.

- PUT (or a copy) over an object first copies the current version into the archive.
- DELETE, stack mode (``X-Versions-Location``): the newest archived version is put back in
  the object's place and removed from the archive (a delete marker left by history mode
  is honoured as Swift does); with none, the object is deleted.
- DELETE, history mode (``X-History-Location``): the current version is archived, then a
  zero-byte delete marker (``DELETE_MARKER_TYPE``), then the object is deleted.

The setting is container system metadata (only one of the two at a time: 400). Every
sub-request acts as the caller, so the caller must be able to read the object and list and
write the archive (Swift uses pre-authorized requests there; soko's pipeline gives no
right the caller lacks): otherwise 412, as Swift answers an archive it cannot use.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import quote, unquote

from soko.common.errors import BadRequest, PreconditionFailed
from soko.object.middleware.copies import copy_request
from soko.object.middleware.object_versioning import (
    DELETE_MARKER_TYPE,
    ENABLED,
    LOCATION,
    ObjectVersioning,
    refused,
    version_headers,
)
from soko.object.middleware.pipeline import CONTAINER_INFO_KEY
from soko.object.middleware.subrequest import (
    Answer,
    call,
    container_path,
    object_path,
    subrequest,
)
from soko.object.shared.internal import CONTAINER_SYSMETA_PREFIX
from soko.object.shared.timestamps import Timestamp

MODE = "versions-mode"
CLIENT_HEADERS = {"stack": "X-Versions-Location", "history": "X-History-Location"}
SOURCE = "VW"


def environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


def archive_prefix(obj: str) -> str:
    """Swift's: the name's length in UTF-8 bytes, three hex digits, then the name."""
    return f"{len(obj.encode()):03x}{obj}/"


class VersionedWrites:
    """The pipeline's ``versioned_writes``, as Swift's: the legacy modes here, in front of
    the newer API (``object_versioning.py``); a container uses one or the other."""

    def __init__(self, app, section=None):
        self.app = ObjectVersioning(app)

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {"allowed_flags": [h.lower() for h in CLIENT_HEADERS.values()]}

    @classmethod
    def other_swift_info(cls, section=None) -> dict[str, dict]:
        return {"object_versioning": {}}

    def __call__(self, environ, start_response):
        method = environ["REQUEST_METHOD"]
        container = container_path(environ)
        if container is not None:
            if method in ("PUT", "POST"):
                self.settings(environ, container)
            return self.container(environ, start_response)
        path = object_path(environ)
        copy = copy_request(environ)
        if copy is not None:
            target = (path[0], *copy[2])
        elif method in ("PUT", "DELETE") and path is not None:
            target = path
        else:
            return self.app(environ, start_response)
        info = environ[CONTAINER_INFO_KEY](*target[1:3])
        sysmeta = info["sysmeta"] if info else {}
        archive = unquote(sysmeta.get(LOCATION, "")).split("/")[0]
        if not archive:
            return self.app(environ, start_response)
        versions = Versions(self.app, environ, target, archive)
        if method == "DELETE" and sysmeta.get(MODE) != "history":
            return versions.pop(start_response)
        versions.archive_current()
        if method == "DELETE":
            versions.delete_marker()
        return self.app(environ, start_response)

    # -- the container's setting -----------------------------------------------------------

    @staticmethod
    def settings(environ: dict, container: tuple[str, str, str]) -> None:
        """The client's headers turned into the container's system metadata."""
        given = {mode: environ.pop(environ_key(header)) for mode, header in
                 CLIENT_HEADERS.items() if environ_key(header) in environ}
        info = environ[CONTAINER_INFO_KEY](*container[1:]) if any(given.values()) else None
        if info and ENABLED in info["sysmeta"]:
            raise BadRequest("Cannot use legacy versioned writes on a container that has "
                             "object versioning enabled.", content_type="text/plain")
        if len(given) == 2:
            if not given["history"]:
                del given["history"]
            elif given["stack"]:
                raise BadRequest("Only one of x-versions-location or x-history-location may "
                                 "be specified", content_type="text/plain")
            else:
                del given["stack"]
        removed = any(environ.pop(environ_key(f"X-Remove-{h[2:]}"), "")
                      for h in CLIENT_HEADERS.values())
        if given:
            (mode, location), = given.items()
            if "/" in unquote(location):
                raise PreconditionFailed("Container name cannot contain slashes")
            removed = not location
        elif not removed:
            return
        prefix = CONTAINER_SYSMETA_PREFIX
        environ[environ_key(prefix + LOCATION)] = "" if removed else location
        environ[environ_key(prefix + MODE)] = "" if removed else mode

    def container(self, environ, start_response):
        """The container's answer, with its setting shown as the client's header."""
        answer = call(self.app, environ)
        sysmeta = {name[len(CONTAINER_SYSMETA_PREFIX):].lower(): value
                   for name, value in answer.header_list
                   if name.lower().startswith(CONTAINER_SYSMETA_PREFIX.lower())}
        headers = answer.header_list
        if sysmeta.get(LOCATION):
            mode = "history" if sysmeta.get(MODE) == "history" else "stack"
            headers = [*headers, (CLIENT_HEADERS[mode], sysmeta[LOCATION])]
        start_response(answer.status_line, headers)
        return answer.body


class Versions:
    """One object's versions in its archive container, worked on as the caller."""

    def __init__(self, app, environ: dict, path: tuple[str, str, str, str], archive: str):
        self.app, self.environ = app, environ
        version, account, self.container, self.obj = path
        self.account_path = f"/{version}/{account}"
        self.archive = archive
        self.prefix = archive_prefix(self.obj)

    def object_url(self) -> str:
        return f"{self.account_path}/{self.container}/{self.obj}"

    def archive_url(self, name: str) -> str:
        return f"{self.account_path}/{self.archive}/{name}"

    def read(self, url: str) -> Answer:
        return subrequest(self.app, self.environ, "GET", url, query="symlink=get",
                          headers={"X-Newest": "true"}, source=SOURCE)

    def write(self, url: str, source: Answer) -> None:
        """``source`` (a version's GET) stored at ``url``."""
        try:
            put = subrequest(self.app, self.environ, "PUT", url, source=SOURCE,
                             headers=version_headers(source), body=source,
                             length=int(source.headers.get("content-length", "0")))
        finally:
            source.close()
        refused(put, client_status=False)
        put.close()

    def archive_current(self) -> None:
        """The object as it is now, copied into the archive (nothing if there is none)."""
        current = self.read(self.object_url())
        if current.status == 404:
            current.close()
            return
        refused(current, client_status=False)
        stamp = Timestamp.parse(current.headers["x-timestamp"]).normal
        self.write(self.archive_url(self.prefix + stamp), current)

    def delete_marker(self) -> None:
        marker = subrequest(self.app, self.environ, "PUT",
                            self.archive_url(self.prefix + Timestamp.now().normal),
                            headers={"Content-Type": DELETE_MARKER_TYPE}, source=SOURCE)
        refused(marker, client_status=False)
        marker.close()

    def restore(self, name: str) -> bool:
        """The archived version ``name`` put back in the object's place (False: gone)."""
        version = self.read(self.archive_url(name))
        if version.status == 404:
            version.close()
            return False
        refused(version, client_status=False)
        self.write(self.object_url(), version)
        return True

    def delete(self, url: str) -> Answer:
        return subrequest(self.app, self.environ, "DELETE", url, source=SOURCE)

    def pop(self, start_response):
        """Stack mode's DELETE: the newest version back in place, as Swift's."""
        answer = None
        listing = self.newest_first()
        for entry in listing:
            if entry["content_type"] == DELETE_MARKER_TYPE:
                head = subrequest(self.app, self.environ, "HEAD", self.object_url(),
                                  headers={"X-Newest": "true"}, source=SOURCE)
                head.close()
                if head.status != 404:
                    refused(head, client_status=False)
                    break  # the object came back since: deleted as it is
                for older in listing:
                    if older["content_type"] == DELETE_MARKER_TYPE:
                        break
                    if self.restore(older["name"]):
                        gone = self.delete(self.archive_url(older["name"]))
                        gone.close()
                        if gone.status != 404:
                            refused(gone, client_status=False)
                        break
                answer = self.delete(self.archive_url(entry["name"]))
            elif self.restore(entry["name"]):
                answer = self.delete(self.archive_url(entry["name"]))
            else:
                continue
            break
        if answer is None:
            answer = call(self.app, self.environ)
        start_response(answer.status_line, answer.header_list)
        return answer.body

    def newest_first(self) -> Iterator[dict]:
        """The archive's versions of the object, newest first, page after page."""
        marker = ""
        while True:
            query = f"format=json&reverse=on&prefix={quote(self.prefix)}"
            if marker:
                query += f"&marker={quote(marker)}"
            answer = subrequest(self.app, self.environ, "GET",
                                f"{self.account_path}/{self.archive}", query=query,
                                source=SOURCE)
            if answer.status == 404:
                answer.close()
                return
            refused(answer, client_status=False)
            page = json.loads(answer.read(64 * 1024 * 1024) or b"[]")
            if not page:
                return
            yield from page
            marker = page[-1]["name"]
