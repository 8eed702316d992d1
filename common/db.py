"""The control-plane database: SQLite by default (a file in the data dir), PostgreSQL by URL.

SQLite runs in WAL mode with a busy timeout so gunicorn's worker processes and threads can
share one file; every unit of work goes through ``session_scope`` so it commits or rolls
back as a whole.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
from collections.abc import Iterator
from pathlib import Path

import sqlalchemy
from sqlalchemy import event
from sqlalchemy.orm import Session, sessionmaker


def utcnow() -> dt.datetime:
    """Now in UTC, naive: what SQLite's DATETIME columns store and compare."""
    return dt.datetime.now(dt.UTC).replace(tzinfo=None)


def database_url(url: str | None, data_dir: Path, name: str) -> str:
    """The configured URL, or ``sqlite:///<data_dir>/<name>.db``."""
    if url:
        return url
    data_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{data_dir / (name + '.db')}"


def create_tables(metadata: sqlalchemy.MetaData, engine: sqlalchemy.Engine,
                  state_dir: Path, tables: list[sqlalchemy.Table] | None = None) -> None:
    """Creates the tables that are missing. gunicorn's workers start together: two racing
    check-then-CREATEs on a fresh DB fail one worker's boot (``table ... already exists``),
    and gunicorn then stops the service, so creation is serialised with a lock file.
    ``tables``: only these (a part of the service that adds its own later)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "schema.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        metadata.create_all(engine, tables=tables)


def make_engine(url: str) -> sqlalchemy.Engine:
    engine = sqlalchemy.create_engine(url, future=True)
    if engine.dialect.name == "sqlite":

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute("PRAGMA busy_timeout=10000")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

    return engine


def make_sessionmaker(engine: sqlalchemy.Engine) -> sessionmaker[Session]:
    return sessionmaker(bind=engine, expire_on_commit=False)


@contextlib.contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
