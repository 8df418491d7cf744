"""Downgrades restore exactly what was there.

Autogenerate is asked to drop a set of vector indexes with every option; its upgrade runs, then
its downgrade (the rendered code, as a migration file runs it), and the database's own definition
of each index must be what it was (``pg_get_indexdef`` on PostgreSQL, the vec0 definition and
contents on SQLite). The downgrade names a schema only for the table in a non-default one, and
the model compares equal afterwards."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from alembic.operations import Operations  # noqa: E402

import alembic_ext  # noqa: E402

from .test_copies import runnable  # noqa: E402
from .test_scenario import assert_shadows_in_step  # noqa: E402


def pg_model(indexes: bool) -> sa.MetaData:
    md = sa.MetaData()
    ix = (lambda *a, **k: vk.VectorIndex(*a, **k)) if indexes else (lambda *a, **k: None)
    items: list[Any] = [
        ix("doc_hnsw", "embedding", distance="cosine", m=8, ef_construction=40, metadata_columns=["cat"]),
        ix("doc_hnsw_default", "embedding", distance="l1"),
        ix("doc_ivf", "embedding", distance="l2", method="ivfflat", lists=10),
        ix("doc_ivf_rows", "embedding", distance="ip", method="ivfflat"),
        ix("doc_halfprec", "embedding", distance="ip", precision="halfvec", m=12),
        ix("doc_binary", "embedding", distance="l2", precision="binary"),
        ix("doc_partial", "half", distance="l2", where=sa.text("cat = 'a'")),
        ix("doc_bits", "bits", distance="jaccard"),
        ix("doc_sparse", "sparse", distance="ip"),
    ]
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cat", sa.String(10), nullable=False),
        sa.Column("embedding", vk.Vector(16)),
        sa.Column("half", vk.HalfVector(16)),
        sa.Column("bits", vk.BitVector(16)),
        sa.Column("sparse", vk.SparseVector(30)),
        *[i for i in items if i is not None],
    )
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("embedding", vk.Vector(4)),
        *([vk.VectorIndex("old_doc_vec", "embedding", distance="l2", m=6)] if indexes else []),
        schema="archive",
    )
    return md


def sqlite_model(indexes: bool) -> sa.MetaData:
    md = sa.MetaData()
    ix = (lambda *a, **k: vk.VectorIndex(*a, **k)) if indexes else (lambda *a, **k: None)
    items: list[Any] = [
        ix("doc_cos", "embedding", distance="cosine", metadata_columns=["cat", "n"]),
        ix("doc_l1", "embedding", distance="l1"),
        ix("doc_binary", "embedding", distance="cosine", precision="binary"),
        ix("doc_half", "half", distance="l2"),
        ix("doc_bits", "bits", distance="hamming"),
    ]
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("cat", sa.String(10), nullable=False),
        sa.Column("n", sa.Integer, nullable=False),
        sa.Column("embedding", vk.Vector(16)),
        sa.Column("half", vk.HalfVector(8)),
        sa.Column("bits", vk.BitVector(16)),
        *[i for i in items if i is not None],
    )
    return md


@pytest.fixture(params=["sqlite", "postgresql"])
def setup(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[sa.Engine, Any]]:
    if request.param == "sqlite":
        engine = vk.create_engine(f"sqlite:///{tmp_path}/app.db")
        yield engine, sqlite_model
    else:
        engine = vk.create_engine(request.getfixturevalue("fresh_pg_url"))
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
            conn.exec_driver_sql("CREATE SCHEMA archive")
        yield engine, pg_model
    engine.dispose()


def definitions(engine: sa.Engine) -> dict[str, tuple[str | None, str | None]]:
    return {i.name: (i.schema, i.definition) for i in vk.inspect_vectors(engine).indexes}


def run(engine: sa.Engine, code: str) -> None:
    with engine.begin() as conn:
        operations = Operations(MigrationContext.configure(conn))
        exec(runnable(code), {"op": operations, "sa": sa, "sqlalchemy_vectorknobs": vk})  # noqa: S102


def test_downgrade_restores_every_index_exactly(setup: tuple[sa.Engine, Any]) -> None:
    engine, model = setup
    model(True).create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO doc (id, cat, n, embedding) VALUES (1, 'a', 3, NULL)" if model is sqlite_model
                             else "INSERT INTO doc (id, cat) VALUES (1, 'a')")
    before = definitions(engine)
    assert len(before) == len([i for t in model(True).tables.values() for i in t.indexes])
    opts = {**alembic_ext.autogenerate_options(), "include_schemas": model is pg_model}
    with engine.connect() as conn:
        script = produce_migrations(MigrationContext.configure(conn, opts=opts), model(False))
    upgrade, downgrade = render_python_code(script.upgrade_ops), render_python_code(script.downgrade_ops)
    assert upgrade.count("op.drop_vector_index(") == len(before), upgrade
    # a schema only where the table has a non-default one
    assert downgrade.count("schema=") == (1 if model is pg_model else 0), downgrade
    assert upgrade.count("schema=") == (1 if model is pg_model else 0), upgrade
    if model is pg_model:
        assert "op.create_vector_index('old_doc_vec', 'doc', 'embedding', schema='archive'" in downgrade, downgrade
        for expected in ("m=8, ef_construction=40", "method='ivfflat', lists=10", "precision='halfvec'",
                         "precision='binary'", "where=", "distance='jaccard'", "column_type=sqlalchemy_vectorknobs.SparseVector(30)"):
            assert expected in downgrade, (expected, downgrade)
    else:
        for expected in ("metadata_columns=['cat', 'n']", "distance='l1'", "precision='binary'", "distance='hamming'"):
            assert expected in downgrade, (expected, downgrade)
    run(engine, upgrade)
    assert definitions(engine) == {}
    run(engine, downgrade)
    assert definitions(engine) == before
    with engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn, opts=opts), model(True)) == []
    assert_shadows_in_step(str(engine.url))


def _autogen_context(conn: sa.Connection) -> Any:
    from alembic.autogenerate.api import AutogenContext

    return AutogenContext(MigrationContext.configure(conn, opts={}))


def test_knobs_a_database_does_not_record_come_from_the_model_and_say_so() -> None:
    """For a changed index, the downgrade's knobs that the database keeps no trace of are the
    model's, and the rendered op carries a comment naming them."""
    from alembic_ext.compare import op_from_catalog

    table = sa.Table("doc", sa.MetaData(), sa.Column("id", sa.Integer, primary_key=True), sa.Column("cat", sa.String(5), nullable=False),
                     sa.Column("embedding", vk.Vector(16)))
    declared = vk.VectorIndex("doc_vec", table.c.embedding, distance="l2", precision="binary", m=8,
                              metadata_columns=["cat"], concurrently=True)
    pg = vk.VectorIndexInfo(None, "doc", "doc_vec", "hnsw", "(binary_quantize(embedding)::bit(16))",
                            "bit_hamming_ops", {"m": "8", "ef_construction": "128"})
    op = op_from_catalog(pg, vk.Vector(16), None, declared)
    assert (op.knobs["distance"], op.knobs["precision"], op.knobs["m"], op.knobs["metadata_columns"]) == ("l2", "binary", 8, ("cat",))
    assert op.assumed == ("metadata_columns", "distance", "concurrently")
    sqlite = vk.VectorIndexInfo(None, "doc", "doc_vec", "vec0", "embedding", None, {"distance_metric": "hamming"},
                                definition="CREATE VIRTUAL TABLE \"doc_vec\" USING vec0(id integer primary key, "
                                           "embedding bit[16], cat text, vk_partition integer partition key)")
    op = op_from_catalog(sqlite, vk.Vector(16), None, declared)
    assert (op.knobs["distance"], op.knobs["precision"], op.knobs["m"], op.knobs["metadata_columns"]) == ("l2", "binary", 8, ("cat",))
    assert op.assumed == ("m", "distance", "concurrently")
    from alembic.autogenerate.render import render_op_text

    with sa.create_engine("sqlite://").connect() as conn:
        text = render_op_text(_autogen_context(conn), op)
    lines = text.splitlines()
    assert lines[0] == "# m, distance, concurrently: from the model's declaration (not recorded by this database)"
    assert op_from_catalog(sqlite, vk.Vector(16)).assumed == ()  # a removed index: the catalog only
