"""Image data in the object store, through the Swift API with the caller's own token.

Like Glance's multi-tenant Swift store, the image service holds no credential of its own:
an image's segments live in its owner's account (``AUTH_<project>``) and every request
carries the token of the user who asked, so the proxy enforces the same access as it would
for that user directly. Public images need no service credential either: they live in a
second container whose read ACL is ``*:*`` (any authenticated user of any project), so a
user of another project reads them with their own token, and nobody can write them but
the owner. A private image's container has no ACL, so only its project can read it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator
from urllib.parse import quote

import requests

from soko.common.errors import ServiceUnavailable

CHUNK = 1 << 20
PUBLIC_READ_ACL = "*:*"


class StoreError(ServiceUnavailable):
    """The object store refused or did not answer; the message says which request."""


class SwiftStore:
    def __init__(self, base_url: str, *, timeout: float = 60.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.http = requests.Session()

    def url(self, project_id: str, container: str, name: str = "") -> str:
        path = f"{self.base_url}/v1/AUTH_{project_id}/{quote(container)}"
        return f"{path}/{quote(name)}" if name else path

    def request(self, method: str, url: str, token: str, ok=(200, 201, 202, 204),
                **kwargs) -> requests.Response:
        headers = {"X-Auth-Token": token, **kwargs.pop("headers", {})}
        try:
            resp = self.http.request(method, url, headers=headers, timeout=self.timeout,
                                     **kwargs)
        except requests.RequestException as exc:
            raise StoreError(f"the object store did not answer {method} {url}: "
                             f"{exc.__class__.__name__}") from None
        if resp.status_code not in ok:
            resp.close()
            raise StoreError(f"the object store answered {method} {url} with "
                             f"{resp.status_code} {resp.reason}")
        return resp

    def ensure_container(self, token: str, project_id: str, container: str,
                         public: bool) -> None:
        headers = {"X-Container-Read": PUBLIC_READ_ACL} if public else {}
        self.request("PUT", self.url(project_id, container), token, headers=headers)

    def put(self, token: str, project_id: str, container: str, name: str,
            body: Iterable[bytes]) -> str:
        """Streams ``body`` into one object (chunked); returns the ETag (the MD5) it got."""
        url = self.url(project_id, container, name)
        resp = self.request("PUT", url, token, data=iter(body))
        return resp.headers.get("ETag", "").strip('"')

    def get(self, token: str, project_id: str, container: str, name: str,
            expected_md5: str | None = None) -> Iterator[bytes]:
        """The object's bytes in chunks; with ``expected_md5`` a mismatch raises at the end."""
        resp = self.request("GET", self.url(project_id, container, name), token, stream=True)
        md5 = hashlib.md5(usedforsecurity=False)
        with resp:
            for chunk in resp.iter_content(CHUNK):
                md5.update(chunk)
                yield chunk
        if expected_md5 is not None and md5.hexdigest() != expected_md5:
            raise StoreError(f"segment {name} came back with MD5 {md5.hexdigest()}, "
                             f"not {expected_md5}")

    def names(self, token: str, project_id: str, container: str, prefix: str) -> list[str]:
        """Every object name under ``prefix`` (pages through the listing)."""
        found: list[str] = []
        while True:
            params = {"format": "json", "prefix": prefix}
            if found:
                params["marker"] = found[-1]
            resp = self.request("GET", self.url(project_id, container), token,
                                ok=(200, 204, 404), params=params)
            page = resp.json() if resp.status_code == 200 and resp.content else []
            if not page:
                return found
            found += [item["name"] for item in page]

    def delete_prefix(self, token: str, project_id: str, container: str, prefix: str) -> int:
        """Deletes every object under ``prefix``, also ones a crashed upload left unrecorded."""
        names = self.names(token, project_id, container, prefix)
        for name in names:
            self.request("DELETE", self.url(project_id, container, name), token,
                         ok=(204, 404))
        return len(names)
