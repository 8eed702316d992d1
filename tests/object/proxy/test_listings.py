"""Account and container listings and stats as Swift answers them, through the real proxy.

Where each expected answer comes from (Swift's source, openstack/swift master):
``common/middleware/listing_formats.py`` (formats, content types, XML shape, HEAD),
``account/utils.py`` (account listing entries, ``storage_policy``), ``common/request_helpers.py``
``constrain_req_limit`` (``limit``), ``container/backend.py`` ``list_objects_iter``
(``path``, ``delimiter``, ``end_marker``, ``reverse``), ``container/server.py`` HEAD/GET
(``Last-Modified`` from the put timestamp), ``proxy/controllers/base.py`` (``X-Storage-Policy``).
"""

from __future__ import annotations

import uuid

import pytest
import requests
import swiftclient

from soko.object.shared.timestamps import Timestamp
from tests.object.test_cluster import Api
from tests.support import wait_for

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.fixture(scope="module")
def api(cluster) -> Api:
    return Api(*cluster.auth())


@pytest.fixture
def prefix() -> str:
    return f"l{uuid.uuid4().hex[:6]}-"


@pytest.fixture
def filled(api, prefix) -> str:
    """A container with a small tree of objects: its URL."""
    url = f"{api.base}/{prefix}c"
    assert api.put(url).status_code == 201
    for name in ("a", "b/1", "b/2", "b/", "c::x", "c::y", "d/e/f", "d/g"):
        assert api.put(f"{url}/{name}", data=b"x").status_code == 201
    return url


def names(r: requests.Response) -> list[str]:
    assert r.status_code == 200, r.text
    return [e.get("name", e.get("subdir")) for e in r.json()]


def test_new_container_is_listed_and_counted_at_once(api, prefix):
    """Swift updates the account during the container PUT (the container server's
    ``account_update`` before it answers), so the very next listing has it."""
    for i in range(8):
        before = int(api.head(api.base).headers["x-account-container-count"])
        assert api.put(f"{api.base}/{prefix}{i}").status_code == 201
        listed = names(api.get(api.base, params={"format": "json", "prefix": prefix}))
        assert f"{prefix}{i}" in listed
        assert int(api.head(api.base).headers["x-account-container-count"]) == before + 1
    assert api.delete(f"{api.base}/{prefix}0").status_code == 204
    assert f"{prefix}0" not in names(api.get(api.base, params={"format": "json",
                                                               "prefix": prefix}))


def test_account_metadata_set_returned_and_removed(cluster, api):
    """``X-Account-Meta-*`` on POST is stored and returned on HEAD and GET;
    ``X-Remove-Account-Meta-*`` removes it (Swift's ``transfer_headers``)."""
    conn = swiftclient.Connection(f"{cluster.proxy_url}/auth/v1.0", "test:tester",
                                  "testing123", retries=0)
    conn.post_account({"X-Account-Meta-Subject": "Literature"})
    assert conn.head_account()["x-account-meta-subject"] == "Literature"
    assert conn.get_account()[0]["x-account-meta-subject"] == "Literature"
    assert api.post(api.base, headers={"X-Remove-Account-Meta-Subject": "x"}).status_code == 204
    assert "x-account-meta-subject" not in api.head(api.base).headers


def test_bad_account_metadata_is_400(api):
    """Swift's ``check_metadata`` on account POST."""
    r = api.post(api.base, headers={"X-Account-Meta-" + "n" * 129: "v"})
    assert r.status_code == 400 and "Metadata name too long" in r.text


def test_container_last_modified_is_its_put_time(api, filled):
    """Container HEAD and GET: ``Last-Modified`` is the put timestamp, rounded up to the
    second (``container/server.py``: ``resp.last_modified = Timestamp(X-PUT-Timestamp)``).
    Swift's proxy does not pass ``X-Put-Timestamp`` on; a container PUT once was made then."""
    for method in ("HEAD", "GET"):
        r = api.request(method, filled)
        expected = Timestamp.parse(r.headers["x-timestamp"]).http_date
        assert r.headers["last-modified"] == expected


def test_reverse_end_marker_and_limit(api, filled):
    listed = names(api.get(filled, params={"format": "json", "reverse": "true"}))
    assert listed == ["d/g", "d/e/f", "c::y", "c::x", "b/2", "b/1", "b/", "a"]
    assert names(api.get(filled, params={"format": "json", "end_marker": "b/2"})) == [
        "a", "b/", "b/1"]
    assert names(api.get(filled, params={"format": "json", "reverse": "on",
                                         "marker": "c::x", "end_marker": "b/"})) == [
        "b/2", "b/1"]
    assert names(api.get(filled, params={"format": "json", "limit": "2"})) == ["a", "b/"]


