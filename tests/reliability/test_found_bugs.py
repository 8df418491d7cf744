"""Regression tests for bugs the reliability suite found in package code (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from ..conftest import Backend, unique


def test_distance_alone_in_select_has_its_table_in_from(backend: Backend) -> None:
    """``select(t.c.v.l2_distance(q))`` rendered no FROM clause ("no such column" / missing FROM)."""
    md = sa.MetaData()
    t = sa.Table(unique("from"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(3)))
    backend.create(md)
    try:
        backend.run(lambda c: c.execute(t.insert(), [{"id": 1, "v": [3, 0, 4]}, {"id": 2, "v": [0, 0, 0]}]))
        got = backend.run(lambda c: sorted(c.execute(sa.select(t.c.v.l2_distance([0, 0, 0]))).scalars()))
        np.testing.assert_allclose(got, [0.0, 5.0])
        other = t.alias("o")
        pair = backend.run(
            lambda c: c.execute(sa.select(t.c.v.l2_distance(other.c.v)).join_from(t, other, sa.true()).where(t.c.id == 1, other.c.id == 2)).scalar_one()
        )
        assert pair == 5.0
    finally:
        backend.drop(md)


def test_index_names_with_nul_are_refused_when_declared(sqlite_backend: Backend) -> None:
    """A NUL in a VectorIndex name passed declaration; on SQLite create_all then created the table and
    failed on the vec0 DDL, leaving the table behind."""
    md = sa.MetaData()
    t = sa.Table(unique("nul"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(3)))
    with pytest.raises(vk.InvalidIndexError, match="NUL"):
        vk.VectorIndex("ix\x00evil", t.c.v)
    with pytest.raises(vk.InvalidIndexError, match="NUL"):
        vk.FullTextIndex("fts\x00evil", sa.Column("title", sa.Text))
    assert not sqlite_backend.run(lambda c: sa.inspect(c).has_table(t.name))


@pytest.mark.parametrize("config", ["english\n", "simple\n"])
def test_fulltext_config_with_trailing_newline_is_refused(config: str) -> None:
    """``re.match(r"...$")`` let a trailing newline through the plain-name checks."""
    with pytest.raises(vk.InvalidIndexError):
        vk.FullTextIndex("fts_ok", sa.Column("title", sa.Text), config=config)


def test_sqlite_fulltext_name_with_trailing_newline_creates_nothing(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("ftsnl"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("title", sa.Text))
    vk.FullTextIndex(t.name + "_fts\n", t.c.title)
    with pytest.raises(vk.UnsupportedDialectError):
        sqlite_backend.create(md)
    names = sqlite_backend.run(lambda c: c.exec_driver_sql("SELECT name FROM sqlite_master").scalars().all())
    assert not [n for n in names if n.startswith(t.name + "_fts")]
    sqlite_backend.drop(md)


def test_bulk_update_of_a_source_column_reaches_the_mirror(backend: Backend) -> None:
    """ORM ``update(Doc).values(title=...)`` re-embeds the rows (a Core UPDATE of the embedding
    listener), but the mirror collector watched only the vector column, so mirrors kept the old vector."""
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("bug_src")
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(8), source="title", embedder=vk.HashingEmbedder(8))

    if backend.is_async:
        pytest.skip("the sync Session path is what this regression covers")
    backend.create(Base.metadata)
    mirror = vk.MemoryMirror(Doc.embedding)
    maker = sessionmaker(backend.engine)
    attachment = vks.attach(maker, [mirror])
    try:
        with maker() as s:
            s.add(Doc(id=1, title="alpha"))
            s.commit()
        with maker() as s:
            s.execute(sa.update(Doc).where(Doc.id == 1).values(title="beta gamma"))
            s.commit()
        np.testing.assert_array_equal(mirror.get([1])[1], vk.HashingEmbedder(8).embed(["beta gamma"])[0])
        with Session(backend.engine) as s:
            assert vk.verify(s, mirror).ok
    finally:
        attachment.detach()
        backend.drop(Base.metadata)


@pytest.mark.parametrize("outbox", [False, True], ids=["direct", "outbox"])
def test_backfill_and_vectorizer_writes_reach_attached_mirrors(sqlite_backend: Backend, outbox: bool) -> None:
    """``vk.backfill`` and the ``Vectorizer`` write vectors with Core UPDATEs the ORM does not see;
    attached mirrors used to stay without those vectors until a ``vk.rebuild``."""
    backend = sqlite_backend

    class Base(DeclarativeBase):
        pass

    class Note(Base):
        __tablename__ = unique("bug_bf")
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.Text)
        embedding = vk.embedded_column(vk.Vector(8), source="title", embedder=vk.HashingEmbedder(8), mode="deferred")

    backend.create(Base.metadata)
    if outbox:
        vks.create_outbox(backend.engine)
    mirror = vk.MemoryMirror(Note.embedding)
    maker = sessionmaker(backend.engine)
    attachment = vks.attach(maker, [mirror], outbox=outbox)
    reference = vk.HashingEmbedder(8)
    try:
        with maker() as s:
            s.add_all(Note(id=i, title=f"note number {i}") for i in range(1, 41))
            s.commit()
        assert mirror.count() == 0  # deferred: committed without vectors
        with maker() as s:
            report = vk.backfill(s, Note, batch_size=15, progress=False)
        assert report.embedded == 40
        assert mirror.count() == 40
        np.testing.assert_allclose(mirror.get([7])[7], reference.embed(["note number 7"])[0], atol=1e-6)
        with maker() as s:
            s.add(Note(id=41, title="a late note"))
            s.execute(sa.update(Note).where(Note.id == 3).values(title="changed text"))
            s.commit()
        worker = vk.Vectorizer(maker, Note)
        assert worker.run_once() == 2
        np.testing.assert_allclose(mirror.get([41])[41], reference.embed(["a late note"])[0], atol=1e-6)
        np.testing.assert_allclose(mirror.get([3])[3], reference.embed(["changed text"])[0], atol=1e-6)
        with Session(backend.engine) as s:
            assert vk.verify(s, mirror).ok
            if outbox:
                left = sa.text("SELECT count(*) FROM vk_outbox WHERE mirror = :m")
                assert s.execute(left, {"m": mirror.name}).scalar_one() == 0
    finally:
        attachment.detach()
        backend.drop(Base.metadata)
        if outbox:
            with backend.engine.begin() as conn:
                conn.execute(sa.text("DELETE FROM vk_outbox WHERE mirror = :m"), {"m": mirror.name})
