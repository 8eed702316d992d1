"""Symlinks (Swift's ``symlink`` middleware): a zero-byte object put with
``X-Symlink-Target: <container>/<object>`` (and ``X-Symlink-Target-Account``) stands for its
target.

- GET/HEAD follow the link, up to ``SYMLOOP_MAX`` links (409 beyond), as the caller: a
  target the caller may not read is refused as its own request would be. The answer is the
  target's, with ``Content-Location`` naming it (a broken link: the target's 404).
- ``?symlink=get``: the link itself, its target in ``X-Symlink-Target*``.
- A static link (``X-Symlink-Target-Etag``) is checked when put (the target must exist with
  that ETag; its size is kept as ``X-Symlink-Target-Bytes``) and on every read (409 if the
  target changed).
- POST applies to the link and answers 307 pointing at the target, as Swift does.
  A static link to an SLO names the manifest's ETag (``X-Manifest-Etag``) and keeps the
  SLO's size and ETag (listed as ``slo_etag``), as Swift's.
- Copying a link copies its target's content (``copies.copy_whole``); with
  ``?symlink=get`` it copies the link itself, as it is (no target check again).
- Container listings show ``symlink_path`` (``symlink_etag``/``symlink_bytes``): the link
  stores its target in the ETag its listing shows (``OVERRIDE_ETAG_HEADER``), which
  ``listing_format.symlink_entry`` turns into those fields.
"""

from __future__ import annotations

import hashlib
import io
from urllib.parse import quote, unquote

from soko.common.errors import BadRequest, Conflict, PreconditionFailed, SokoError
from soko.object.middleware.copies import (
    EnvironHeaders,
    copied_from,
    copy_request,
    copy_whole,
    object_url,
    source_head,
    target_environ,
)
from soko.object.middleware.slo import CONTENT_TYPE_PARAMS, without_params
from soko.object.middleware.slo_manifest import SYSMETA_ETAG as SLO_ETAG
from soko.object.middleware.slo_manifest import SYSMETA_SIZE as SLO_SIZE
from soko.object.middleware.subrequest import (
    Answer,
    Refused,
    call,
    from_wsgi,
    header_names,
    object_path,
    query_value,
    subrequest,
    to_wsgi,
)
from soko.object.proxy.controllers.obj import account_in_header, header_name
from soko.object.shared.internal import (
    ALLOW_RESERVED_HEADER,
    IGNORE_RANGE_HEADER,
    OVERRIDE_ETAG_HEADER,
    RESERVED,
)

SYMLOOP_MAX = 2  # Swift's default: links followed in one read
PREFIX = "X-Object-Sysmeta-Symlink-"
# The client's headers and where the link keeps them (system metadata, set only here).
CLIENT_TO_SYSMETA = {f"X-Symlink-{name}": f"{PREFIX}{name}"
                     for name in ("Target", "Target-Account", "Target-Etag", "Target-Bytes")}
TARGET, ACCOUNT, ETAG, BYTES = (header.lower() for header in CLIENT_TO_SYSMETA.values())
TARGET_SLO_ETAG = f"{PREFIX}Target-Slo-Etag"  # a static link to an SLO: what its listing shows
EMPTY_MD5 = hashlib.md5(b"").hexdigest()
TEXT = "text/plain"
IGNORE_RANGE_KEY = "HTTP_" + IGNORE_RANGE_HEADER.upper().replace("-", "_")
# What a read passes on when it follows a link (Swift passes the whole request).
READ_KEYS = ("HTTP_RANGE", "HTTP_IF_MATCH", "HTTP_IF_NONE_MATCH", "HTTP_IF_MODIFIED_SINCE",
             "HTTP_IF_UNMODIFIED_SINCE", "HTTP_X_NEWEST")


def environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")


class LinkError(SokoError):
    """A 409 naming the target it concerns (``Content-Location``), as Swift's."""

    status, title = 409, "Conflict"

    def __init__(self, message: str, location: str):
        super().__init__(message, headers={"Content-Location": to_wsgi(location)},
                         content_type=TEXT)


