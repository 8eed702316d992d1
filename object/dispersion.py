"""How completely the cluster holds its replicas, measured as swift-dispersion-report does.

``populate`` puts a sample of containers and objects through the Swift API, one per
partition until ``coverage`` percent of the ring's partitions are covered. ``report`` finds
them again (by listing) and asks every primary node named by the rings directly (``HEAD``
on the internal API, never through the proxy, which would hide a missing copy): the share
of them with every replica present, and how many copies are missing.
"""

from __future__ import annotations

import json
import math
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import requests

from soko.object.shared.nodeclient import ConnectionPool, backend_path

OBJECTS_CONTAINER = "dispersion_objects"
CONTAINER_PREFIX = "dispersion_"
HEAD_THREADS = 16


def authenticate(auth_url: str, user: str, key: str) -> tuple[str, str]:
    """Tempauth v1: the storage URL and a token."""
    resp = requests.get(auth_url, headers={"X-Auth-User": user, "X-Auth-Key": key}, timeout=30)
    if resp.status_code // 100 != 2:
        raise DispersionError(f"auth at {auth_url} as {user} failed: {resp.status_code}")
    return resp.headers["X-Storage-Url"], resp.headers["X-Auth-Token"]


class DispersionError(RuntimeError):
    """The sample could not be written or read through the Swift API."""


def sample_names(ring, account: str, container: str | None, prefix: str,
                 coverage: float) -> list[str]:
    """Names that land in distinct partitions, enough to cover ``coverage`` % of them."""
    wanted = max(1, math.ceil(ring.partition_count * coverage / 100))
    names, seen = [], set()
    i = 0
    while len(names) < wanted and i < 100 * ring.partition_count:
        name = f"{prefix}{i}"
        part = ring.get_part(account, container, name) if container else ring.get_part(
            account, name)
        if part not in seen:
            seen.add(part)
            names.append(name)
        i += 1
    return names


def populate(rings: dict, storage_url: str, token: str, coverage: float,
             progress=lambda: None) -> dict[str, int]:
    """PUTs the sample containers and objects; ``progress()`` is called after each."""
    account = urllib.parse.unquote(storage_url.rstrip("/").rsplit("/", 1)[1])
    session = requests.Session()
    session.headers["X-Auth-Token"] = token

    def put(path: str, data: bytes | None = None) -> None:
        resp = session.put(f"{storage_url}/{urllib.parse.quote(path)}", data=data, timeout=60)
        if resp.status_code // 100 != 2:
            raise DispersionError(f"PUT {path}: {resp.status_code} {resp.text[:200]}")
        progress()

    containers = sample_names(rings["container"], account, None, CONTAINER_PREFIX + "c_",
                              coverage)
    for name in containers:
        put(name)
    put(OBJECTS_CONTAINER)
    objects = sample_names(rings["object"], account, OBJECTS_CONTAINER, "o_", coverage)
    for name in objects:
        put(f"{OBJECTS_CONTAINER}/{name}", name.encode())
    return {"containers": len(containers), "objects": len(objects)}


def listing(session: requests.Session, url: str, prefix: str = "") -> list[str]:
    names: list[str] = []
    while True:
        resp = session.get(url, params={"format": "json", "prefix": prefix,
                                        "marker": names[-1] if names else ""}, timeout=60)
        if resp.status_code == 404:
            return names
        if resp.status_code // 100 != 2:
            raise DispersionError(f"listing {url}: {resp.status_code}")
        page = [entry.get("name") for entry in json.loads(resp.text or "[]")]
        if not page:
            return names
        names += page


def count_copies(ring, kind: str, pool: ConnectionPool, names: list[tuple]) -> dict:
    """HEADs every primary of every name: how many are complete, copies missing, errors."""

    def copies(name: tuple) -> tuple[int, int, int]:
        part, nodes = ring.get_nodes(*name)
        found = errors = 0
        for node in nodes:
            try:
                status, _, _ = pool.request(node, "HEAD", backend_path(kind, node, part, *name),
                                            {})
            except OSError:
                errors += 1
                continue
            found += status // 100 == 2
            errors += status >= 500
        return found, len(nodes), errors

    with ThreadPoolExecutor(HEAD_THREADS) as executor:
        results = list(executor.map(copies, names))
    replicas = int(ring.replica_count)
    missing = {str(m): 0 for m in range(1, replicas + 1)}
    for found, expected, _ in results:
        if expected - found:
            missing[str(expected - found)] += 1
    total_copies = sum(r[1] for r in results)
    found_copies = sum(r[0] for r in results)
    complete = sum(1 for found, expected, _ in results if found == expected)
    return {
        "sampled": len(results),
        "all_replicas_pct": round(100.0 * complete / len(results), 2) if results else 0.0,
        "copies_found": found_copies,
        "copies_expected": total_copies,
        "copies_found_pct": round(100.0 * found_copies / total_copies, 2)
        if total_copies else 0.0,
        "missing": missing,  # number of samples missing 1, 2, ... copies
        "node_errors": sum(r[2] for r in results),
    }


def report(rings: dict, storage_url: str, token: str, pool: ConnectionPool) -> dict:
    """Dispersion of the populated sample, for containers and for objects."""
    account = urllib.parse.unquote(storage_url.rstrip("/").rsplit("/", 1)[1])
    session = requests.Session()
    session.headers["X-Auth-Token"] = token
    containers = [c for c in listing(session, storage_url, CONTAINER_PREFIX + "c_")]
    objects = listing(session, f"{storage_url}/{OBJECTS_CONTAINER}")
    if not objects and not containers:
        raise DispersionError("no dispersion sample found: run with --populate first")
    return {
        "containers": count_copies(rings["container"], "container", pool,
                                   [(account, c) for c in containers]),
        "objects": count_copies(rings["object"], "object", pool,
                                [(account, OBJECTS_CONTAINER, o) for o in objects]),
    }
