"""Container ACLs as Swift's keystoneauth reads them, through the real proxy.

Grammar and stored form: ``common/middleware/acl.py`` ``clean_acl`` (what is refused and
with which message; everything without a ``.``-designator is a group and accepted).
Meanings: ``common/middleware/keystoneauth.py`` ``authorize``: ``<project>:<user>`` (ids,
names or ``*``) grants across projects; ``.r:`` referrer designations in order
(``acl.referrer_allowed``), listings only with ``.rlistings``; any other group is a role
name, and only for users of the account's own project; a denial is 401 without a token,
403 with one (``denied_response``).
"""

from __future__ import annotations

import pytest

from soko.object.proxy.acl import referrer_allowed
from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]


@pytest.mark.parametrize(("header", "given", "stored"), [
    ("X-Container-Read", "AUTH_0123abcd", "AUTH_0123abcd"),
    ("X-Container-Read", "other", "other"),
    ("X-Container-Read", "other:otheruser", "other:otheruser"),
    ("X-Container-Read", "bob , sue,,", "bob,sue"),
    ("X-Container-Read", ".r:*,.rlistings", ".r:*,.rlistings"),
    ("X-Container-Read", ".referrer : *", ".r:*"),
    ("X-Container-Read", ".ref:*.example.com, .r:-thief.example.com",
     ".r:.example.com,.r:-thief.example.com"),
    ("X-Container-Read", ".unknown", ".unknown"),
    ("X-Container-Write", "AUTH_0123abcd,other,*:*", "AUTH_0123abcd,other,*:*"),
])
def test_acl_syntax_swift_accepts_is_stored_cleaned(api, c, header, given, stored):
    assert api.post(c, headers={header: given}).status_code == 204
    assert api.head(c).headers[header] == stored


@pytest.mark.parametrize(("header", "given", "message"), [
    ("X-Container-Read", ".r:", "No host/domain value after referrer designation in ACL: '.r:'"),
    ("X-Container-Read", ".r:-", "No host/domain value after referrer designation in ACL: '.r:-'"),
    ("X-Container-Read", ".bogus:x", "Unknown designator '.bogus' in ACL: '.bogus:x'"),
    ("X-Container-Write", ".r:*", "Referrers not allowed in write ACL: '.r:*'"),
])
def test_acl_syntax_swift_refuses_is_400(api, c, header, given, message):
    r = api.put(c, headers={header: given})
    assert r.status_code == 400 and message in r.text
    assert header.lower() not in api.head(c).headers


def test_project_user_grants_and_bare_groups_do_not(api, other, cluster, c):
    """Across projects only ``<project>:<user>`` grants (keystoneauth's
    ``_authorize_cross_tenant``); a bare project name or account is a role name, which only
    users of the account's own project can hold."""
    for acl in ("other", "AUTH_x", "other:nobody"):
        api.post(c, headers={"X-Container-Read": acl})
        assert other.get(f"{c}/obj").status_code == 403, acl
    for acl in ("other:otheruser", "*:otheruser", "other:*", "*:*"):
        api.post(c, headers={"X-Container-Read": acl})
        assert other.get(f"{c}/obj").content == b"secret", acl
        assert other.get(c).text == "obj\n", acl  # a user grant reads listings too


def test_write_only_acl_puts_but_neither_reads_nor_lists(api, other, c):
    """A write ACL is checked for writes only; GET/HEAD and listings use the read ACL."""
    assert api.post(c, headers={"X-Container-Write": "other:otheruser"}).status_code == 204
    assert other.put(f"{c}/dropped", data=b"in").status_code == 201
    assert other.get(f"{c}/dropped").status_code == 403
    assert other.head(f"{c}/obj").status_code == 403
    assert other.get(c).status_code == 403
    assert api.get(f"{c}/dropped").content == b"in"


def test_referrer_designations_in_order(api, c):
    api.post(c, headers={"X-Container-Read": ".r:.example.com,.r:-thief.example.com"})
    anon = Api(api.base, None)
    assert anon.get(f"{c}/obj", headers={"Referer": "http://www.example.com/x"}).content \
        == b"secret"
    assert anon.get(f"{c}/obj", headers={"Referer": "http://thief.example.com/"}) \
        .status_code == 401
    assert anon.get(f"{c}/obj").status_code == 401
    assert anon.get(c, headers={"Referer": "http://www.example.com/"}).status_code == 401


def test_referrer_allowed_as_swift():
    """``acl.referrer_allowed``: later designations override earlier ones; ``-*`` denies
    nothing; no Referer is the host ``unknown``."""
    assert referrer_allowed("http://a.example.com/", ["*", "-.example.com", "a.example.com"])
    assert not referrer_allowed("http://a.example.com/", ["*", "-a.example.com"])
    assert referrer_allowed("http://x.org/", ["*", "-*"])
    assert not referrer_allowed(None, [".example.com"])
    assert not referrer_allowed("http://example.com/", [".example.com"])
