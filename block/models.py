"""The block service's persistent state: volumes (with their one attachment), snapshots,
local (loop device) attachments and quotas.

A volume row is the durable record of everything that must be re-created or undone after
a crash: its status (changed only by compare-and-swap), the process that owns an
in-flight transition, and the export (initiator, CHAP credentials) replayed into the
target when the target daemon restarts.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Integer, String, Text, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, relationship

from soko.block.limits import NAME_MAX
from soko.common.db import utcnow
from soko.common.errors import BadRequest


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
    # Filled from an image (block/images.py): bootable, and the image's record as Cinder's
    # ``volume_image_metadata`` (image_id, image_name, checksum, disk_format, ...).
    bootable: Mapped[bool] = mapped_column(Boolean, default=False)
    image_meta: Mapped[dict | None] = mapped_column("volume_image_metadata", JSON)
    # Its loop device on the storage host, when locally attached (loaded with the row; no
    # foreign key, so rows come and go independently).
    local: Mapped[LocalAttachment | None] = relationship(
        uselist=False, lazy="joined", viewonly=True,
        primaryjoin="foreign(LocalAttachment.volume_id) == Volume.id")


class Snapshot(Base):
    """A point-in-time, read-only copy of a volume in the pool (Cinder's snapshot)."""

    __tablename__ = "snapshots"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    volume_id: Mapped[str] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # GiB: the volume's size when taken
    status: Mapped[str] = mapped_column(String(16), index=True)
    meta: Mapped[dict] = mapped_column("metadata", JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)
    owner: Mapped[str | None] = mapped_column(String(128))  # as Volume.owner
    local: Mapped[LocalAttachment | None] = relationship(
        uselist=False, lazy="joined", viewonly=True,
        primaryjoin="foreign(LocalAttachment.snapshot_id) == Snapshot.id")


class LocalAttachment(Base):
    """A volume or snapshot mapped to a loop device on the storage host (``local-attach``);
    reconcile re-creates a device that vanished and detaches devices with no row."""

    __tablename__ = "local_attachments"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)  # the attachment id
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    volume_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    snapshot_id: Mapped[str | None] = mapped_column(String(36), unique=True)
    host: Mapped[str] = mapped_column(String(255))
    device: Mapped[str | None] = mapped_column(String(64))  # None while being set up
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)


class Quota(Base):
    """A project's override of a default limit (``volumes``, ``gigabytes``, ``snapshots``);
    -1 is unlimited."""

    __tablename__ = "quotas"

    project_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    resource: Mapped[str] = mapped_column(String(32), primary_key=True)
    hard_limit: Mapped[int] = mapped_column(Integer)


def newest_first(s: Session, model, project_id: str | None, filters: list,
                 limit: int | None, marker: str | None, what: str) -> list:
    """One page of ``model`` rows, newest first (Cinder's order), after row ``marker``."""
    query = select(model).where(*filters).order_by(model.created_at.desc(), model.id.desc())
    if project_id is not None:
        query = query.where(model.project_id == project_id)
    if marker is not None:
        last = s.get(model, marker)
        if last is None or (project_id is not None and last.project_id != project_id):
            raise BadRequest(f"marker {marker} is not a {what} in this listing")
        query = query.where(
            (model.created_at < last.created_at)
            | ((model.created_at == last.created_at) & (model.id < last.id)))
    if limit is not None:
        query = query.limit(limit)
    return list(s.scalars(query))
