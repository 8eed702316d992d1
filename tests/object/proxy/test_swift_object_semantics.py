"""Object semantics Swift's clients rely on, through the real proxy and storage nodes: ranges,
preconditions, server-side copy, ``X-If-Delete-At`` and POST's ``Content-Type``.

Each expected answer is what Swift 2.38 answered to the same request (the reference on
:18080); where Swift defines it is cited per test. Error bodies are left to the error tests.
"""

from __future__ import annotations

import hashlib
import time
import uuid

import pytest

from soko.object.shared.timestamps import Timestamp
from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

BODY = b"0123456789"
ETAG = hashlib.md5(BODY).hexdigest()
PAST, FUTURE = "Sat, 01 Jan 2000 00:00:00 GMT", "Fri, 01 Jan 2100 00:00:00 GMT"


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(*cluster.auth())


@pytest.fixture(scope="module")
def other(cluster, api) -> Api:
    return Api(cluster.auth("other:otheruser")[0], cluster.auth("other:otheruser")[1])


def new_container(api: Api) -> str:
    url = f"{api.base}/sem-{uuid.uuid4().hex[:8]}"
    assert api.put(url).status_code == 201
    return url


def in_account(url: str) -> str:
    """``<container>/<object>`` of an object's URL, as copy headers name it."""
    return url.split("/v1/", 1)[1].split("/", 1)[1]


@pytest.fixture(scope="module")
def c(api) -> str:
    return new_container(api)


@pytest.fixture(scope="module")
def obj(api, c) -> str:
    """A 10-byte text object with metadata, read (never changed) by the read tests."""
    url = f"{c}/digits"
    assert api.put(url, data=BODY, headers={
        "Content-Type": "text/plain", "X-Object-Meta-Color": "red",
        "Content-Disposition": "inline"}).status_code == 201
    return url


# -- ranges: swift/common/swob.py Range and Range.ranges_for_length -------------------------

@pytest.mark.parametrize(("header", "status", "body"), [
    ("bytes = 0-4", 206, b"01234"),  # spaces anywhere are dropped
    ("bytes=0- 4", 206, b"01234"),
    ("Bytes=0-4", 206, b"01234"),
    ("bytes=-20", 206, BODY),  # a suffix longer than the object is all of it
    ("bytes=9-100,20-30", 206, b"9"),  # unsatisfiable parts of a set are dropped
    ("bytes=1-2,-0", 206, b"12"),
    ("bytes=0-4,,6-7", 200, BODY),  # one malformed part: the header is ignored
    ("bytes=4-2", 200, BODY),
    ("bytes=5-3,7-8", 200, BODY),
    ("bytes=a-b", 200, BODY),
    ("bytes=-", 200, BODY),
    ("bytes=0-4;x", 200, BODY),
    ("foo=0-4", 200, BODY),
    ("bytes=-0", 416, None),
    ("bytes=20-30,40-50", 416, None),
    ("bytes=0-5,1-6,2-7", 416, None),  # more than 2 overlapping ranges
    ("bytes=9-9,8-8,7-7,6-6,5-5,4-4,3-3,2-2", 416, None),  # 8 out of order
    ("bytes=" + ",".join(["0-0"] * 51), 416, None),  # more than 50
])
def test_range_header_as_swift_parses_it(api, obj, header, status, body):
    r = api.get(obj, headers={"Range": header})
    assert r.status_code == status, r.text
    if body is not None:
        assert r.content == body
    if status == 416:  # swob: the object's headers and where it ends
        assert r.headers["Content-Range"] == "bytes */10"
        assert r.headers["ETag"] == ETAG and r.headers["Accept-Ranges"] == "bytes"
    assert api.head(obj, headers={"Range": header}).headers["Content-Length"] == "10"


def test_ranges_of_an_empty_object(api, c):
    """swob: a suffix of nothing is the whole (empty) body; a first byte is past its end."""
    api.put(f"{c}/empty", data=b"")
    r = api.get(f"{c}/empty", headers={"Range": "bytes=-5"})
    assert r.status_code == 200 and r.content == b""
    r = api.get(f"{c}/empty", headers={"Range": "bytes=0-5"})
    assert r.status_code == 416 and r.headers["Content-Range"] == "bytes */0"


