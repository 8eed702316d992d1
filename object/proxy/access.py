"""Who may do what on the Swift API: the one place the proxy decides access.

The rules are Swift's ``keystoneauth`` (soko's tokens are Keystone's: a project, a user,
roles), with the account ACLs of Swift's ``tempauth`` added (keystoneauth has none):

- an account is ``<prefix><project id>`` for each reseller prefix (``AUTH_``, ``SERVICE_``);
- its owner (Swift's ``swift_owner``: may set ACLs, sees them) is a user of that project
  holding an operator role (``admin`` or ``member``), and, on a prefix that names service
  roles (``SERVICE_`` → ``service``), whose request also carries an ``X-Service-Token`` of a
  user holding one; a reseller-admin role owns every account;
- anyone else needs a grant: a container ACL (``acl``: ``<project>:<user>``, referrers,
  or, for users of the account's own project, a role name), or an account ACL
  (``read-only``: reads; ``read-write``: reads, and writes to containers and objects;
  ``admin``: everything the owner may do); ``project_reader_roles`` (none by default, as in
  Swift) read everything in their project's accounts.

A request without a token may also carry a ``SignedGrant``: a TempURL or FormPost
signature checked by its middleware (``object/middleware/signatures.py``), which then acts
with the rights of the key's account within the key's scope, and never more (``signed``).

A denial is 401 without a token and 403 with one.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NoReturn

import falcon

from soko.common.auth import AuthContext, TokenValidator
from soko.common.errors import Forbidden, Unauthorized
from soko.object.middleware.subrequest import SOURCE_KEY  # set on sub-requests only
from soko.object.proxy.acl import account_acl_level, grants_user, parse_acl, referrer_allowed

# Keys a middleware sets in a request's environ (in-process only: no client can):
# - a HEAD asking what a middleware must know whatever the caller may read (a quota's
#   usage; Swift's pre-auth ``get_container_info``), answered as to the owner;
INFO_READ_KEY = "soko.info_read"
# - ``((account, container), error)``: a write into that container is refused with the error
#   once the caller is known to be allowed it (Swift's quota middlewares wrap
#   ``swift.authorize`` so), so a caller who may not write learns nothing from it.
REFUSAL_KEY = "soko.refused_write"
# Swift's ``swift_owner_headers``: only an owner sees them or sets them.
OWNER_HEADERS = ("x-container-read", "x-container-write", "x-container-sync-key",
                 "x-container-sync-to", "x-account-meta-temp-url-key",
                 "x-account-meta-temp-url-key-2", "x-container-meta-temp-url-key",
                 "x-container-meta-temp-url-key-2", "x-account-access-control")


# Where a middleware that checked a signature puts its ``SignedGrant`` (a client cannot set
# an environ key); sub-requests of the middlewares below carry it too.
GRANT_ENVIRON_KEY = "soko.signed_grant"


@dataclasses.dataclass(frozen=True)
class SignedGrant:
    """What a valid signature lets a request without a token do, as the key's owner would.

    The scope is the key's: ``container`` of ``account`` (a container's key), or any
    container of it (``container`` None: the account's key), as Swift's TempURL scopes it.
    The signed request itself is pinned by its middleware to the signed object (or prefix);
    the middlewares below it may reach other objects in scope (an SLO's segments), but only
    to read unless the signature was for a write, a container only to list it for a
    middleware (a DLO's segments), never the account. ``keys_lookup``: the signature
    middleware's own HEAD of the account and container for their keys, as their owner.
    """

    account: str
    container: str | None
    write: bool = False
    keys_lookup: bool = False


@dataclasses.dataclass(frozen=True)
class AccessRules:
    """The proxy's access settings (role names compare case-insensitively, as in Swift)."""

    reseller_prefixes: tuple[str, ...] = ("AUTH_", "SERVICE_")
    operator_roles: frozenset[str] = frozenset({"admin", "member"})
    service_roles: dict[str, frozenset[str]] = dataclasses.field(
        default_factory=lambda: {"SERVICE_": frozenset({"service"})})
    reseller_admin_roles: frozenset[str] = frozenset({"reselleradmin", "admin"})
    project_reader_roles: frozenset[str] = frozenset()

    @classmethod
    def from_section(cls, section) -> AccessRules:
        def lowered(roles) -> frozenset[str]:
            return frozenset(role.lower() for role in roles)

        return cls(tuple(section.reseller_prefixes), lowered(section.operator_roles),
                   {prefix: lowered(roles) for prefix, roles in section.service_roles.items()},
                   lowered(section.reseller_admin_roles),
                   lowered(section.project_reader_roles))

    def prefix_of(self, account: str) -> str | None:
        return next((p for p in self.reseller_prefixes if account.startswith(p)), None)


class Access:
    def __init__(self, rules: AccessRules, validator: TokenValidator):
        self.rules = rules
        self.validator = validator

    def service_roles(self, req: falcon.Request) -> frozenset[str]:
        """The roles of the ``X-Service-Token`` user; a token that does not validate adds
        none (as Swift's tempauth ignores it)."""
        token = req.get_header("X-Service-Token")
        if not token:
            return frozenset()
        try:
            return frozenset(role.lower() for role in self.validator.validate(token).roles)
        except Unauthorized:
            return frozenset()

    def own_project(self, auth: AuthContext, account: str) -> bool:
        return any(account == prefix + auth.project_id for prefix in self.rules.reseller_prefixes)

    def is_owner_by_roles(self, req: falcon.Request, account: str) -> bool:
        """Owner without looking at any ACL: a reseller admin, or an operator of the
        account's project (with a service token where the prefix asks for one)."""
        if req.method == "HEAD" and req.env.get(INFO_READ_KEY):
            return True
        auth = req.context.auth
        if auth is None:
            return False
        roles = {role.lower() for role in auth.roles}
        if roles & self.rules.reseller_admin_roles:
            return True
        if not self.own_project(auth, account) or not roles & self.rules.operator_roles:
            return False
        needed = self.rules.service_roles.get(self.rules.prefix_of(account))
        return not needed or bool(needed & self.service_roles(req))

    def decide(self, req: falcon.Request, account: str, *, write: bool, container: bool,
               obj: bool, acl: str | None, account_acl: Callable[[], str | None]) -> bool:
        """Whether the caller owns the account for this request; raises if it may not make
        it. ``acl`` is the container ACL that applies (None for account requests and
        container writes); ``account_acl`` reads the stored account ACL, only if needed."""
        return self.is_owner_by_roles(req, account) or self.granted(
            req, account, write=write, container=container, obj=obj, acl=acl,
            account_acl=account_acl)

    def granted(self, req: falcon.Request, account: str, *, write: bool, container: bool,
                obj: bool, acl: str | None, account_acl: Callable[[], str | None]) -> bool:
        """``decide`` for a caller who is not the owner by roles: an ACL must grant it."""
        auth = req.context.auth
        ours = self.rules.prefix_of(account) is not None  # one of the reseller prefixes
        if auth is None and not ours:
            deny(req)
        referrers, groups = parse_acl(acl)
        if auth is not None and grants_user(groups, auth):
            return False
        by_referrer = referrer_allowed(req.referer, referrers)
        if by_referrer and (obj or ".rlistings" in groups):
            return False
        if auth is None or not ours:
            deny(req)
        roles = {role.lower() for role in auth.roles}
        if self.own_project(auth, account) and not write \
                and roles & self.rules.project_reader_roles:
            return False  # keystoneauth's project_reader_roles: reads, never owns
        if not by_referrer and self.own_project(auth, account) \
                and roles & {group.lower() for group in groups}:
            return False
        level = account_acl_level(account_acl(), auth)
        if level == "admin":
            return True
        if (level == "read-write" and (container or not write)) \
                or (level == "read-only" and not write):
            return False
        deny(req)

    def signed(self, req: falcon.Request, grant: SignedGrant, account: str,
               container: str | None, *, write: bool, obj: bool) -> bool:
        """``decide`` for a request under a ``SignedGrant`` (raises if it may not): whether
        it sees the owner's headers, which only the key look-up does."""
        same_container = container is not None and container == grant.container
        if grant.keys_lookup:
            if req.method == "HEAD" and account == grant.account and (
                    container is None or same_container):
                return True
            deny(req)
        in_scope = account == grant.account and container is not None and (
            grant.container is None or same_container)
        if not in_scope or (write and not grant.write) or not (
                obj or (not write and SOURCE_KEY in req.env)):
            deny(req)
        return False


def signed_grant(req: falcon.Request) -> SignedGrant | None:
    """The request's grant, if it carries no token (a token's own rights come first)."""
    return req.env.get(GRANT_ENVIRON_KEY) if req.context.auth is None else None


def deny(req: falcon.Request) -> NoReturn:
    if req.context.auth is None:
        raise Unauthorized("This request needs a token (X-Auth-Token) or a container ACL.")
    raise Forbidden("This token may not do that on this account.")
