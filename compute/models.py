"""The compute service's persistent state: flavors, instances, their volume attachments
and their NICs.

An instance row is the durable record of what must exist on the hypervisor: its vm_state
says whether its domain should run; a task_state with an owner says which process is in the
middle of changing it, so ``reconcile`` can finish or fail the step when that process died.
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
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soko.common.db import utcnow

NAME_MAX = 255


class Base(DeclarativeBase):
    pass


class Flavor(Base):
    __tablename__ = "flavors"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    vcpus: Mapped[int] = mapped_column(Integer)
    ram: Mapped[int] = mapped_column(Integer)  # MiB, as Nova
    disk: Mapped[int] = mapped_column(Integer, default=0)  # GiB; instances boot from volumes


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    flavor_id: Mapped[str] = mapped_column(String(36))
    vcpus: Mapped[int] = mapped_column(Integer)  # copied from the flavor at boot, as Nova
    ram: Mapped[int] = mapped_column(Integer)
    image_id: Mapped[str | None] = mapped_column(String(64))
    vm_state: Mapped[str] = mapped_column(String(16), index=True)
    task_state: Mapped[str | None] = mapped_column(String(16))
    power_state: Mapped[str] = mapped_column(String(16), default="nostate")
    owner: Mapped[str | None] = mapped_column(String(128))  # who runs the current task
    fault: Mapped[dict | None] = mapped_column(JSON)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    # What the guest reads from the metadata API: the key pair as it was at boot (Nova
    # copies it, so deleting the key pair later changes nothing) and the user data.
    key_name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    key_data: Mapped[str | None] = mapped_column(Text)
    user_data: Mapped[str | None] = mapped_column(Text)  # base64, as given
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)


class Attachment(Base):
    """A volume of an instance; the boot volume has device ``vda``. Its iSCSI connection
    info (with the CHAP secret, as Nova's block device mappings keep it) is what the domain
    is defined again from after ``soko down`` undefined it."""

    __tablename__ = "attachments"

    volume_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    server_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    device: Mapped[str | None] = mapped_column(String(16))  # vda, vdb... once attached
    boot: Mapped[bool] = mapped_column(Boolean, default=False)
    delete_on_termination: Mapped[bool] = mapped_column(Boolean, default=False)
    connection_info: Mapped[dict | None] = mapped_column(JSON)  # once attached


class Vif(Base):
    """A NIC of an instance: its port on the network service and where the tap is plugged
    (recorded, so the domain is defined again after ``soko down`` without asking anyone).
    ``created``: compute made the port, so it goes with the server; a port the user gave
    is only unbound."""

    __tablename__ = "vifs"

    port_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    server_id: Mapped[str] = mapped_column(
        String(36), ForeignKey("instances.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)  # the guest's eth0, eth1, ...
    network_id: Mapped[str] = mapped_column(String(36))
    mac: Mapped[str] = mapped_column(String(17))
    bridge: Mapped[str] = mapped_column(String(15))
    tap: Mapped[str] = mapped_column(String(15))
    created: Mapped[bool] = mapped_column(Boolean, default=True)


class KeyPair(Base):
    """An ssh public key of a user (key pairs are per user, not per project, as in Nova)."""

    __tablename__ = "keypairs"
    __table_args__ = (UniqueConstraint("user_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    user_id: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str] = mapped_column(String(NAME_MAX))
    type: Mapped[str] = mapped_column(String(8), default="ssh")
    public_key: Mapped[str] = mapped_column(Text)
    fingerprint: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
