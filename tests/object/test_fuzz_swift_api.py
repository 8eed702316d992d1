"""Malformed input to every Swift API route through the real proxy: never a 5xx, never a
hang, and no change of state (listings, counts and the object's metadata stay as they were).

A table rather than random generation: every route (account, container, object) with every
method gets hostile names; each write gets the hostile headers that concern it; the reads
get hostile query parameters and ranges. A write must be refused (4xx); a read may answer
anything but a 5xx.
"""

from __future__ import annotations

import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.object.test_cluster import Api
from tests.support import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

METHODS = ("GET", "HEAD", "PUT", "POST", "DELETE", "COPY", "PATCH")
WRITES = {"PUT", "POST", "DELETE", "COPY"}
BAD_NAMES = ["%00", "a%00b", "a%FF", "%C0%AF", "%ED%A0%80", "%F4%90%80%80", "%FF%FE"]
NOT_INTEGERS = ["inf", "-inf", "Infinity", "NaN", "1e400", "1e10", "+1999999999",
                "1_999_999_999", "0x10", "1.5", "", "-", "-5"]
BAD_COPY_NAMES = ["%00", "{c}/%00", "{c}/a%FF", "{c}", "{c}/", "//{c}/x", "%FF/x",
                  "{c}/" + "n" * 1025, "n" * 257 + "/x"]
BAD_ACCOUNTS = ["", "a/b", "%FF", "%00", "A" * 300]
QUERIES = ["limit=-1", "limit=abc", "limit=99999999999999999999", "marker=%00",
           "marker=%FF", "end_marker=%FF", "prefix=%FF", "prefix=%00", "delimiter=%FF",
           "delimiter=ab", "format=bogus", "format=%00", "path=%00", "reverse=%FF",
           "multipart-manifest=bogus", "limit=1&limit=2&marker=%C0%AF"]
RANGES = ["bytes=zz", "bytes=5-2", "bytes=-0", "bytes=99999999999999999999999-",
          "bytes=" + "0-0," * 200 + "0-0", "bytes=" + "," * 1000, "items=0-1", "bytes=-"]


def snapshot(api: Api, container: str) -> dict:
    """What a client can see of the account, the fuzzed container and its object (the
    account's counts only for this container: other tests' updates may still arrive)."""
    account = api.get(f"{api.base}?format=json")
    obj = api.head(f"{api.base}/{container}/o")
    return {
        "account": {k: v for k, v in account.headers.items() if k.startswith("x-account-meta-")},
        "containers": [e["name"] for e in account.json()],
        "row": [e for e in account.json() if e["name"] == container],
        "container": {k: v for k, v in api.head(f"{api.base}/{container}").headers.items()
                      if k.startswith("x-container-")},
        "listing": api.get(f"{api.base}/{container}?format=json").json(),
        "object": {k: v for k, v in obj.headers.items()
                   if k.startswith(("x-object-meta-", "x-delete-at", "etag", "x-timestamp",
                                    "content-"))},
    }


