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
    """Brings the schema up to date (``ensure_schema``). gunicorn's workers start together:
    two racing check-then-CREATEs on a fresh DB fail one worker's boot (``table ... already
    exists``), and gunicorn then stops the service, so this is serialised with a lock file.
    ``tables``: only these (a part of the service that adds its own later)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    with open(state_dir / "schema.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        ensure_schema(metadata, engine, tables)


def ensure_schema(metadata: sqlalchemy.MetaData, engine: sqlalchemy.Engine,
                  tables: list[sqlalchemy.Table] | None = None) -> None:
    """Creates the missing tables, then adds the columns and indexes a newer release gave
    the tables that exist: an upgraded service opens the DB an older one made.

    soko's schemas only grow (a column is added, never renamed, retyped or dropped), so
    an upgrade is exactly this and needs no migration scripts. Rows that predate a column
    get its default."""
    metadata.create_all(engine, tables=tables)
    for table in tables or metadata.sorted_tables:
        _add_missing_columns(engine, table)
        for index in table.indexes:
            index.create(engine, checkfirst=True)


def _add_missing_columns(engine: sqlalchemy.Engine, table: sqlalchemy.Table) -> None:
    existing = {column["name"] for column in sqlalchemy.inspect(engine).get_columns(table.name)}
    missing = [column for column in table.columns if column.name not in existing]
    for column in missing:  # all checked before any is added
        if column.primary_key or column.unique:
            raise RuntimeError(f"{table.name}.{column.name}: a key or unique column cannot be "
                               "added to an existing table; this upgrade needs a migration")
    for column in missing:
        _add_column(engine, table, column)


def _add_column(engine: sqlalchemy.Engine, table: sqlalchemy.Table,
                column: sqlalchemy.Column) -> None:
    """``ALTER TABLE ADD COLUMN``, nullable (SQLite cannot add a NOT NULL column without a
    constant default), then the old rows filled with the column's default, which the ORM
    would have written had the column existed when they were inserted."""
    preparer = engine.dialect.identifier_preparer
    kind = column.type.compile(dialect=engine.dialect)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text(
            f"ALTER TABLE {preparer.format_table(table)} "
            f"ADD COLUMN {preparer.format_column(column)} {kind}"))
        value = _default_value(column)
        if value is not None:
            conn.execute(table.update().where(column.is_(None)).values({column.name: value}))


def _default_value(column: sqlalchemy.Column):
    if column.server_default is not None:
        return column.server_default.arg
    default = column.default
    if default is None:
        return None
    if default.is_scalar:
        return default.arg
    if default.is_callable:
        return default.arg(None)  # sqlalchemy wraps a no-argument default to take a context
    return None


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