def test_limit_above_the_cap_is_412_and_junk_limit_is_ignored(api, filled):
    """``constrain_req_limit``: over 10000 is ``412 Maximum limit is 10000``; a limit
    that is not all digits is ignored (the default applies), not an error."""
    for url in (filled, api.base):
        r = api.get(url, params={"limit": "10001"})
        assert r.status_code == 412 and "Maximum limit is 10000" in r.text
        assert api.get(url, params={"limit": "10000", "format": "json"}).status_code == 200
    assert len(names(api.get(filled, params={"format": "json", "limit": "-1"}))) == 8
    assert len(names(api.get(filled, params={"format": "json", "limit": "abc"}))) == 8


def test_multi_character_delimiter(api, filled):
    """``list_objects_iter`` finds the delimiter as a string: ``::`` rolls ``c::x`` and
    ``c::y`` into the subdir ``c::``."""
    assert names(api.get(filled, params={"format": "json", "delimiter": "::"})) == [
        "a", "b/", "b/1", "b/2", "c::", "d/e/f", "d/g"]
    assert names(api.get(filled, params={"format": "json", "delimiter": "/",
                                         "reverse": "true"})) == ["d/", "c::y", "c::x",
                                                                   "b/", "a"]


def test_path_lists_one_level(api, filled):
    """The legacy ``path=``: prefix ``path/``, delimiter ``/``, deeper names skipped (no
    subdir entries), ``path`` itself left out."""
    assert names(api.get(filled, params={"format": "json", "path": "d"})) == ["d/g"]
    assert names(api.get(filled, params={"format": "json", "path": "b/"})) == ["b/1", "b/2"]
    assert names(api.get(filled, params={"format": "json", "path": ""})) == [
        "a", "b/", "c::x", "c::y"]


def test_account_prefix_and_delimiter(api, prefix):
    for name in ("x.1", "x.2", "y"):
        assert api.put(f"{api.base}/{prefix}{name}").status_code == 201
    listed = api.get(api.base, params={"format": "json", "prefix": prefix, "delimiter": "."})
    assert names(listed) == [f"{prefix}x.", f"{prefix}y"]
    assert listed.json()[0] == {"subdir": f"{prefix}x."}
    assert names(api.get(api.base, params={"format": "json", "prefix": prefix,
                                           "reverse": "true", "end_marker": f"{prefix}x.2"})) \
        == [f"{prefix}y"]


@pytest.mark.parametrize(("fmt", "accept", "content_type"), [
    (None, None, "text/plain; charset=utf-8"),
    ("plain", None, "text/plain; charset=utf-8"),
    ("json", None, "application/json; charset=utf-8"),
    ("xml", None, "application/xml; charset=utf-8"),
    (None, "application/json", "application/json; charset=utf-8"),
    (None, "text/xml", "text/xml; charset=utf-8"),
    (None, "application/json;q=0.5, text/plain", "text/plain; charset=utf-8"),
    ("bogus", "application/json", "text/plain; charset=utf-8"),
])
def test_listing_content_types_on_get_and_head(api, filled, fmt, accept, content_type):
    """``get_listing_content_type``: ``format=`` wins over ``Accept`` (an unknown format is
    plain), else ``Accept``'s best match among text/plain, application/json,
    application/xml, text/xml; always ``; charset=utf-8``, HEAD as GET."""
    params = {"format": fmt} if fmt else {}
    headers = {"Accept": accept} if accept else {}
    for url in (filled, api.base):
        for method in ("GET", "HEAD"):
            r = api.request(method, url, params=params, headers=headers)
            assert r.headers["content-type"] == content_type, (method, url)
            if fmt is None:
                assert r.headers["vary"] == "Accept"


def test_head_is_204_with_accept_ranges(api, filled):
    """As Swift's API reference shows account and container HEAD: ``204`` with
    ``Accept-Ranges: bytes`` (set by the proxy's ``GetOrHeadHandler``), on GET too."""
    for url in (filled, api.base):
        r = api.head(url)
        assert r.status_code == 204 and r.headers["accept-ranges"] == "bytes"
        assert api.get(url).headers["accept-ranges"] == "bytes"


def test_unacceptable_and_bad_accept(api, filled):
    assert api.get(filled, headers={"Accept": "image/png"}).status_code == 406
    assert api.get(filled, headers={"Accept": "garbage"}).status_code == 400