def cases(api: Api, c: str):
    """(method, url, headers, body) of every malformed request."""
    root, acct = api.base.rsplit("/", 1)
    for bad in [*BAD_NAMES, "n" * 1025]:
        for method in METHODS:
            yield method, f"{root}/{bad}/{c}/o", {}, None
            yield method, f"{api.base}/{bad}", {}, None
            yield method, f"{api.base}/{c}/{bad}", {}, None
    for method in METHODS:
        yield method, f"{api.base}/{'n' * 257}", {}, None
        yield method, f"{api.base}/{'n' * 257}/o", {}, None
    obj = f"{api.base}/{c}/o"
    for value in NOT_INTEGERS:
        for header in ("X-Delete-At", "X-Delete-After"):
            yield "PUT", obj, {header: value}, b"x"
            yield "POST", obj, {header: value}, None
            yield "COPY", obj, {header: value, "Destination": f"{c}/copied"}, None
            yield "PUT", f"{obj}2", {header: value, "X-Copy-From": f"{c}/o"}, b""
    for name in BAD_COPY_NAMES:
        name = name.format(c=c)
        yield "COPY", obj, {"Destination": name}, None
        yield "PUT", f"{obj}2", {"X-Copy-From": name}, b""
    for account in BAD_ACCOUNTS:
        yield "COPY", obj, {"Destination": f"{c}/x", "Destination-Account": account}, None
        if account:  # an empty X-Copy-From-Account is none to Swift (the copy is made)
            yield "PUT", f"{obj}2", {"X-Copy-From": f"{c}/o", "X-Copy-From-Account": account}, b""
    too_many = {f"X-{{kind}}-Meta-K{i}": "v" for i in range(91)}
    for meta in ({"X-{kind}-Meta-" + "k" * 129: "v"}, {"X-{kind}-Meta-K": "v" * 257},
                 {"X-{kind}-Meta-": "v"}, too_many,
                 {f"X-{{kind}}-Meta-K{i}": "v" * 250 for i in range(20)}):
        for kind, method, url in (("Object", "PUT", obj), ("Object", "POST", obj),
                                  ("Container", "PUT", f"{api.base}/{c}"),
                                  ("Container", "POST", f"{api.base}/{c}"),
                                  ("Account", "POST", api.base)):
            headers = {k.format(kind=kind): v for k, v in meta.items()}
            yield method, url, headers, b"x" if kind == "Object" and method == "PUT" else None
    for headers in ({"If-None-Match": "abc"}, {"ETag": "0" * 32}):
        yield "PUT", obj, headers, b"x"
    for acl in (".bogus:x", ".r:", ".r:-", ".r:.", ".r:*,.bogus:x"):  # Swift refuses each
        yield "POST", f"{api.base}/{c}", {"X-Container-Read": acl}, None
        yield "POST", f"{api.base}/{c}", {"X-Container-Write": ".r:*"}, None
    for query in QUERIES:
        for url in (api.base, f"{api.base}/{c}", obj):
            for method in ("GET", "HEAD"):
                yield method, f"{url}?{query}", {}, None
    for value in RANGES:
        yield "GET", obj, {"Range": value}, None
    for headers in ({"X-Newest": "%FF"}, {"If-Match": "%00"}, {"If-Modified-Since": "never"},
                    {"Accept": "\xff/\xff"}):
        yield "GET", obj, headers, None


def test_malformed_requests_get_no_5xx_and_change_nothing(cluster):
    api = Api(*cluster.auth())
    c = f"fuzz-{uuid.uuid4().hex[:8]}"
    assert api.put(f"{api.base}/{c}").status_code == 201
    r = api.put(f"{api.base}/{c}/o", data=b"payload", headers={"X-Object-Meta-Keep": "1"})
    assert r.status_code == 201
    # Account stats follow a moment later, replica by replica: the snapshot to compare with
    # is one that counts the object, and so must be the last one (a lagging replica may
    # still answer in between, so the end waits for it as well)
    before = wait_for(lambda: (shot := snapshot(api, c))["row"][0]["count"] == 1 and shot,
                      what="the account to count the object")
    sessions = threading.local()

    def send(case) -> tuple | None:
        """The case and its answer if the answer is wrong."""
        method, url, headers, body = case
        if not hasattr(sessions, "api"):
            sessions.api = Api(api.base, api.headers["X-Auth-Token"])
        r = sessions.api.request(method, url, headers=headers, data=body, timeout=30)
        refused = 400 <= r.status_code < 500
        if r.status_code >= 500 or (method in WRITES and not refused):
            return method, url[-60:], str(headers)[:80], r.status_code, r.text[:120]
        return None

    all_cases = list(cases(api, c))
    with ThreadPoolExecutor(4) as pool:
        wrong = [w for w in pool.map(send, all_cases) if w]
    assert wrong == [], f"{len(wrong)} of {len(all_cases)} answered wrongly:\n" + "\n".join(
        map(str, wrong))
    wait_for(lambda: snapshot(api, c) == before, timeout=15,
             what="the account, container and object to be as before the requests")
