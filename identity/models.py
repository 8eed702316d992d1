"""The identity database: projects, users, role assignments, EC2 credentials, revocations,
failed logins.

One default domain (not stored). Names are unique across the cloud, as they are within a
Keystone domain. Times are unix seconds as floats, the same clock tokens carry.
"""

from __future__ import annotations

import time
import uuid

import sqlalchemy
from sqlalchemy import Boolean, Float, ForeignKey, Integer, String, Text
from sqlalchemy.exc import OperationalError, ProgrammingError
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from soko.common.db import ensure_schema

NAME_MAX = 64


def new_id() -> str:
    return uuid.uuid4().hex


class Base(DeclarativeBase):
    pass


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class User(Base):
    __tablename__ = "users"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(NAME_MAX), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    default_project_id: Mapped[str | None] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="SET NULL"), nullable=True
    )
    email: Mapped[str] = mapped_column(String(255), default="")
    enabled: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)
    password_changed_at: Mapped[float] = mapped_column(Float, default=time.time)


class Assignment(Base):
    """One role of one user on one project."""

    __tablename__ = "assignments"

    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    role: Mapped[str] = mapped_column(String(16), primary_key=True)


class Revocation(Base):
    """Tokens that stop working before they expire.

    One token (``token_id``), or every token issued at or before ``revoked_at`` for a user
    (password change, user disabled or deleted), a project (disabled or deleted), or a user
    on one project (a role removed).
    A row can go once every token it could match has expired (``prune_after``).
    """

    __tablename__ = "revocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    token_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    user_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    project_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    revoked_at: Mapped[float] = mapped_column(Float)
    prune_after: Mapped[float] = mapped_column(Float, index=True)


class Credential(Base):
    """A user's EC2-style access/secret pair on one project: what S3 requests are signed with.

    ``id`` is the SHA-256 of the access key, as Keystone's ``ec2`` credentials, so finding
    a credential by the access key in a request is a primary-key read. ``encrypted_blob``
    is the Keystone ``blob`` (JSON with ``access`` and ``secret``), Fernet-encrypted with
    the credential key repository (``identity/ec2.py``): the database alone holds no secret.
    """

    __tablename__ = "credentials"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    project_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("projects.id", ondelete="CASCADE")
    )
    type: Mapped[str] = mapped_column(String(16), default="ec2")
    encrypted_blob: Mapped[str] = mapped_column(Text)
    created_at: Mapped[float] = mapped_column(Float, default=time.time)


class LoginFailure(Base):
    """Consecutive failed logins per user (``name`` holds the user id), or per login name
    when no such user exists, so a lockout says nothing about which names exist."""

    __tablename__ = "login_failures"

    name: Mapped[str] = mapped_column(String(NAME_MAX), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    last_failure_at: Mapped[float] = mapped_column(Float, index=True)
    locked_until: Mapped[float] = mapped_column(Float, default=0.0)


def create_schema(engine: sqlalchemy.Engine) -> None:
    """Creates missing tables and columns (``ensure_schema``); safe when several processes
    race to do it. Identity's DB may be shared by hosts with no common lock file (the
    proxy reads revocations from it), so a lost race is retried rather than locked out."""
    for attempt in range(5):
        try:
            ensure_schema(Base.metadata, engine)
            return
        except (OperationalError, ProgrammingError):
            # Another process created a table between our check and our CREATE.
            if attempt == 4:
                raise
            time.sleep(0.05 * (attempt + 1))
