"""The chunk store: one container (``volumebackups``) in the project's object-store
account, spoken to through the Swift API with the requesting user's token, as Cinder's
Swift backup driver does. The account URL comes from the block config
(``backup_object_store_url``) or else the catalog's ``object-store`` endpoint."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Protocol
from urllib.parse import quote

import requests
import urllib3

from soko.common.config import Config

RETRIES = 3


class StoreError(RuntimeError):
    """The object store refused or could not be reached; the message says which."""


class MissingObject(StoreError):
    pass


class ObjectStore(Protocol):
    def ensure_container(self) -> None: ...

    def put(self, name: str, *parts: bytes | bytearray) -> None:
        """Stores the parts, joined, as one object."""

    def get(self, name: str) -> bytes:
        """Raises ``MissingObject`` when there is no such object."""

    def delete(self, name: str) -> None:
        """Succeeds when the object is already gone."""

    def names(self, prefix: str) -> Iterator[str]: ...


def account_url(config: Config, project_id: str) -> str:
    """The project's Swift account URL: the configured one, else the catalog's."""
    from soko.identity.catalog import build_catalog

    base = config.section("block").backup_object_store_url
    if base:
        return f"{base.rstrip('/')}/v1/AUTH_{quote(project_id, safe='')}"
    for entry in build_catalog(config, project_id):
        if entry["type"] == "object-store":
            return next(e["url"] for e in entry["endpoints"] if e["interface"] == "internal")
    raise StoreError("no object store is configured for backups: set [block] "
                     "backup_object_store_url, or run the object proxy in the same config")


class Parts:
    """A body sent part after part with its Content-Length (requests streams an iterable
    that has a length): a chunk's header and its 16 MiB payload go out without being
    joined into a copy, which cost a backup 0.2 s of CPU per GiB. Iterable again for a
    retry."""

    def __init__(self, parts: tuple):
        self.parts = parts

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __iter__(self):
        return iter(self.parts)


class SwiftStore:
    """A Swift container through python-requests: one session per backup job, keeping a
    connection alive per worker (``connections``) so chunks do not pay for new ones."""

    def __init__(self, account_url: str, token: str, container: str, timeout: float = 60,
                 connections: int = 4):
        self.url = f"{account_url.rstrip('/')}/{quote(container)}"
        self.session = requests.Session()
        self.session.headers["X-Auth-Token"] = token
        adapter = requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=connections)
        self.session.mount("http://", adapter)
        self.session.mount("https://", adapter)
        self.timeout = timeout

    def request(self, method: str, name: str = "", ok=(200,), **kwargs) -> tuple[int, bytes]:
        """One call, retried on connection errors and 5xx (a node restarting): the status
        and the whole body, read in one piece (requests' ``.content`` reads a chunk in
        10 KiB steps, which cost a restore more CPU than verifying it)."""
        url = f"{self.url}/{quote(name)}" if name else self.url
        for attempt in range(RETRIES):
            try:
                resp = self.session.request(method, url, timeout=self.timeout, stream=True,
                                            **kwargs)
                body = resp.raw.read()  # to the end: the connection goes back to the pool
            except (requests.RequestException, urllib3.exceptions.HTTPError) as exc:
                error = f"cannot reach the object store at {url}: {exc.__class__.__name__}"
            else:
                if resp.status_code in ok:
                    return resp.status_code, body
                if resp.status_code == 404 and 404 not in ok:
                    raise MissingObject(f"{method} {name or 'container'}: 404 not found")
                error = f"{method} {name or 'container'}: object store answered " \
                        f"{resp.status_code} {body[:200].decode(errors='replace')}"
                if resp.status_code < 500:
                    raise StoreError(error)
            time.sleep(0.2 * (attempt + 1))
        raise StoreError(error)

    def ensure_container(self) -> None:
        self.request("PUT", ok=(201, 202))

    def put(self, name: str, *parts: bytes | bytearray) -> None:
        self.request("PUT", name, ok=(201,), data=parts[0] if len(parts) == 1 else Parts(parts),
                     headers={"Content-Type": "application/octet-stream"})

    def get(self, name: str) -> bytes:
        return self.request("GET", name)[1]

    def delete(self, name: str) -> None:
        self.request("DELETE", name, ok=(204, 404))

    def names(self, prefix: str) -> Iterator[str]:
        marker = ""
        while True:
            status, body = self.request("GET", params={"format": "json", "prefix": prefix,
                                                       "marker": marker}, ok=(200, 204))
            entries = json.loads(body) if status == 200 else []
            if not entries:
                return
            for entry in entries:
                yield entry["name"]
            marker = entries[-1]["name"]
