"""Security groups and their rules, as Neutron shapes them.

Every project has a ``default`` group, made the first time the project needs one: egress
to anywhere, ingress only from members of the same group. A port made without
``security_groups`` joins it. (Enforcing the rules on the host comes with the per-port
iptables chains; the API and its state are here.)
"""

from __future__ import annotations

import ipaddress

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from soko.common.auth import AuthContext
from soko.common.db import session_scope
from soko.common.errors import BadRequest, Conflict
from soko.net.fields import Body, is_uuid, new_id
from soko.net.lookups import SECURITY_GROUP_RULES, SECURITY_GROUPS
from soko.net.models import Port, SecurityGroup, SecurityGroupRule

PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1}
DIRECTIONS = ("ingress", "egress")


def default_rules(group: SecurityGroup) -> list[SecurityGroupRule]:
    def rule(direction: str, remote_group: str | None) -> SecurityGroupRule:
        return SecurityGroupRule(id=new_id(), project_id=group.project_id, direction=direction,
                                 ethertype="IPv4", remote_group_id=remote_group)

    return [rule("egress", None), rule("ingress", group.id)]


def ensure_default_group(s: Session, project_id: str) -> SecurityGroup:
    """The project's ``default`` group, made on first use. A racing request that made it
    first wins: the unique ``default_of`` lets only one commit, and this one then reads it."""
    group = s.scalars(select(SecurityGroup).where(SecurityGroup.default_of == project_id)).first()
    if group is not None:
        return group
    group = SecurityGroup(id=new_id(), project_id=project_id, name="default",
                          description="Default security group", default_of=project_id)
    group.rules = default_rules(group)
    try:
        with s.begin_nested():
            s.add(group)
    except IntegrityError:
        return s.scalars(select(SecurityGroup)
                         .where(SecurityGroup.default_of == project_id)).one()
    return group


def check_groups(s: Session, auth: AuthContext, group_ids: object) -> None:
    if not isinstance(group_ids, list) or not all(is_uuid(g) for g in group_ids):
        raise BadRequest("Invalid input for security_groups. Reason: a list of UUIDs is "
                         "expected.")
    for group_id in group_ids:
        SECURITY_GROUPS.one(s, auth, group_id)


class SecurityGroupManager:
    def __init__(self, *, sessions: sessionmaker[Session], agent):
        self.sessions = sessions
        self.agent = agent  # rules change: the host's firewall follows

    def list_groups(self, auth: AuthContext) -> list[SecurityGroup]:
        with session_scope(self.sessions) as s:
            ensure_default_group(s, auth.project_id)
            return SECURITY_GROUPS.all(s, auth)

    def create_group(self, auth: AuthContext, raw: object) -> SecurityGroup:
        body = Body(raw, "security_group", {"name", "description"})
        name = body.text("name")
        if name == "default":
            raise Conflict("Default security group already exists (the name 'default' is "
                           "reserved).")
        with session_scope(self.sessions) as s:
            project = body.project(auth)
            ensure_default_group(s, project)
            group = SecurityGroup(id=new_id(), project_id=project, name=name,
                                  description=body.text("description"))
            # Neutron gives a new group egress-to-anywhere rules; ingress is closed.
            group.rules = [r for r in default_rules(group) if r.direction == "egress"]
            s.add(group)
            s.flush()
            return group

    def update_group(self, auth: AuthContext, group_id: str, raw: object) -> SecurityGroup:
        body = Body(raw, "security_group", {"name", "description"})
        with session_scope(self.sessions) as s:
            group = SECURITY_GROUPS.one(s, auth, group_id)
            if "name" in body:
                if group.default_of is not None or body.text("name") == "default":
                    raise Conflict("The default security group cannot be renamed, and no other "
                                   "group may be named 'default'.")
                group.name = body.text("name")
            if "description" in body:
                group.description = body.text("description")
            return group

    def delete_group(self, auth: AuthContext, group_id: str) -> None:
        with session_scope(self.sessions) as s:
            group = SECURITY_GROUPS.one(s, auth, group_id)
            if group.default_of is not None and not auth.is_admin:
                raise Conflict("Removing the default security group is not allowed.")
            users = [p.id for p in s.scalars(select(Port).where(Port.project_id
                                                                == group.project_id))
                     if group_id in p.security_groups]
            if users:
                raise Conflict(f"Security Group {group_id} in use by {len(users)} port(s).")
            s.delete(group)

    # -- rules --------------------------------------------------------------------------

    def list_rules(self, auth: AuthContext) -> list[SecurityGroupRule]:
        return [rule for group in self.list_groups(auth) for rule in group.rules]

    def create_rule(self, auth: AuthContext, raw: object) -> SecurityGroupRule:
        body = Body(raw, "security_group_rule", {
            "security_group_id", "direction", "ethertype", "protocol", "port_range_min",
            "port_range_max", "remote_ip_prefix", "remote_group_id", "description"})
        rule = SecurityGroupRule(id=new_id(), security_group_id=body.uuid("security_group_id"),
                                 description=body.text("description"), **rule_fields(body))
        with session_scope(self.sessions) as s:
            group = SECURITY_GROUPS.one(s, auth, rule.security_group_id)
            if rule.remote_group_id is not None:
                SECURITY_GROUPS.one(s, auth, rule.remote_group_id)
            rule.project_id = group.project_id
            mine = ("direction", "ethertype", "protocol", "port_range_min", "port_range_max",
                    "remote_ip_prefix", "remote_group_id")
            for other in group.rules:
                if all(getattr(other, f) == getattr(rule, f) for f in mine):
                    raise Conflict(f"Security group rule already exists. Rule id is "
                                   f"{other.id}.")
            s.add(rule)
        self.agent.firewall_changed()
        return rule

    def delete_rule(self, auth: AuthContext, rule_id: str) -> None:
        with session_scope(self.sessions) as s:
            s.delete(SECURITY_GROUP_RULES.one(s, auth, rule_id))
        self.agent.firewall_changed()


