"""Every ``alembic_ext`` operation works with ``compare_metadata()`` and ``alembic check``: a diff
tuple of plain, readable values (a kind, the table, the object, a description), never
``NotImplementedError``. The scenario suite runs ``alembic check`` itself after every step."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.fulltext import FullTextIndex

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic.autogenerate import compare_metadata  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402

import alembic_ext  # noqa: E402
from alembic_ext import ops  # noqa: E402


def every_op() -> list[Any]:
    create = ops.CreateVectorIndexOp(
        "doc_vec", "doc", "embedding", column_type=vk.Vector(8), distance="l2", m=8, metadata_columns=("cat",)
    )
    fulltext = ops.CreateFullTextIndexOp("doc_fts", "doc", ["title", "body"], config="simple")
    return [
        ops.CreateVectorExtensionOp(),
        ops.DropVectorExtensionOp(schema="ext"),
        create,
        create.reverse(),
        ops.DropVectorIndexOp("doc_vec", "doc", schema="archive"),
        ops.ReindexVectorIndexOp("doc_vec", concurrently=False),
        ops.AlterVectorColumnOp("doc", "embedding", type_=vk.Vector(12), existing_type=vk.Vector(8), using="NULL"),
        ops.AlterVectorColumnOp("doc", "embedding", dim=12),
        fulltext,
        fulltext.reverse(),
    ]


def test_every_op_has_a_readable_diff_tuple() -> None:
    tuples = [op.to_diff_tuple() for op in every_op()]
    for found in tuples:
        assert all(isinstance(item, str) for item in found), found  # readable as printed, no object reprs
        assert "<" not in repr(found), found
    assert [t[0] for t in tuples] == [
        "add_vector_extension", "remove_vector_extension", "add_vector_index", "remove_vector_index",
        "remove_vector_index", "reindex_vector_index", "modify_vector_type", "modify_vector_type",
        "add_fulltext_index", "remove_fulltext_index",
    ]
    assert tuples[2] == ("add_vector_index", "doc", "doc_vec", "embedding: distance='l2', m=8, metadata_columns=['cat']")
    assert tuples[4] == ("remove_vector_index", "archive.doc", "doc_vec")
    assert tuples[6] == ("modify_vector_type", "doc", "embedding", "Vector(8) -> Vector(12) using NULL")
    assert tuples[8] == ("add_fulltext_index", "doc", "doc_fts", "title, body: config='simple'")


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/app.db"
    else:
        yield request.getfixturevalue("fresh_pg_url").render_as_string(hide_password=False)


def model(dim: int, distance: str, columns: tuple[str, ...], *, vector_index: bool = True) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("embedding", vk.Vector(dim)),
        *([vk.VectorIndex("doc_vec", "embedding", distance=distance)] if vector_index else []),
        FullTextIndex("doc_fts", *columns),
    )
    return md


def diffs(engine: sa.Engine, metadata: sa.MetaData) -> list[Any]:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts=alembic_ext.autogenerate_options())
        return list(compare_metadata(ctx, metadata))


def test_compare_metadata_reports_vector_and_fulltext_changes(url: str) -> None:
    engine = vk.create_engine(url)
    try:
        model(8, "cosine", ("title", "body")).create_all(engine)
        assert diffs(engine, model(8, "cosine", ("title", "body"))) == []
        changed = diffs(engine, model(12, "l2", ("title",)))
        kinds = [d[0] for d in changed]
        assert "modify_vector_type" in kinds and "add_vector_index" in kinds and "add_fulltext_index" in kinds, changed
        assert ("remove_fulltext_index", "doc", "doc_fts") in changed and ("remove_vector_index", "doc", "doc_vec") in changed
        assert ("modify_vector_type", "doc", "embedding", "Vector(8) -> Vector(12)") in changed
        dropped = diffs(engine, model(8, "cosine", ("title", "body"), vector_index=False))
        assert dropped == [("remove_vector_index", "doc", "doc_vec")], dropped
    finally:
        engine.dispose()


def test_compare_metadata_reports_a_missing_extension(fresh_pg_url: sa.URL) -> None:
    """On a database without pgvector, the first vector columns need the extension: the directive
    hook (what ``revision --autogenerate`` and ``alembic check`` run) puts it first."""
    from alembic.autogenerate import produce_migrations

    engine = vk.create_engine(fresh_pg_url)
    try:
        with engine.connect() as conn:
            opts = alembic_ext.autogenerate_options()
            ctx = MigrationContext.configure(conn, opts=opts)
            script = produce_migrations(ctx, model(8, "cosine", ("title",)))
            opts["process_revision_directives"](ctx, None, [script])
            assert script.upgrade_ops.as_diffs()[0] == ("add_vector_extension", "vector")
            assert script.downgrade_ops.as_diffs()[-1] == ("remove_vector_extension", "vector")
    finally:
        engine.dispose()
