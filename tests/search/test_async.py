"""The search functions under AsyncSession (asyncpg, aiosqlite): ammr, arerank, anear_text,
hybrid_search / text_search through ``await session.execute`` and asearch_results."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import search
from sqlalchemy_vectorknobs.fulltext import FullTextIndex
from sqlalchemy_vectorknobs.rerank import ammr, arerank

from ..conftest import Backend
from .conftest import DIM, EMBEDDER, load_corpus
from .test_mmr import mmr_reference

ROWS = 500


class Base(DeclarativeBase):
    pass


class AsyncDoc(Base):
    __tablename__ = "search_adoc"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    module: Mapped[str] = mapped_column(sa.String(40))
    kind: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str | None] = mapped_column(sa.Text)
    embedding = vk.embedded_column(vk.Vector(DIM), source=("title", "body"), embedder=EMBEDDER)
    __table_args__ = (
        FullTextIndex("search_adoc_fts", "title", "body"),
        vk.VectorIndex("search_adoc_vec", "embedding", distance="cosine"),  # what nearest and mmr use
        vk.VectorIndex("search_adoc_bin", "embedding", distance="cosine", precision="binary"),  # what rerank uses
    )


@pytest.fixture
def loaded(async_backend: Backend) -> Iterator[Backend]:
    async_backend.run(Base.metadata.drop_all)
    assert load_corpus(async_backend, AsyncDoc, limit=ROWS) == ROWS
    yield async_backend
    async_backend.run(Base.metadata.drop_all)


def test_ammr_equals_numpy_reference(loaded: Backend) -> None:
    q = EMBEDDER.embed(["parse json string"])[0]

    async def go(session: Any) -> list[tuple[Any, float]]:
        return await ammr(session, AsyncDoc.embedding, q, k=8, fetch_k=30, lambda_=0.4)

    got = loaded.aio(go)

    def candidates(conn: sa.Connection) -> list[tuple[int, float, np.ndarray]]:
        rows = conn.execute(
            sa.select(AsyncDoc.id, AsyncDoc.embedding.cosine_distance(q).label("d"), AsyncDoc.embedding)
        ).all()
        rows.sort(key=lambda r: (r[1], r[0]))
        return [(i, d, np.asarray(v, dtype=np.float64)) for i, d, v in rows[:30]]

    cands = loaded.run(candidates)
    assert [d.id for d, _ in got] == mmr_reference(cands, 8, 0.4)


def test_arerank_is_exact_with_every_row_a_candidate(loaded: Backend) -> None:
    q = EMBEDDER.embed(["temporary directory"])[0]

    async def go(session: Any) -> list[tuple[Any, float]]:
        return await arerank(session, AsyncDoc.embedding, q, k=10, candidates=ROWS)

    got = loaded.aio(go)
    exact = loaded.run(
        lambda c: c.execute(
            sa.select(AsyncDoc.id).order_by(AsyncDoc.embedding.cosine_distance(q), AsyncDoc.id).limit(10)
        ).scalars().all()
    )
    assert [d.id for d, _ in got] == exact


def test_hybrid_and_text_search_under_async_session(loaded: Backend) -> None:
    text = "socket connection timeout"

    async def go(session: Any) -> tuple[list[Any], list[Any], list[Any]]:
        stmt = search.hybrid_search(AsyncDoc, text=text, k=5, fusion="weighted")
        hits = await search.asearch_results(session, stmt)
        rows = (await session.execute(stmt)).all()
        words = (await session.execute(search.text_search(AsyncDoc, "return list value", match="any", k=5))).all()
        return hits, rows, words

    hits, rows, words = loaded.aio(go)
    assert [h.entity.id for h in hits] == [r.entity.id for r in rows] and len(hits) == 5
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    sync_ids = loaded.orm(
        lambda s: [h.entity.id for h in search.search_results(s, search.hybrid_search(AsyncDoc, text=text, k=5, fusion="weighted"))]
    )
    assert sync_ids == [h.entity.id for h in hits]
    assert len(words) == 5 and words[0][1] >= words[-1][1]


def test_anear_text_equals_near_text(loaded: Backend) -> None:
    async def go(session: Any) -> list[int]:
        stmt = await search.anear_text(AsyncDoc.embedding, "thread lock acquire", k=6)
        return [d.id for d, _ in await session.execute(stmt)]

    got = loaded.aio(go)
    # near_text inside the session's greenlet embeds through run_blocking (a worker thread)
    same = loaded.orm(lambda s: [d.id for d, _ in s.execute(search.near_text(AsyncDoc.embedding, "thread lock acquire", k=6))])
    assert got == same and len(got) == 6
