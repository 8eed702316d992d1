"""Who owns an account and what others may do there, as Swift decides it.

Owners: ``common/middleware/keystoneauth.py`` ``authorize`` — ``operator_roles`` (soko:
``admin``, ``member``) on the account's project make the owner (``swift_owner``); on a
``SERVICE_`` account only together with an ``X-Service-Token`` whose user holds one of
``SERVICE_service_roles`` (``service``); ``reseller_admin_role`` (``ResellerAdmin``) owns
every account. Anyone else, a ``reader`` of the same project included, is refused (403)
unless an ACL grants the request.

Account ACLs: ``common/middleware/tempauth.py`` (``extract_acl_and_report_errors`` for the
400s and their messages, ``authorize`` for the levels: read-only reads, read-write also
writes containers and objects but not the account, admin is an owner);
``proxy/controllers/account.py`` returns ``X-Account-Access-Control`` to owners only, and
``proxy/server.py`` ``swift_owner_headers`` are dropped from others' requests and answers.
Statuses checked against Swift 2.38 (tempauth) on this machine.
"""

from __future__ import annotations

import json
import uuid

import pytest
import requests

from tests.object.test_cluster import Api

pytestmark = [pytest.mark.privileged, pytest.mark.slow]

ACL = "X-Account-Access-Control"


def token(api: Api) -> str:
    return api.headers["X-Auth-Token"]


def error_text(r: requests.Response) -> str:
    """The error's message: Swift's plain-text body, or soko's JSON error around it."""
    try:
        return r.json()["error"]["message"]
    except ValueError:
        return r.text


def test_a_reader_of_the_project_is_not_its_owner(api, login, c):
    """Two users of one project: the member owns the account, the reader gets 403 on every
    listing and write until a container ACL grants it, by name or by its role."""
    reader = login("test:reader")
    assert reader.base == api.base
    for method, url in (("GET", api.base), ("HEAD", api.base), ("POST", api.base),
                        ("GET", c), ("HEAD", c), ("POST", c), ("DELETE", c),
                        ("PUT", f"{api.base}/by-reader-{uuid.uuid4().hex[:6]}"),
                        ("GET", f"{c}/obj"), ("PUT", f"{c}/new"), ("DELETE", f"{c}/obj")):
        assert reader.request(method, url).status_code == 403, (method, url)

    # A write-only ACL: PUT, but neither GET nor HEAD nor a listing.
    assert api.post(c, headers={"X-Container-Write": "test:reader"}).status_code == 204
    assert reader.put(f"{c}/dropped", data=b"in").status_code == 201
    assert [reader.get(f"{c}/dropped").status_code, reader.head(f"{c}/obj").status_code,
            reader.get(c).status_code] == [403, 403, 403]

    # A group naming a role reads, listings included; the ACLs stay the owner's to see.
    assert api.post(c, headers={"X-Container-Read": "reader"}).status_code == 204
    assert reader.get(f"{c}/obj").content == b"secret"
    assert reader.get(c).text == "dropped\nobj\n"
    assert "x-container-read" not in reader.head(c).headers
    assert reader.post(c, headers={"X-Container-Read": ".r:*"}).status_code == 403
    assert api.head(c).headers["X-Container-Read"] == "reader"


@pytest.fixture(scope="module")
def acct(login) -> Api:
    """An account of its own, so its account ACL touches no other test."""
    return login("acct:owner")


@pytest.fixture
def shared(acct) -> str:
    """A container in ``acct`` with an object, and no account ACL yet."""
    assert acct.post(acct.base, headers={ACL: ""}).status_code == 204
    url = f"{acct.base}/shared-{uuid.uuid4().hex[:6]}"
    assert acct.put(url, headers={"X-Container-Read": "nobody"}).status_code == 201
    assert acct.put(f"{url}/o", data=b"data").status_code == 201
    return url


def as_other(cluster, acct: Api) -> Api:
    return Api(acct.base, cluster.auth("other:otheruser")[1])


@pytest.mark.parametrize(("value", "error"), [
    ("notjson", "Syntax error in input ('notjson')"),
    ("[1]", "Syntax error in input ('[1]')"),
    ('{"foo": ["x"]}', 'Key "foo" not recognized'),
    ('{"admin": "x"}', 'Value for key "admin" must be a list'),
    ('{"read-only": [1]}', 'Elements of "read-only" list must be strings'),
])
def test_bad_account_acl_is_400_and_changes_nothing(cluster, acct, value, error):
    assert acct.post(acct.base, headers={ACL: '{"read-only": ["x:y"]}'}).status_code == 204
    for who in (acct, as_other(cluster, acct)):  # checked before who is asking (tempauth)
        r = who.post(acct.base, headers={ACL: value, "X-Account-Meta-Color": "blue"})
        assert r.status_code == 400
        assert error_text(r) == f"X-Account-Access-Control invalid: {error}\n\nInput: {value}\n"
    headers = acct.head(acct.base).headers
    assert headers[ACL] == '{"read-only":["x:y"]}' and "X-Account-Meta-Color" not in headers