def test_empty_listings(api, prefix):
    """Plain: 204 with the plain content type; JSON ``[]``; XML an empty element."""
    url = f"{api.base}/{prefix}empty"
    api.put(url)
    r = api.get(url)
    assert r.status_code == 204 and r.headers["content-type"] == "text/plain; charset=utf-8"
    assert api.get(url, params={"format": "json"}).text == "[]"
    assert api.get(url, params={"format": "xml"}).text == (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<container name="{prefix}empty" />')


def test_unicode_names_in_all_three_formats(api, prefix):
    """JSON escapes non-ASCII (``json.dumps(...).encode('ascii')``); plain and XML carry
    UTF-8 (``listing_to_text``, ElementTree with ``encoding='UTF-8'``); XML escapes ``&``,
    ``<``, ``>`` in text and ``"`` in the name attribute."""
    container = f"{prefix}é&\"<"
    url = f"{api.base}/{container}"
    assert api.put(url).status_code == 201
    obj = "ünï/cødé&<>"
    put = api.put(f"{url}/{obj}", data=b"12345", headers={"Content-Type": "text/plain"})
    assert put.status_code == 201
    r = api.get(url, params={"format": "json"})
    assert "\\u00fcn\\u00ef/c\\u00f8d\\u00e9&<>" in r.text and r.json()[0]["name"] == obj
    assert api.get(url).content == obj.encode() + b"\n"
    entry = r.json()[0]
    xml = api.get(url, params={"format": "xml"}).content.decode()
    assert xml == (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<container name="{prefix}é&amp;&quot;&lt;"><object>'
        "<name>ünï/cødé&amp;&lt;&gt;</name>"
        f"<hash>{entry['hash']}</hash><bytes>5</bytes>"
        f"<content_type>{entry['content_type']}</content_type>"
        f"<last_modified>{entry['last_modified']}</last_modified></object></container>")
    listing = api.get(api.base, params={"format": "json", "prefix": prefix})
    assert "\\u00e9" in listing.text and listing.json()[0]["name"] == container
    assert api.get(api.base, params={"prefix": prefix}).content == container.encode() + b"\n"


def test_account_listing_entries_and_xml(api, prefix):
    """``account/utils.py``: each container entry is ``name, count, bytes, last_modified,
    storage_policy`` (the policy's name); the XML puts each ``<container>`` and the
    subdirs on their own line (``doc.text = '\\n'``, ``sub.tail = '\\n'``)."""
    for name in ("a", "s.1"):
        api.put(f"{api.base}/{prefix}{name}")
    api.put(f"{api.base}/{prefix}a/obj", data=b"abc")
    # object counts reach the account a moment later (Swift's container updater too)
    entry = wait_for(lambda: next(iter(
        e for e in api.get(api.base, params={"format": "json", "prefix": f"{prefix}a"}).json()
        if e["count"] == 1), None), what="the object counted in the account listing")
    assert list(entry) == ["name", "count", "bytes", "last_modified", "storage_policy"]
    assert (entry["count"], entry["bytes"], entry["storage_policy"]) == (1, 3, "Policy-0")
    head = api.head(api.base).headers  # account/utils.py get_response_headers, per policy
    policy = "x-account-storage-policy-policy-0-"
    assert head[f"{policy}container-count"] == head["x-account-container-count"]
    assert head[f"{policy}object-count"] == head["x-account-object-count"]
    assert head[f"{policy}bytes-used"] == head["x-account-bytes-used"]
    expected = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<account name="{api.account}">\n'
        f"<container><name>{prefix}a</name><count>1</count><bytes>3</bytes>"
        f"<last_modified>{entry['last_modified']}</last_modified>"
        "<storage_policy>Policy-0</storage_policy></container>\n"
        f'<subdir name="{prefix}s." />\n</account>')
    # polled too: another account replica may hear of the object a moment later
    wait_for(lambda: api.get(api.base, params={"format": "xml", "prefix": prefix,
                                               "delimiter": "."}).text == expected,
             what="the XML listing")


def test_storage_policy_on_containers(api, prefix):
    """The container's policy by name on HEAD and GET (``X-Storage-Policy``: Swift's
    default policy, when swift.conf names none, is ``Policy-0``); a name no policy has is
    ``400 Invalid X-Storage-Policy '<name>'``, and no container is made; names match
    case-insensitively (``StoragePolicyCollection.get_by_name``)."""
    url = f"{api.base}/{prefix}p"
    assert api.put(url, headers={"X-Storage-Policy": "gold"}).status_code == 400
    assert api.head(url).status_code == 404
    assert api.put(url, headers={"X-Storage-Policy": "policy-0"}).status_code == 201
    for method in ("HEAD", "GET"):
        assert api.request(method, url).headers["x-storage-policy"] == "Policy-0"


def test_info_publishes_swift_constraints(cluster):
    """``/info`` as Swift's proxy registers it (``common/constraints.py``
    DEFAULT_CONSTRAINTS, ``StoragePolicy.get_info``)."""
    info = requests.get(f"{cluster.proxy_url}/info", timeout=10).json()["swift"]
    assert info["auto_create_account_prefix"] == "."
    assert info["max_request_line"] == 8192
    assert info["valid_api_versions"] == ["v1", "v1.0"]
    assert info["policies"] == [{"name": "Policy-0", "aliases": "Policy-0", "default": True}]


def test_v1_0_is_served_as_v1(api):
    """``valid_api_versions`` includes ``v1.0``: the same account under ``/v1.0/``."""
    legacy = api.base.replace("/v1/", "/v1.0/")
    assert api.head(legacy).headers["x-account-container-count"] == \
        api.head(api.base).headers["x-account-container-count"]
