"""The network service's persistent state, shaped as Neutron's.

Every address a port holds is an ``IPAllocation`` row, unique per subnet: two requests
racing for one address cannot both commit. Router interfaces, router gateways, DHCP
servers and floating IPs are ports too (``device_owner`` says which, as in Neutron), so
"is this network in use" and "which addresses are taken" are one query each.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from soko.common.db import utcnow

NAME_MAX = 255

OWNER_DHCP = "network:dhcp"
OWNER_ROUTER_INTERFACE = "network:router_interface"
OWNER_ROUTER_GATEWAY = "network:router_gateway"
OWNER_FLOATINGIP = "network:floatingip"
NETWORK_OWNERS = (OWNER_DHCP, OWNER_ROUTER_INTERFACE, OWNER_ROUTER_GATEWAY, OWNER_FLOATINGIP)
OWNER_COMPUTE = "compute:"  # Nova's prefix (``compute:nova``): the port is an instance's NIC


class Base(DeclarativeBase):
    pass


class Stamped:
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    description: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class Network(Stamped, Base):
    __tablename__ = "networks"

    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    shared: Mapped[bool] = mapped_column(Boolean, default=False)
    external: Mapped[bool] = mapped_column(Boolean, default=False)  # router:external
    mtu: Mapped[int] = mapped_column(Integer, default=1500)
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    subnets: Mapped[list[Subnet]] = relationship(back_populates="network", lazy="selectin",
                                                 order_by="Subnet.created_at")


class Subnet(Stamped, Base):
    __tablename__ = "subnets"

    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    ip_version: Mapped[int] = mapped_column(Integer, default=4)
    cidr: Mapped[str] = mapped_column(String(64))
    gateway_ip: Mapped[str | None] = mapped_column(String(64))
    allocation_pools: Mapped[list] = mapped_column(JSON, default=list)  # [{start, end}]
    dns_nameservers: Mapped[list] = mapped_column(JSON, default=list)
    host_routes: Mapped[list] = mapped_column(JSON, default=list)  # [{destination, nexthop}]
    enable_dhcp: Mapped[bool] = mapped_column(Boolean, default=True)
    network: Mapped[Network] = relationship(back_populates="subnets")


class Port(Stamped, Base):
    __tablename__ = "ports"
    __table_args__ = (UniqueConstraint("network_id", "mac_address"),)

    network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"), index=True)
    mac_address: Mapped[str] = mapped_column(String(17))
    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    device_id: Mapped[str] = mapped_column(String(64), default="", index=True)
    device_owner: Mapped[str] = mapped_column(String(64), default="")
    port_security_enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    security_groups: Mapped[list] = mapped_column(JSON, default=list)  # group ids
    # binding:host_id and binding:profile, set by compute's service user (or an admin)
    host_id: Mapped[str] = mapped_column(String(255), default="", index=True)
    binding_profile: Mapped[dict] = mapped_column(JSON, default=dict)
    fixed_ips: Mapped[list[IPAllocation]] = relationship(
        back_populates="port", cascade="all, delete-orphan", order_by="IPAllocation.id",
        lazy="selectin")


class IPAllocation(Base):
    __tablename__ = "ipallocations"
    __table_args__ = (UniqueConstraint("subnet_id", "ip_address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    port_id: Mapped[str] = mapped_column(ForeignKey("ports.id", ondelete="CASCADE"), index=True)
    subnet_id: Mapped[str] = mapped_column(ForeignKey("subnets.id"), index=True)
    ip_address: Mapped[str] = mapped_column(String(64))
    port: Mapped[Port] = relationship(back_populates="fixed_ips")


class Router(Stamped, Base):
    __tablename__ = "routers"

    admin_state_up: Mapped[bool] = mapped_column(Boolean, default=True)
    gw_port_id: Mapped[str | None] = mapped_column(ForeignKey("ports.id"))
    enable_snat: Mapped[bool] = mapped_column(Boolean, default=True)
    gw_port: Mapped[Port | None] = relationship(lazy="selectin")


class FloatingIP(Base):
    __tablename__ = "floatingips"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    description: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    floating_network_id: Mapped[str] = mapped_column(ForeignKey("networks.id"))
    floating_port_id: Mapped[str] = mapped_column(ForeignKey("ports.id"))
    floating_ip_address: Mapped[str] = mapped_column(String(64))
    port_id: Mapped[str | None] = mapped_column(ForeignKey("ports.id"), index=True)
    fixed_ip_address: Mapped[str | None] = mapped_column(String(64))
    router_id: Mapped[str | None] = mapped_column(String(36), index=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)


class SecurityGroup(Stamped, Base):
    __tablename__ = "securitygroups"

    # The project id for its `default` group, else NULL: unique, so two requests racing
    # to create a project's default group cannot both succeed.
    default_of: Mapped[str | None] = mapped_column(String(64), unique=True)
    rules: Mapped[list[SecurityGroupRule]] = relationship(
        back_populates="group", cascade="all, delete-orphan", lazy="selectin",
        order_by="SecurityGroupRule.created_at")


class SecurityGroupRule(Base):
    __tablename__ = "securitygrouprules"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    security_group_id: Mapped[str] = mapped_column(
        ForeignKey("securitygroups.id", ondelete="CASCADE"), index=True)
    description: Mapped[str] = mapped_column(String(NAME_MAX), default="")
    direction: Mapped[str] = mapped_column(String(8))  # ingress | egress
    ethertype: Mapped[str] = mapped_column(String(8), default="IPv4")
    protocol: Mapped[str | None] = mapped_column(String(16))
    port_range_min: Mapped[int | None] = mapped_column(Integer)
    port_range_max: Mapped[int | None] = mapped_column(Integer)
    remote_ip_prefix: Mapped[str | None] = mapped_column(String(64))
    remote_group_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow, onupdate=utcnow)
    group: Mapped[SecurityGroup] = relationship(back_populates="rules")
