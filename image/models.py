"""The image service's persistent state: one row per image, its manifest included.

The manifest (``segments``: name, bytes and MD5 of every object the data is split into)
lives in the row rather than in a manifest object, so a download needs no extra request
and the record and the data it points at change in one transaction.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import JSON, BigInteger, DateTime, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soko.common.db import utcnow

NAME_MAX = 255


class Base(DeclarativeBase):
    pass


class Image(Base):
    __tablename__ = "images"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    owner: Mapped[str] = mapped_column(String(64), index=True)  # the project, as Glance
    user_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(NAME_MAX))
    # Glance's: queued -> saving -> active; a failed upload -> killed; delete -> deleted.
    status: Mapped[str] = mapped_column(String(16), index=True)
    visibility: Mapped[str] = mapped_column(String(16), index=True)  # private | public
    disk_format: Mapped[str] = mapped_column(String(16))  # raw | qcow2
    container_format: Mapped[str] = mapped_column(String(16), default="bare")
    size: Mapped[int | None] = mapped_column(BigInteger)
    virtual_size: Mapped[int | None] = mapped_column(BigInteger)
    checksum: Mapped[str | None] = mapped_column(String(32))  # MD5, Glance's `checksum`
    os_hash_algo: Mapped[str | None] = mapped_column(String(16))
    os_hash_value: Mapped[str | None] = mapped_column(String(128))
    container: Mapped[str | None] = mapped_column(String(256))  # where the segments are
    segments: Mapped[list] = mapped_column(JSON, default=list)  # [[name, bytes, md5], ...]
    # The process running the upload ("host:pid:start"): a `saving` image whose uploader is
    # gone is marked killed at the next start (its segments go when the owner deletes it).
    uploader: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[dt.datetime | None] = mapped_column(DateTime, onupdate=utcnow)