def rule_fields(body: Body) -> dict:
    direction = body.get("direction", None)
    if direction not in DIRECTIONS:
        raise BadRequest(f"Invalid input for direction. Reason: {direction} is not in "
                         f"{list(DIRECTIONS)}.")
    if body.get("ethertype", "IPv4") != "IPv4":
        raise BadRequest("Invalid input for ethertype. Reason: only IPv4 is supported.")
    protocol = body.get("protocol", None)
    if protocol is not None:
        by_number = {str(number): name for name, number in PROTOCOLS.items()}
        protocol = by_number.get(str(protocol).lower(), str(protocol).lower())
        if protocol not in PROTOCOLS:
            raise BadRequest(f"Security group rule protocol {body.get('protocol')} not "
                             f"supported. Only protocol values {sorted(PROTOCOLS)} and integer "
                             "representations [1, 6, 17] are supported.")
    low, high = body.get("port_range_min", None), body.get("port_range_max", None)
    for field, value in (("port_range_min", low), ("port_range_max", high)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value <= 65535):
            raise BadRequest(f"Invalid input for {field}. Reason: '{value}' is not a port.")
    if (low is not None or high is not None) and protocol not in ("tcp", "udp", "icmp"):
        raise BadRequest("Must also specify protocol if port range is given.")
    if protocol in ("tcp", "udp") and low is not None and high is not None and low > high:
        raise BadRequest("For TCP/UDP protocols, port_range_min must be <= port_range_max")
    prefix, remote_group = body.get("remote_ip_prefix", None), body.get("remote_group_id", None)
    if prefix is not None and remote_group is not None:
        raise BadRequest("Only remote_ip_prefix or remote_group_id may be provided.")
    if prefix is not None:
        try:
            prefix = str(ipaddress.IPv4Network(prefix, strict=False))
        except (ValueError, TypeError):
            raise BadRequest(f"Invalid input for remote_ip_prefix. Reason: '{prefix}' is not "
                             "an IPv4 CIDR.") from None
    if remote_group is not None and not is_uuid(remote_group):
        raise BadRequest(f"Invalid input for remote_group_id. Reason: '{remote_group}' is "
                         "not a valid UUID.")
    return {"direction": direction, "ethertype": "IPv4", "protocol": protocol,
            "port_range_min": low, "port_range_max": high, "remote_ip_prefix": prefix,
            "remote_group_id": remote_group}
