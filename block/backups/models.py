"""Backup rows, on the block service's SQLAlchemy ``Base`` (same DB as volumes).

A row is the durable record of a backup's state (changed by compare-and-swap), of the
process running its current step (so a restart can fail or finish what a dead process
left), and of what the step measured (``stats``). The data itself lives in the object
store: chunks and a manifest that names them.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, Boolean, DateTime, Float, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from soko.block.limits import NAME_MAX
from soko.block.models import Base, utcnow

# creating → available; available → restoring → available; available|error → deleting
STATUSES = ("creating", "available", "restoring", "deleting", "error")
TRANSITIONAL = ("creating", "restoring", "deleting")


class Backup(Base):
    __tablename__ = "backups"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    project_id: Mapped[str] = mapped_column(String(64), index=True)
    user_id: Mapped[str] = mapped_column(String(64))
    volume_id: Mapped[str] = mapped_column(String(36), index=True)  # may be deleted since
    snapshot_id: Mapped[str | None] = mapped_column(String(36))  # the one asked for
    temp_snapshot_id: Mapped[str | None] = mapped_column(String(36))  # taken for the backup
    parent_id: Mapped[str | None] = mapped_column(String(36), index=True)
    name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    description: Mapped[str | None] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)  # GiB, the volume's when backed up
    status: Mapped[str] = mapped_column(String(16), index=True)
    fail_reason: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, default=0.0)  # percent of the current step
    is_incremental: Mapped[bool] = mapped_column(Boolean, default=False)
    container: Mapped[str] = mapped_column(String(256))
    object_count: Mapped[int] = mapped_column(Integer, default=0)
    stats: Mapped[dict] = mapped_column(JSON, default=dict)
    restore_volume_id: Mapped[str | None] = mapped_column(String(36))
    owner: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)
    data_timestamp: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