def test_multipart_byteranges_framed_as_swift(api, obj):
    """``swob.Response._prepare_for_ranges`` / ``multi_range_iterator``: no CRLF after the
    closing boundary, and Content-Length counts exactly that."""
    r = api.get(obj, headers={"Range": "bytes=0-4, 6-7"})
    assert r.status_code == 206
    kind, _, boundary = r.headers["Content-Type"].partition(";boundary=")
    assert kind == "multipart/byteranges" and len(boundary) == 32
    assert r.content == (
        f"--{boundary}\r\nContent-Type: text/plain\r\nContent-Range: bytes 0-4/10\r\n\r\n"
        f"01234\r\n--{boundary}\r\nContent-Type: text/plain\r\n"
        f"Content-Range: bytes 6-7/10\r\n\r\n67\r\n--{boundary}--").encode()
    assert int(r.headers["Content-Length"]) == len(r.content)


# -- preconditions: swob.Response._get_conditional_response_status --------------------------

@pytest.mark.parametrize(("headers", "status"), [
    ({"If-Match": ETAG, "If-Unmodified-Since": PAST}, 412),  # both are checked
    ({"If-Match": "nope", "If-Unmodified-Since": FUTURE}, 412),
    ({"If-Match": "nope", "If-None-Match": ETAG}, 304),  # If-None-Match comes first
    ({"If-None-Match": f"a, {ETAG}"}, 304),
    ({"If-None-Match": f'"a", "{ETAG}"'}, 304),
    ({"If-None-Match": "*"}, 304),
    ({"If-None-Match": "a, b"}, 200),
    ({"If-None-Match": "a", "If-Modified-Since": FUTURE}, 304),  # both are checked
    ({"If-Modified-Since": FUTURE, "If-Unmodified-Since": PAST}, 304),
    ({"If-Modified-Since": "garbage"}, 200),  # no date: ignored
    ({"If-Modified-Since": "Sun, 99 Foo 2000 99:99:99 GMT"}, 200),
    ({"If-Unmodified-Since": "garbage"}, 200),
    ({"If-Match": f'W/"{ETAG}"'}, 412),  # a weak tag matches nothing
    ({"If-Match": f'"{ETAG}"'}, 200),
    ({"If-Match": "*"}, 200),
    ({"If-Match": "x", "Range": "bytes=20-"}, 412),  # before the range
    ({"If-None-Match": ETAG, "Range": "bytes=0-1"}, 304),
])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_preconditions_in_swift_order(api, obj, method, headers, status):
    r = api.request(method, obj, headers=headers)
    assert r.status_code == status
    if status == 200:
        assert r.headers["Content-Length"] == "10"
        return
    # No body; the object's ETag and metadata; a 304 its type, a 412 no Accept-Ranges.
    assert r.content == b"" and r.headers["Content-Length"] == "0"
    assert r.headers["ETag"] == ETAG and r.headers["X-Object-Meta-Color"] == "red"
    assert r.headers["Content-Disposition"] == "inline" and "Last-Modified" in r.headers
    if status == 304:
        assert r.headers["Content-Type"] == "text/plain" and "Accept-Ranges" in r.headers
    else:
        assert "Accept-Ranges" not in r.headers


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_if_match_star_on_no_object_is_412(api, c, method):
    """RFC 7232 3.1, as swob does for a 404 (``If-None-Match: *`` stays 404)."""
    assert api.request(method, f"{c}/absent", headers={"If-Match": "*"}).status_code == 412
    assert api.request(method, f"{c}/absent", headers={"If-None-Match": "*"}).status_code == 404


# -- copy: swift/common/middleware/copy.py ----------------------------------------------

def test_copy_keeps_source_metadata_under_the_requests(api, c, obj):
    """``handle_PUT``: the source's metadata and system headers, then the request's; the
    source's type unless the request gives one; the answer says where from and echoes the
    new object's metadata (``_create_response_headers``)."""
    dest = new_container(api)
    r = api.request("COPY", obj, headers={"Destination": f"{dest.rsplit('/', 1)[1]}/a%20b",
                                          "X-Object-Meta-Size": "xl"})
    assert r.status_code == 201 and r.headers["ETag"] == ETAG
    assert r.headers["X-Copied-From"] == f"{c.rsplit('/', 1)[1]}/digits"
    assert r.headers["X-Copied-From-Account"] == api.account
    assert r.headers["X-Copied-From-Last-Modified"] == api.head(obj).headers["Last-Modified"]
    assert r.headers["X-Object-Meta-Color"] == "red" and r.headers["X-Object-Meta-Size"] == "xl"
    assert "Content-Disposition" not in r.headers
    copied = api.get(f"{dest}/a b")
    assert copied.content == BODY and copied.headers["Content-Type"] == "text/plain"
    assert copied.headers["Content-Disposition"] == "inline"
    assert copied.headers["X-Object-Meta-Color"] == "red"

    r = api.put(f"{dest}/fresh", headers={"X-Copy-From": in_account(obj),
                                          "X-Fresh-Metadata": "true", "Content-Type": "text/x",
                                          "X-Object-Meta-Only": "this", "Content-Length": "0"})
    assert r.status_code == 201 and "X-Object-Meta-Color" not in r.headers
    head = api.head(f"{dest}/fresh").headers
    assert head["Content-Type"] == "text/x" and head["X-Object-Meta-Only"] == "this"
    assert "X-Object-Meta-Color" not in head and "Content-Disposition" not in head


