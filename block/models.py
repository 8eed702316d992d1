"""The block service's persistent state: volumes (with their one attachment) and quotas.

A volume row is the durable record of everything that must be re-created or undone after
a crash: its status (changed only by compare-and-swap), the process that owns an
in-flight transition, and the export (initiator, CHAP credentials) replayed into the
target when the target daemon restarts.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, DateTime, Integer, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soko.block.limits import NAME_MAX


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


class Base(DeclarativeBase):
    pass


class Volume(Base):
    __tablename__ = "volumes"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # GiB, as Cinder
    status: Mapped[str] = mapped_column(String(16), index=True)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    source_volid: Mapped[str | None] = mapped_column(String(36))
    snapshot_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)
    # Who runs the current transitional step ("host:pid:start-ticks"); reconcile finishes
    # or undoes a step only when that process is gone.
    owner: Mapped[str | None] = mapped_column(String(128))
    attachment_id: Mapped[str | None] = mapped_column(String(36))
    initiator: Mapped[str | None] = mapped_column(String(223))  # RFC 3720 name limit
    attached_at: Mapped[dt.datetime | None] = mapped_column(DateTime)
    chap_user: Mapped[str | None] = mapped_column(String(64))
    chap_secret: Mapped[str | None] = mapped_column(String(64))
    # The compute instance the attachment belongs to (Cinder's instance_uuid), if any.
    server_id: Mapped[str | None] = mapped_column(String(36))


class Quota(Base):
    """A project's override of a default limit (``volumes``, ``gigabytes``); -1 is unlimited."""

    __tablename__ = "quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)
