"""What the quota middlewares (``container_quotas``, ``account_quotas``) share: which
container an object write stores into and how many bytes it adds, the usage they check it
against, and how they refuse it.

They sit before the large-object layers, as in Swift's pipeline, so they see what the
client sent: a manifest PUT counts its manifest's bytes, a copy its source's whole size
(a large object's concatenation). A refused write is refused by the core only once it has
checked the caller may make it (``REFUSAL_KEY``): an anonymous caller gets its 401, not the
container's quota. A chunked upload counts as empty, as in Swift (it cannot be weighed before
it is stored); once the quota is reached, nothing more goes in.
"""

from __future__ import annotations

import dataclasses

from soko.common.errors import PayloadTooLarge
from soko.common.ttl_cache import TtlCache
from soko.object.middleware.copies import copy_request, object_url
from soko.object.middleware.subrequest import object_path, query_value, subrequest
from soko.object.proxy.access import INFO_READ_KEY, REFUSAL_KEY

HTML = "text/html; charset=UTF-8"
EXCEEDED = "Upload exceeds quota."
UPLOAD_KEY = "soko.quota.upload"
REMEMBERED = 10_000  # paths without a quota one worker keeps at most
NO_QUOTA = object()  # what a HEAD found of a path without a quota


@dataclasses.dataclass(frozen=True)
class Upload:
    """An object write: the account and container it stores into, and its size."""

    version: str
    account: str
    container: str
    size: int


def upload_of(app, environ: dict) -> Upload | None:
    """The upload an object PUT or COPY makes (None for any other request); worked out once
    per request (a copy's source HEADed once for both quotas)."""
    request = (environ["REQUEST_METHOD"], environ.get("PATH_INFO"))
    cached = environ.get(UPLOAD_KEY)  # sub-requests copy the environ: this request's?
    if cached is None or cached[0] != request:
        cached = environ[UPLOAD_KEY] = (request, weigh(app, environ))
    return cached[1]


def weigh(app, environ: dict) -> Upload | None:
    copy = copy_request(environ)
    if copy is not None:
        version, source, target = copy
        manifest = query_value(environ, "multipart-manifest") == "get"
        head = subrequest(app, environ, "HEAD", object_url(version, source), source="QUOTA",
                          query="multipart-manifest=get" if manifest else "")
        head.close()
        length = head.headers.get("content-length", "") if head.status == 200 else ""
        return Upload(version, target[0], target[1], int(length) if length.isdigit() else 0)
    path = object_path(environ)
    if path is None or environ["REQUEST_METHOD"] != "PUT":
        return None
    length = environ.get("CONTENT_LENGTH") or ""
    return Upload(*path[:3], int(length) if length.isdigit() else 0)


def is_whole_number(value: str | None) -> bool:
    return value is not None and value.isascii() and value.isdigit()


def exceeds(quota: str | None, used: str | None, adding: int) -> bool:
    """Whether ``used + adding`` goes over a quota that is set (a value that is not a whole
    number is no quota, as in Swift)."""
    return is_whole_number(quota) and int(used or 0) + adding > int(quota)


def refuse(environ: dict, upload: Upload) -> None:
    environ[REFUSAL_KEY] = ((upload.account, upload.container),
                            PayloadTooLarge(EXCEEDED, content_type=HTML))


class Usage:
    """Reads the usage and quotas of accounts or containers (HEAD, whatever the caller may
    read). Those found without any quota are remembered by this worker for ``ttl`` seconds,
    so a write into one (the usual case) costs no HEAD; one with a quota is read afresh for
    every write (writes at the same moment share one read), so it holds exactly. A quota set
    through this worker is seen at once, one set through another worker within ``ttl``
    (Swift's cached info: 60 s)."""

    def __init__(self, app, quota_headers: tuple[str, ...], ttl: float):
        self.app, self.quota_headers = app, quota_headers
        self.without_quota = TtlCache(ttl, limit=REMEMBERED)

    def read(self, environ: dict, url: str) -> dict[str, str] | None:
        """The headers of ``url`` (lower-case names), None if it has no quota or is not
        there (the core answers the write then)."""
        found = self.without_quota.get(url, lambda: self.head(environ, url),
                                       keep=lambda found: found is NO_QUOTA)
        return None if found is NO_QUOTA else found

    def head(self, environ: dict, url: str) -> dict[str, str] | object | None:
        answer = subrequest(self.app, {**environ, INFO_READ_KEY: True}, "HEAD", url,
                            source="QUOTA")
        answer.close()
        if answer.status // 100 != 2:
            return None
        if not any(name in answer.headers for name in self.quota_headers):
            return NO_QUOTA
        return answer.headers

    def forget(self, url: str) -> None:
        self.without_quota.forget(url)