def test_copy_answer_names_the_source_percent_encoded(api, c):
    """``_create_response_headers``: ``wsgi_quote`` of the source, so a non-ASCII or spaced
    name reaches the client intact."""
    api.put(f"{c}/%C3%BC%20x", data=b"abc")
    name = c.rsplit("/", 1)[1]
    r = api.request("COPY", f"{c}/%C3%BC%20x", headers={"Destination": f"{name}/copy-%C3%BC"})
    assert r.status_code == 201 and r.headers["X-Copied-From"] == f"{name}/%C3%BC%20x"
    assert api.get(f"{c}/copy-%C3%BC").content == b"abc"
    r = api.put(f"{c}/inm", data=b"x", headers={"If-None-Match": "abc"})
    assert r.status_code == 400 and "If-None-Match only supports *" in r.text


def test_copy_with_a_range_copies_that_range(api, c, obj):
    """copy.py: "PUT with both X-Copy-From and Range, Swift will make a partial copy"."""
    source = in_account(obj)
    r = api.request("COPY", obj, headers={"Destination": f"{source}-part", "Range": "bytes=2-4"})
    assert r.status_code == 201 and r.headers["ETag"] == hashlib.md5(b"234").hexdigest()
    assert api.get(f"{obj}-part").content == b"234"
    api.put(f"{obj}-tail", headers={"X-Copy-From": source, "Range": "bytes=-3",
                                    "Content-Length": "0"})
    assert api.get(f"{obj}-tail").content == b"789"
    # The source's answer when it is not a 2xx: a precondition or range it does not meet.
    assert api.request("COPY", obj, headers={"Destination": f"{source}-x",
                                             "If-Match": "nope"}).status_code == 412
    assert api.request("COPY", obj, headers={"Destination": f"{source}-x",
                                             "Range": "bytes=20-"}).status_code == 416
    assert api.head(f"{obj}-x").status_code == 404


def test_copy_onto_itself_and_of_an_expiring_object(api, c):
    api.put(f"{c}/self", data=b"abc", headers={"X-Object-Meta-A": "1",
                                               "X-Delete-At": str(int(time.time()) + 3600)})
    delete_at = api.head(f"{c}/self").headers["X-Delete-At"]
    name = c.rsplit("/", 1)[1]
    r = api.request("COPY", f"{c}/self", headers={"Destination": f"{name}/self",
                                                  "X-Object-Meta-B": "2"})
    assert r.status_code == 201 and r.headers["X-Delete-At"] == delete_at
    head = api.head(f"{c}/self").headers
    assert (head["X-Object-Meta-A"], head["X-Object-Meta-B"]) == ("1", "2")
    assert head["X-Delete-At"] == delete_at
    assert api.get(f"{c}/self").content == b"abc"
    # The copy's own expiry, checked as a PUT's (proxy/controllers/obj.py).
    later = {"Destination": f"{name}/later"}
    r = api.request("COPY", f"{c}/self", headers={**later, "X-Delete-After": "abc"})
    assert r.status_code == 400 and "Non-integer X-Delete-After" in r.text
    r = api.request("COPY", f"{c}/self", headers={**later, "X-Delete-After": "60"})
    assert r.status_code == 201 and abs(int(r.headers["X-Delete-At"]) - time.time() - 60) < 5
    assert api.head(f"{c}/later").headers["X-Delete-At"] == r.headers["X-Delete-At"]


def test_copy_needs_an_empty_body(api, c, obj):
    source = in_account(obj)
    r = api.put(f"{c}/with-body", data=b"abc", headers={"X-Copy-From": source})
    assert r.status_code == 400 and "Copy requests require a zero byte body" in r.text
    assert api.head(f"{c}/with-body").status_code == 404


