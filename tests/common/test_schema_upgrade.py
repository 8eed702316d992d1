"""An upgraded service opens the database an older release made: the tables and columns a
release adds appear, the old rows keep their data and gain the new columns' defaults."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy
from sqlalchemy import Column, Integer, String, Table

from soko.common.config import Config
from soko.common.db import create_tables, ensure_schema, make_engine
from soko.compute import wiring as compute_wiring
from soko.compute.models import Base as ComputeBase
from soko.compute.models import Instance
from soko.compute.service import ComputeConfig

# What session 5 added to compute's schema: an older cloud's DB has none of it, and
# soko-compute did not start on it.
ADDED_COLUMNS = {"instances": {"key_name", "key_data", "user_data"}}
ADDED_TABLES = {"keypairs", "vifs"}


def older_compute_schema() -> sqlalchemy.MetaData:
    old = sqlalchemy.MetaData()
    for table in ComputeBase.metadata.sorted_tables:
        if table.name in ADDED_TABLES:
            continue
        dropped = ADDED_COLUMNS.get(table.name, set())
        Table(table.name, old, *(column.copy() for column in table.columns
                                 if column.name not in dropped))
    return old


def test_compute_starts_on_an_older_release_db(tmp_path):
    state_dir = tmp_path / "compute"
    state_dir.mkdir()
    engine = make_engine(f"sqlite:///{state_dir / 'compute.db'}")
    old = older_compute_schema()
    old.create_all(engine)
    with engine.begin() as conn:
        conn.execute(old.tables["instances"].insert().values(
            id="i-1", project_id="p", user_id="u", name="web", flavor_id="f", vcpus=1,
            ram=256, vm_state="active", power_state="running", metadata={"role": "web"},
            created_at=dt.datetime(2026, 1, 1)))
    engine.dispose()

    config = Config(data_dir=tmp_path, sections={"compute": ComputeConfig()})
    manager = compute_wiring.make_manager(config, driver=object())
    with manager.sessions() as session:
        instance = session.get(Instance, "i-1")
        assert (instance.name, instance.vm_state, instance.meta) == ("web", "active",
                                                                     {"role": "web"})
        assert instance.key_name is None and instance.user_data is None
        instance.key_name = "mykey"  # the new column is writable, not just readable
        session.commit()
    tables = set(sqlalchemy.inspect(manager.sessions.kw["bind"]).get_table_names())
    assert tables >= ADDED_TABLES


def test_added_columns_get_their_defaults_and_indexes(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    v1 = sqlalchemy.MetaData()
    Table("things", v1, Column("id", Integer, primary_key=True), Column("name", String(8)))
    v1.create_all(engine)
    with engine.begin() as conn:
        conn.execute(v1.tables["things"].insert(), [{"id": 1, "name": "a"}, {"id": 2, "name": None}])

    v2 = sqlalchemy.MetaData()
    things = Table(
        "things", v2, Column("id", Integer, primary_key=True), Column("name", String(8)),
        Column("size", Integer, nullable=False, default=7),
        Column("kind", String(8), server_default="disk"),
        Column("tags", sqlalchemy.JSON, default=dict),
        Column("zone", String(8), index=True),
        Column("note", String(8)))
    create_tables(v2, engine, tmp_path)
    create_tables(v2, engine, tmp_path)  # a second start changes nothing
    with engine.connect() as conn:
        rows = conn.execute(sqlalchemy.select(things).order_by(things.c.id)).all()
    assert [tuple(row) for row in rows] == [(1, "a", 7, "disk", {}, None, None),
                                            (2, None, 7, "disk", {}, None, None)]
    indexes = sqlalchemy.inspect(engine).get_indexes("things")
    assert [index["column_names"] for index in indexes] == [["zone"]]


def test_a_new_unique_column_is_refused_before_anything_changes(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    v1 = sqlalchemy.MetaData()
    Table("things", v1, Column("id", Integer, primary_key=True))
    v1.create_all(engine)
    v2 = sqlalchemy.MetaData()
    Table("things", v2, Column("id", Integer, primary_key=True), Column("note", String(8)),
          Column("serial", String(8), unique=True))
    with pytest.raises(RuntimeError, match="things.serial.*needs a migration"):
        ensure_schema(v2, engine)
    columns = {c["name"] for c in sqlalchemy.inspect(engine).get_columns("things")}
    assert columns == {"id"}