class Symlinks:
    def __init__(self, app, section=None):
        self.app = app
        self.symloop_max = SYMLOOP_MAX

    @classmethod
    def swift_info(cls, section=None) -> dict:
        return {"symloop_max": SYMLOOP_MAX, "static_links": True}

    def __call__(self, environ, start_response):
        path = object_path(environ)
        if path is None:
            return self.app(environ, start_response)
        method = environ["REQUEST_METHOD"]
        link_itself = query_value(environ, "symlink") == "get"
        if method in ("GET", "HEAD"):
            if link_itself:
                return self.link(environ, start_response)
            return self.read(environ, start_response, path, method)
        if method == "PUT" and "HTTP_X_SYMLINK_TARGET" in environ:
            return self.put(environ, start_response, path)
        if method == "POST":
            return self.post(environ, start_response, path)
        copy = copy_request(environ)
        if copy is not None and link_itself:
            return self.copy_link(environ, start_response, *copy)
        if copy is not None and TARGET in source_head(self.app, environ, *copy[:2]).headers:
            return copy_whole(self, environ, start_response, *copy)
        return self.app(environ, start_response)

    # -- reads -----------------------------------------------------------------------------

    def link(self, environ, start_response):
        answer = call(self.app, environ)
        start_response(answer.status_line, with_client_headers(answer.header_list))
        return answer.body

    def read(self, environ, start_response, path, method: str):
        """The object, or what its links lead to."""
        header_names(environ, IGNORE_RANGE_KEY, CLIENT_TO_SYSMETA["X-Symlink-Target"])
        answer = call(self.app, environ)
        version, account = path[0], path[1]
        location, expected_etag, followed = None, None, 0
        # A link's own 304/412 (its empty body's ETag against If-*) is no answer: as in
        # Swift, the conditions are the target's.
        while (answer.status // 100 == 2 or answer.status in (304, 412)) and \
                TARGET in answer.headers:
            answer.close()
            link_etag = answer.headers.get(ETAG)
            found = link_etag or answer.headers.get("etag", "").strip('"')
            if expected_etag and expected_etag != found:
                raise LinkError("X-Symlink-Target-Etag headers do not match", location)
            if followed >= self.symloop_max:
                raise Conflict(f"Too many levels of symbolic links, maximum allowed is "
                               f"{self.symloop_max}", content_type=TEXT)
            account = from_wsgi(answer.headers.get(ACCOUNT, "")) or account
            target = from_wsgi(answer.headers[TARGET])
            location = f"/{version}/{account}/{target}"
            expected_etag, followed = link_etag, followed + 1
            headers = self.read_headers(environ)
            if unquote(target).partition("/")[2].startswith(RESERVED):  # object_versioning.py
                headers[ALLOW_RESERVED_HEADER] = "true"
            answer = subrequest(self.app, environ, method, f"/{version}/{account}/"
                                f"{unquote(target)}", source="SYM", headers=headers)
        final_etag = answer.headers.get("etag", "").strip('"')
        if expected_etag and final_etag and final_etag != expected_etag:
            answer.close()
            raise LinkError(f"Object Etag {final_etag!r} does not match X-Symlink-Target-Etag "
                            f"header {expected_etag!r}", location)
        headers = answer.header_list
        if location is not None:
            headers = [*headers, ("Content-Location", to_wsgi(location))]
        start_response(answer.status_line, headers)
        return answer.body

    @staticmethod
    def read_headers(environ: dict) -> dict[str, str]:
        headers = {key[5:].replace("_", "-"): from_wsgi(environ[key]) for key in READ_KEYS
                   if key in environ}
        headers[IGNORE_RANGE_HEADER] = CLIENT_TO_SYSMETA["X-Symlink-Target"]
        return headers

    # -- writes ----------------------------------------------------------------------------

    def put(self, environ, start_response, path):
        """A link: its target checked and kept as system metadata, and in its listed ETag."""
        if has_body(environ):
            raise BadRequest("Symlink requests require a zero byte body", content_type=TEXT)
        version, account, container, obj = path
        headers = EnvironHeaders(environ)
        form = "X-Symlink-Target header must be of the form <container name>/<object name>"
        target = header_name(headers, "X-Symlink-Target")
        target_container, _, target_obj = target.partition("/")
        if not target_container or not target_obj:
            raise PreconditionFailed(form, content_type=TEXT)
        target_account = account_in_header(headers, "X-Symlink-Target-Account")
        if (target_account or account, target_container, target_obj) == \
                (account, container, obj):
            raise BadRequest("Symlink cannot target itself", content_type=TEXT)
        etag = (environ.get("HTTP_X_SYMLINK_TARGET_ETAG") or "").strip('"') or None
        if etag and any(c in etag for c in ';"\\'):
            raise BadRequest("Bad X-Symlink-Target-Etag format", content_type=TEXT)
        for key in ("HTTP_X_SYMLINK_TARGET_ETAG", "HTTP_X_SYMLINK_TARGET_BYTES"):
            environ.pop(key, None)
        stored = {"X-Symlink-Target": quote(f"{target_container}/{target_obj}")}
        if target_account:
            stored["X-Symlink-Target-Account"] = quote(target_account)
        location = f"/{version}/{target_account or account}/{target_container}/{target_obj}"
        if etag:
            stored.update(self.static_target(environ, location, etag))
        elif not environ.get("CONTENT_TYPE"):
            environ["CONTENT_TYPE"] = "application/symlink"
        environ.pop("HTTP_X_SYMLINK_TARGET_ACCOUNT", None)
        del environ["HTTP_X_SYMLINK_TARGET"]
        for header, value in link_metadata(stored).items():
            environ[environ_key(header)] = value
        return self.app(environ, start_response)

    def static_target(self, environ: dict, location: str, etag: str) -> dict[str, str]:
        """A static link's target must exist with the ETag given: what the link keeps of it."""
        answer = subrequest(self.app, environ, "HEAD", location, query="symlink=get",
                            source="SYM")
        answer.close()
        if answer.status == 404:
            raise LinkError("X-Symlink-Target does not exist", location)
        if answer.status // 100 != 2:
            raise Refused(answer)
        found = answer.headers.get(ETAG) or answer.headers.get("etag", "").strip('"')
        if found != etag:
            raise LinkError(f"Object Etag {found!r} does not match X-Symlink-Target-Etag "
                            f"header {etag!r}", location)
        if not environ.get("CONTENT_TYPE"):
            environ["CONTENT_TYPE"] = without_params(answer.headers.get("content-type", ""),
                                                     *CONTENT_TYPE_PARAMS)
        return static_link(answer, etag)

    def copy_link(self, environ, start_response, version: str, source, target):
        """A copy with ``?symlink=get``: the link itself, with the metadata a copy takes (an
        object that is no link is copied as any object is)."""
        answer = subrequest(self.app, environ, "HEAD", object_url(version, source),
                            query="symlink=get", source="SYM")
        answer.close()
        if answer.status // 100 != 2 or TARGET not in answer.headers:
            return self.app(environ, start_response)
        stored = {name: answer.headers[sysmeta.lower()]
                  for name, sysmeta in (*CLIENT_TO_SYSMETA.items(),
                                        (TARGET_SLO_ETAG, TARGET_SLO_ETAG))
                  if sysmeta.lower() in answer.headers}
        env = target_environ(environ, version, target, answer)
        env.update({"wsgi.input": io.BytesIO(b""), "CONTENT_LENGTH": "0"})
        for header, value in link_metadata(stored).items():
            env[environ_key(header)] = value
        put = call(self.app, env)
        start_response(put.status_line, copied_from(put.header_list, source, target))
        return put.body

    def post(self, environ, start_response, path):
        """Metadata goes to the link itself; the 307 says where its target is."""
        if "HTTP_X_SYMLINK_TARGET" in environ:
            raise BadRequest("A PUT request is required to set a symlink target",
                             content_type=TEXT)
        answer = call(self.app, environ)
        if answer.status // 100 != 2 or TARGET not in answer.headers:
            start_response(answer.status_line, answer.header_list)
            return answer.body
        answer.close()
        account = from_wsgi(answer.headers.get(ACCOUNT, "")) or path[1]
        location = f"/{path[0]}/{account}/{from_wsgi(answer.headers[TARGET])}"
        body = (b"The requested POST was applied to a symlink. POST directly to the target "
                b"to apply requested metadata.")
        headers = [("Location", to_wsgi(location)), ("Content-Length", str(len(body))),
                   ("Content-Type", "text/html; charset=UTF-8")]
        if ETAG in answer.headers:
            headers.append(("X-Symlink-Target-Etag", answer.headers[ETAG]))
        start_response("307 Temporary Redirect", headers)
        return [body]


def static_link(target: Answer, etag: str) -> dict[str, str]:
    """What a static link keeps of its target's answer to a HEAD (not followed): the ETag
    it names, the size (an SLO's whole size, not its manifest's) and an SLO's ETag."""
    kept = {"X-Symlink-Target-Etag": etag,
            "X-Symlink-Target-Bytes": target.headers.get(BYTES)
            or target.headers.get(SLO_SIZE.lower())
            or target.headers.get("content-length", "0")}
    if SLO_ETAG.lower() in target.headers:
        kept[TARGET_SLO_ETAG] = target.headers[SLO_ETAG.lower()]
    return kept


def link_metadata(stored: dict[str, str]) -> dict[str, str]:
    """The system metadata of a link to what ``stored`` says (its ``X-Symlink-*`` headers,
    names quoted, and ``TARGET_SLO_ETAG``): where it points, and the same in the ETag its
    listing shows (an SLO's ETag as its ``slo_etag``, as Swift's)."""
    slo_etag = stored.get(TARGET_SLO_ETAG)
    links = {name: value for name, value in stored.items() if name != TARGET_SLO_ETAG}
    params = [f"{name.lower().replace('x-symlink-', 'symlink_').replace('-', '_')}={value}"
              for name, value in links.items()]
    metadata = {**{CLIENT_TO_SYSMETA[name]: value for name, value in links.items()},
                OVERRIDE_ETAG_HEADER: "; ".join(
                    [EMPTY_MD5, *([f"slo_etag={slo_etag}"] if slo_etag else []), *params])}
    if slo_etag:
        metadata[TARGET_SLO_ETAG] = slo_etag
    return metadata


def has_body(environ: dict) -> bool:
    length = environ.get("CONTENT_LENGTH")
    if length not in (None, ""):
        return length.strip() != "0"
    return bool(environ["wsgi.input"].read(1))


def with_client_headers(header_list: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """A link's answer with its target shown as the client's ``X-Symlink-*`` headers."""
    shown = {sysmeta.lower(): client for client, sysmeta in CLIENT_TO_SYSMETA.items()}
    return [*header_list, *((shown[k.lower()], v) for k, v in header_list
                            if k.lower() in shown)]
