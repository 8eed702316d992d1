"""Who may see which row, and finding the rows a caller may see: one by id, or all of a kind.

A row the caller may not see is missing to them (404, never 403: another project's ids are
not revealed), and each resource keeps Neutron's own 404 message, which clients match.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from soko.common.auth import AuthContext
from soko.common.db import session_scope
from soko.common.errors import NotFound
from soko.net.models import (
    FloatingIP,
    Network,
    Port,
    Router,
    SecurityGroup,
    SecurityGroupRule,
    Subnet,
)


def owned(auth: AuthContext, row) -> bool:
    return auth.is_admin or row.project_id == auth.project_id


def privileged(auth: AuthContext) -> bool:
    """Admin, or a service's user (compute's): Neutron's ADMIN_OR_SERVICE, which may see
    and bind any project's port and read and set its ``binding:*`` attributes."""
    return auth.is_admin or "service" in auth.roles


def visible(auth: AuthContext, network: Network) -> bool:
    """A network is seen by its project, and by every project when shared or external."""
    return (auth.is_admin or network.project_id == auth.project_id or network.shared
            or network.external)


@dataclass(frozen=True)
class Finder:
    model: type
    missing: str  # Neutron's 404 message, ``{}`` standing for the id
    may_see: Callable[[AuthContext, Any], bool] = owned

    def one(self, s: Session, auth: AuthContext, row_id: str):
        row = s.get(self.model, row_id)
        if row is None or not self.may_see(auth, row):
            raise NotFound(self.missing.format(row_id))
        return row

    def all(self, s: Session, auth: AuthContext) -> list:
        rows = s.scalars(select(self.model).order_by(self.model.created_at))
        return [row for row in rows if self.may_see(auth, row)]

    def get(self, sessions: sessionmaker[Session], auth: AuthContext, row_id: str):
        with session_scope(sessions) as s:
            return self.one(s, auth, row_id)

    def list(self, sessions: sessionmaker[Session], auth: AuthContext) -> list:
        with session_scope(sessions) as s:
            return self.all(s, auth)


NETWORKS = Finder(Network, "Network {} could not be found.", visible)
SUBNETS = Finder(Subnet, "Subnet {} could not be found.",
                 lambda auth, subnet: visible(auth, subnet.network))
PORTS = Finder(Port, "Port {} could not be found.",
               lambda auth, port: privileged(auth) or owned(auth, port))
ROUTERS = Finder(Router, "Router {} could not be found")
FLOATING_IPS = Finder(FloatingIP, "Floating IP {} could not be found")
SECURITY_GROUPS = Finder(SecurityGroup, "Security group {} does not exist")
SECURITY_GROUP_RULES = Finder(SecurityGroupRule, "Security group rule {} does not exist")