def test_read_only_account_acl_reads_everything_and_writes_nothing(cluster, acct, shared):
    assert acct.post(acct.base, headers={
        ACL: '{"read-only": ["other:otheruser"], "admin": []}'}).status_code == 204
    assert acct.head(acct.base).headers[ACL] == '{"admin":[],"read-only":["other:otheruser"]}'
    them = as_other(cluster, acct)
    name = shared.rsplit("/", 1)[1]
    r = them.get(acct.base)
    assert r.status_code == 200 and name in r.text.split() and ACL not in r.headers
    assert not any(h.lower().startswith("x-account-sysmeta") for h in r.headers)
    r = them.get(shared)
    assert r.text == "o\n" and "X-Container-Read" not in r.headers
    assert them.get(f"{shared}/o").content == b"data"
    for method, url in (("PUT", f"{shared}/new"), ("POST", f"{shared}/o"),
                        ("DELETE", f"{shared}/o"), ("PUT", f"{acct.base}/by-other"),
                        ("POST", shared), ("DELETE", shared), ("POST", acct.base)):
        assert them.request(method, url).status_code == 403, (method, url)
    login_reader = Api(acct.base, cluster.auth("test:tester")[1])  # a user not named
    assert login_reader.get(shared).status_code == 403
    assert requests.get(f"{shared}/o", timeout=10).status_code == 401  # none for anonymous


def test_read_write_account_acl_writes_containers_and_objects_not_the_account(
        cluster, acct, shared):
    """The grantee here is a whole project (tempauth's account group): every user of it."""
    assert acct.post(acct.base, headers={ACL: '{"read-write": ["other"]}'}).status_code == 204
    them = as_other(cluster, acct)
    assert them.put(f"{shared}/new", data=b"new").status_code == 201
    assert them.post(f"{shared}/o", headers={"X-Object-Meta-A": "b"}).status_code == 202
    made = f"{acct.base}/made-{uuid.uuid4().hex[:6]}"
    r = them.put(made, headers={"X-Container-Read": ".r:*", "X-Container-Meta-A": "b"})
    assert r.status_code == 201
    assert them.post(made, headers={"X-Container-Write": "other:*"}).status_code == 204
    owner_view = acct.head(made).headers  # the owner's headers from others are dropped
    assert owner_view["X-Container-Meta-A"] == "b"
    assert "X-Container-Read" not in owner_view and "X-Container-Write" not in owner_view
    assert them.delete(made).status_code == 204
    assert "X-Container-Read" not in them.head(shared).headers
    assert them.post(acct.base, headers={"X-Account-Meta-A": "b"}).status_code == 403
    assert them.post(acct.base, headers={ACL: '{"admin": ["other"]}'}).status_code == 403
    assert acct.head(acct.base).headers[ACL] == '{"read-write":["other"]}'


def test_admin_account_acl_is_an_owner(cluster, acct, shared):
    assert acct.post(acct.base, headers={ACL: '{"admin": ["other:otheruser"]}'}) \
        .status_code == 204
    them = as_other(cluster, acct)
    assert them.head(acct.base).headers[ACL] == '{"admin":["other:otheruser"]}'
    assert them.head(shared).headers["X-Container-Read"] == "nobody"
    given = '{"admin": ["other:otheruser"], "read-only": ["test:reader"]}'
    assert them.post(acct.base, headers={ACL: given}).status_code == 204
    assert acct.head(acct.base).headers[ACL] == \
        '{"admin":["other:otheruser"],"read-only":["test:reader"]}'
    assert them.post(acct.base, headers={ACL: ""}).status_code == 204  # empty: removed
    assert ACL not in acct.head(acct.base).headers
    assert them.get(acct.base).status_code == 403


def test_info_advertises_account_acls(api):
    info = requests.get(api.base.split("/v1/")[0] + "/info", timeout=10).json()
    assert info["tempauth"] == {"account_acls": True}


def test_service_account_needs_the_users_and_a_services_token(api, login):
    """keystoneauth with ``reseller_prefix = AUTH_, SERVICE_`` and
    ``SERVICE_service_roles = service``: ``SERVICE_<project>`` is owned only by an operator
    of the project whose request also carries a token of a user with the service role."""
    service = {"X-Service-Token": token(login("svc:glance"))}
    url = api.base.replace("/AUTH_", "/SERVICE_")
    assert api.get(url).status_code == 403
    assert api.put(f"{url}/images", headers=service).status_code == 201
    assert api.get(url, headers=service).text == "images\n"
    for not_a_service in ("bogus", token(api)):
        assert api.get(url, headers={"X-Service-Token": not_a_service}).status_code == 403
    assert Api(url, service["X-Service-Token"]).get(url).status_code == 403  # it alone
    assert Api(url, token(login("test:reader"))).get(url, headers=service).status_code == 403
    assert api.get(api.base, headers={"X-Service-Token": "bogus"}).status_code == 200


def test_reseller_admin_owns_every_account(api, login, c):
    ops = Api(api.base, token(login("ops:reseller")))
    assert api.post(c, headers={"X-Container-Read": "nobody"}).status_code == 204
    assert ops.get(f"{c}/obj").content == b"secret"
    assert ops.head(c).headers["X-Container-Read"] == "nobody"
    assert ops.put(f"{c}/by-reseller", data=b"r").status_code == 201
    assert ops.get(api.base).status_code == 200
    assert ops.get(api.base.replace("/AUTH_", "/SERVICE_")).status_code in (200, 204)
    assert json.loads(ops.get(f"{c}?format=json").text)[0]["name"] == "by-reseller"
