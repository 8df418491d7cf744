"""SQLite batch migrations keep vec0 and FTS5 indexes in step with the table Alembic copies.

Each change runs through Alembic's ``batch_alter_table`` (its "move and copy": a new table, the
rows copied, the old table and its triggers dropped, the copy renamed). Afterwards every shadow
equals its table row for row, and keeps doing so under inserts, updates and deletes (its triggers
are there). A change to a column an index uses is followed by the index, or refused before
anything is written."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs.fulltext import FullTextIndex

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic.migration import MigrationContext  # noqa: E402
from alembic.operations import Operations  # noqa: E402

import alembic_ext  # noqa: E402, F401  (the batch listeners)

from .test_scenario import assert_shadows_in_step  # noqa: E402

ROWS = 12


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[sa.Engine]:
    engine = vk.create_engine(f"sqlite:///{tmp_path}/app.db")
    md = sa.MetaData()
    doc = sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("title", sa.String(100), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("cat", sa.String(10), nullable=False),
        sa.Column("note", sa.String(20)),
        sa.Column("embedding", vk.Vector(8)),
        vk.VectorIndex("doc_vec", "embedding", distance="cosine", metadata_columns=["cat"]),
        FullTextIndex("doc_fts", "title", "body"),
    )
    md.create_all(engine)
    rng = np.random.default_rng(7)
    with engine.begin() as conn:
        conn.execute(doc.insert(), [
            {"id": i, "title": f"title {i}", "body": f"body word{i}", "cat": "ab"[i % 2], "note": "n",
             "embedding": None if i % 5 == 0 else rng.normal(size=8).astype(np.float32)}
            for i in range(1, ROWS + 1)
        ])
    assert_shadows_in_step(str(engine.url))
    yield engine
    engine.dispose()


def migrate(engine: sa.Engine, change: Callable[[Operations], None]) -> None:
    with engine.begin() as conn:
        change(Operations(MigrationContext.configure(conn)))


def batch(**kw: Any) -> Callable[[Callable[[Any], None]], Callable[[Operations], None]]:
    def wrap(body: Callable[[Any], None]) -> Callable[[Operations], None]:
        def run(op: Operations) -> None:
            with op.batch_alter_table("doc", **kw) as batch_op:
                body(batch_op)

        return run

    return wrap


FOLLOWS: dict[str, tuple[Callable[[Operations], None], dict[str, str]]] = {
    "alter an unindexed column": (batch()(lambda b: b.alter_column("note", type_=sa.String(50), existing_type=sa.String(20))), {}),
    "alter a full-text column": (batch()(lambda b: b.alter_column("title", type_=sa.String(300), existing_type=sa.String(100))), {}),
    "add a column with an expression default": (
        batch()(lambda b: b.add_column(sa.Column("n", sa.Integer, server_default=sa.text("(1 + 1)")))), {}
    ),
    "drop an unindexed column": (batch()(lambda b: b.drop_column("note")), {}),
    "copy without a change": (batch(recreate="always")(lambda b: None), {}),
    "rename the vector column": (batch()(lambda b: b.alter_column("embedding", new_column_name="vec")), {"embedding": "vec"}),
    "rename the metadata column": (batch()(lambda b: b.alter_column("cat", new_column_name="category")), {"cat": "category"}),
    "rename a full-text column": (batch()(lambda b: b.alter_column("body", new_column_name="content")), {"body": "content"}),
    "rename the primary key": (batch()(lambda b: b.alter_column("id", new_column_name="doc_id")), {"id": "doc_id"}),
    "new dimension, vectors cleared": (
        lambda op: op.alter_vector_column("doc", "embedding", dim=12, existing_type=vk.Vector(8), using="NULL"), {}
    ),
}


def names(renamed: dict[str, str]) -> dict[str, str]:
    return {n: renamed.get(n, n) for n in ("id", "title", "body", "cat", "embedding")}


def write_rows(engine: sa.Engine, c: dict[str, str], dim: int) -> None:
    """Inserts, updates of each indexed column and a delete, in SQL (the triggers must follow them)."""
    rng = np.random.default_rng(11)
    t = sa.table("doc", *[sa.column(n) for n in c.values()])
    with engine.begin() as conn:
        vector = vk.Vector(dim).bind_processor(conn.dialect)
        conn.execute(t.insert(), [
            {c["id"]: 100 + i, c["title"]: f"new {i}", c["body"]: f"fresh word{100 + i}", c["cat"]: "b",
             c["embedding"]: vector(rng.normal(size=dim).astype(np.float32))}  # type: ignore[misc]
            for i in range(3)
        ])
        pk = t.c[c["id"]]
        conn.execute(t.update().where(pk == 100).values({c["embedding"]: vector(rng.normal(size=dim).astype(np.float32))}))  # type: ignore[misc]
        conn.execute(t.update().where(pk == 101).values({c["cat"]: "a", c["body"]: "changed text"}))
        conn.execute(t.update().where(pk == 102).values({c["embedding"]: None}))
        conn.execute(t.delete().where(pk == 1))


@pytest.mark.parametrize("case", list(FOLLOWS))
def test_indexes_follow_a_batch_copy(engine: sa.Engine, case: str) -> None:
    change, renamed = FOLLOWS[case]
    migrate(engine, change)
    url = str(engine.url)
    assert_shadows_in_step(url)
    c = names(renamed)
    (info,) = vk.inspect_vectors(engine).indexes
    assert (info.table, info.expression) == ("doc", c["embedding"])
    dim = 12 if case.startswith("new dimension") else 8
    assert f"float[{dim}]" in (info.definition or "") and c["cat"] in (info.definition or "")
    with engine.connect() as conn:
        left = conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name LIKE '_alembic_tmp%'").all()
        assert left == []
    write_rows(engine, c, dim)
    assert_shadows_in_step(url)
    with engine.connect() as conn:  # the full-text index finds the rows by their text, renamed or not
        found = conn.exec_driver_sql("SELECT rowid FROM doc_fts WHERE doc_fts MATCH 'word102 OR changed'").scalars().all()
        assert sorted(found) == [101, 102], found


def schema_of(engine: sa.Engine) -> list[tuple[Any, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.exec_driver_sql("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY name")]


REFUSED: dict[str, tuple[Callable[[Operations], None], type[Exception], list[str]]] = {
    "drop the vector column": (
        batch()(lambda b: b.drop_column("embedding")), vk.InvalidIndexError, ["'embedding'", "'doc_vec'", "drop_vector_index"]
    ),
    "drop the metadata column": (
        batch()(lambda b: b.drop_column("cat")), vk.InvalidIndexError, ["'cat'", "'doc_vec'", "metadata column"]
    ),
    "drop a full-text column": (
        batch()(lambda b: b.drop_column("body")), vk.InvalidIndexError, ["'body'", "'doc_fts'", "drop_fulltext_index"]
    ),
    "make the vector column a blob": (
        batch()(lambda b: b.alter_column("embedding", type_=sa.LargeBinary(), existing_type=vk.Vector(8))),
        vk.InvalidIndexError,
        ["'embedding'", "'doc_vec'", "vector column"],
    ),
    "another dimension in batch, vectors kept": (
        batch()(lambda b: b.alter_column("embedding", type_=vk.Vector(12), existing_type=vk.Vector(8))),
        vk.DimensionMismatchError,
        ["Vector(12)", "row(s)", "using='NULL'"],
    ),
    "another dimension, vectors kept": (
        lambda op: op.alter_vector_column("doc", "embedding", dim=12, existing_type=vk.Vector(8)),
        vk.DimensionMismatchError,
        ["Vector(12)", "row(s)", "using='NULL'"],
    ),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_a_change_an_index_cannot_follow_is_refused_before_anything_changes(engine: sa.Engine, case: str) -> None:
    change, error, words = REFUSED[case]
    before = schema_of(engine)
    with pytest.raises(error) as caught:
        migrate(engine, change)
    message = str(caught.value)
    for word in words:
        assert word in message, (word, message)
    assert message.endswith(".") and "\n" not in message
    assert schema_of(engine) == before
    assert_shadows_in_step(str(engine.url))
