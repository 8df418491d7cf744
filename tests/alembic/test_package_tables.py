"""The package's own tables never show up in autogenerate through the one-line env.py setup:
``vk_outbox`` (mirror outbox) and ``vk_migrate_progress`` (what ``vk.migrate`` /
``vectorknobs migrate`` leave in the target). Declared in the metadata, Alembic manages them like
any other table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.migration import PROGRESS_TABLE
from sqlalchemy_vectorknobs.sync.outbox import OUTBOX_TABLE, outbox_table

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402

import alembic_ext  # noqa: E402


def app_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table("doc", md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("embedding", vk.Vector(3)))
    return md


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/target.db"
    else:
        yield request.getfixturevalue("fresh_pg_url").render_as_string(hide_password=False)


def diffs(url: str, metadata: sa.MetaData, **hooks: Any) -> list[Any]:
    engine = vk.create_engine(url)
    try:
        with engine.connect() as conn:
            return list(compare_metadata(MigrationContext.configure(conn, opts=alembic_ext.autogenerate_options(**hooks)), metadata))
    finally:
        engine.dispose()


def test_the_exclusion_names_the_package_tables() -> None:
    assert alembic_ext.PACKAGE_TABLES == {OUTBOX_TABLE, PROGRESS_TABLE}


def test_tables_left_by_migrate_and_the_outbox_are_not_proposed_for_dropping(tmp_path: Path, target: str) -> None:
    source = vk.create_engine(f"sqlite:///{tmp_path}/source.db")
    app_metadata().create_all(source)
    with source.begin() as conn:
        conn.exec_driver_sql("INSERT INTO doc (id, embedding) VALUES (1, NULL)")
    report = vk.migrate(source, target, progress=False)
    source.dispose()
    assert report.ok
    engine = vk.create_engine(target)
    vk.create_outbox(engine)
    with engine.connect() as conn:
        assert {OUTBOX_TABLE, PROGRESS_TABLE} <= set(sa.inspect(conn).get_table_names())
    engine.dispose()
    seen: list[str] = []

    def mine(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        seen.append(name)
        return True

    assert diffs(target, app_metadata(), include_object=mine) == []
    assert OUTBOX_TABLE not in seen and PROGRESS_TABLE not in seen  # decided before the user's hook


def test_a_declared_package_table_is_managed_by_alembic(target: str) -> None:
    metadata = app_metadata()
    outbox_table.to_metadata(metadata)
    engine = vk.create_engine(target)
    app_metadata().create_all(engine)
    engine.dispose()
    found = diffs(target, metadata)
    assert [d[0] for d in found if d[0] == "add_table"] == ["add_table"] and found[0][1].name == OUTBOX_TABLE, found
