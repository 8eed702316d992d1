"""``object/proxy/access.py`` on its own: the keystoneauth steps no cluster is needed for."""

from __future__ import annotations

import falcon.testing
import pytest

from soko.common.auth import AuthContext
from soko.common.errors import Forbidden
from soko.object.proxy.access import Access, AccessRules


def reader_request() -> falcon.Request:
    req = falcon.Request(falcon.testing.create_environ())
    req.context.auth = AuthContext("u1", "bob", "p1", "proj", frozenset({"reader"}), 0.0)
    return req


def granted(access: Access, account: str, acl: str | None = None, write: bool = False) -> bool:
    """True if allowed (not as the owner); Forbidden if refused."""
    return access.granted(reader_request(), account, write=write, container=True, obj=True,
                          acl=acl, account_acl=lambda: None) is False


def test_group_is_a_role_of_the_accounts_own_project():
    """keystoneauth's last step: a group matching one of the user's roles (any case) grants,
    but only on an account of the user's own project."""
    access = Access(AccessRules(), validator=None)
    assert granted(access, "AUTH_p1", "Reader") and granted(access, "SERVICE_p1", "reader")
    for account, acl in (("AUTH_p2", "Reader"), ("AUTH_p1", "proj"), ("AUTH_p1", None)):
        with pytest.raises(Forbidden):
            granted(access, account, acl)


def test_project_reader_roles_read_their_project_and_never_write():
    """keystoneauth's ``project_reader_roles`` (empty by default, as soko's): GET/HEAD on
    the project's accounts without being their owner."""
    access = Access(AccessRules(project_reader_roles=frozenset({"reader"})), validator=None)
    assert granted(access, "AUTH_p1") and granted(access, "SERVICE_p1")
    for account, write in (("AUTH_p1", True), ("AUTH_p2", False)):
        with pytest.raises(Forbidden):
            granted(access, account, write=write)