def test_cross_account_copy(api, other, obj):
    """The source is read before the target is written (the copy middleware GETs it, then
    PUTs): a missing source is 404 even where the caller may not write; an account the
    caller may not read or write is 403; a container ACL granting it makes the copy 201."""
    theirs = new_container(other)
    name = theirs.rsplit("/", 1)[1]
    assert other.put(f"{theirs}/o", data=b"abc", headers={"X-Object-Meta-O": "1"}).status_code == 201
    to_them = {"Destination": f"{name}/copied", "Destination-Account": other.account}
    assert api.request("COPY", obj, headers=to_them).status_code == 403
    assert api.request("COPY", f"{obj}-absent", headers=to_them).status_code == 404
    from_them = {"X-Copy-From": f"{name}/o", "X-Copy-From-Account": other.account,
                 "Content-Length": "0"}
    assert api.put(f"{obj}-theirs", headers=from_them).status_code == 403
    # An empty X-Copy-From-Account is no account: the caller's own (where there is no such).
    assert api.put(f"{obj}-theirs", headers={**from_them, "X-Copy-From-Account": ""}
                   ).status_code == 404

    other.post(theirs, headers={"X-Container-Read": "test:tester",
                                "X-Container-Write": "test:tester"})
    r = api.request("COPY", obj, headers=to_them)
    assert r.status_code == 201 and r.headers["X-Copied-From-Account"] == api.account
    assert other.get(f"{theirs}/copied").content == BODY
    r = api.put(f"{obj}-theirs", headers=from_them)
    assert r.status_code == 201 and r.headers["X-Copied-From-Account"] == other.account
    assert r.headers["X-Copied-From"] == f"{name}/o" and r.headers["X-Object-Meta-O"] == "1"
    assert api.get(f"{obj}-theirs").content == b"abc"
    assert api.put(f"{obj}-theirs", headers={**from_them, "X-Copy-From": f"{name}/absent"}
                   ).status_code == 404


# -- X-If-Delete-At: swift/obj/server.py DELETE --------------------------------------------

def test_if_delete_at_guards_a_delete(api, c):
    at = str(int(time.time()) + 3600)
    api.put(f"{c}/expiring", data=b"x", headers={"X-Delete-At": at})
    api.put(f"{c}/lasting", data=b"x")
    for value in ("abc", "", "1e999"):
        r = api.delete(f"{c}/expiring", headers={"X-If-Delete-At": value})
        assert r.status_code == 400 and "Bad X-If-Delete-At header value" in r.text
    for name, value in (("expiring", "123"), ("lasting", at)):
        r = api.delete(f"{c}/{name}", headers={"X-If-Delete-At": value})
        assert r.status_code == 412 and "X-If-Delete-At and X-Delete-At do not match" in r.text
        assert api.head(f"{c}/{name}").status_code == 200
    assert api.delete(f"{c}/never", headers={"X-If-Delete-At": at}).status_code == 404
    assert api.delete(f"{c}/expiring", headers={"X-If-Delete-At": f"{at}.0"}).status_code == 204
    assert api.head(f"{c}/expiring").status_code == 404
    # A tombstone has no X-Delete-At: it is not deleted again.
    assert api.delete(f"{c}/expiring", headers={"X-If-Delete-At": at}).status_code == 412
    # X-Delete-At/-After mean nothing to a DELETE, even bad ones.
    assert api.delete(f"{c}/lasting", headers={"X-Delete-At": "abc"}).status_code == 204


# -- POST: swift/obj/server.py POST (fast-post) ---------------------------------------------

def test_post_replaces_metadata_and_may_set_the_type(api, c):
    url = f"{c}/posted"
    api.put(url, data=b"abc", headers={"Content-Type": "text/a", "X-Object-Meta-A": "1",
                                       "Content-Disposition": "inline"})
    etag = hashlib.md5(b"abc").hexdigest()
    put_time = api.head(url).headers["X-Timestamp"]
    assert api.post(url, headers={"Content-Type": "text/b"}).status_code == 202
    head = api.head(url).headers
    assert head["Content-Type"] == "text/b" and head["ETag"] == etag
    assert head["Content-Length"] == "3" and "X-Object-Meta-A" not in head
    assert "Content-Disposition" not in head
    # A POST modifies the object: its time is the POST's, in the listing too.
    assert float(head["X-Timestamp"]) > float(put_time)
    listing = api.get(f"{c}?format=json&prefix=posted").json()
    assert [(e["content_type"], e["hash"], e["bytes"]) for e in listing] == [("text/b", etag, 3)]
    assert listing[0]["last_modified"] == Timestamp.parse(head["X-Timestamp"]).last_modified_iso
    # A POST without a type (or an empty one) keeps the one a POST set.
    api.post(url, headers={"X-Object-Meta-B": "2"})
    api.post(url, headers={"Content-Type": "", "X-Object-Meta-B": "3"})
    head = api.head(url).headers
    assert head["Content-Type"] == "text/b" and head["X-Object-Meta-B"] == "3"
    assert api.get(url).content == b"abc"
    assert api.post(f"{c}/absent", headers={"Content-Type": "text/b"}).status_code == 404
