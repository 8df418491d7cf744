"""Indexed search: declare a VectorIndex, bulk-load rows, query nearest (with filters), explain.

A selective filter on an indexed column (``author``, a B-tree) is searched exactly over the rows
it keeps on PostgreSQL (the plugin asks the planner first; docs/indexes.md, "Filtering"); a wide
one (``topic``, a fifth of the rows) goes through the vector index.

Run with ``python examples/indexed_search.py [database-url]``. The default is a SQLite file
(sqlite-vec's vec0 index); pass a ``postgresql+psycopg://...`` URL to get an HNSW index instead.
Each step prints what it did; the checks at the end compare against numpy brute force.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

DIM, ROWS, TOPICS = 128, 20_000, ["science", "sports", "politics", "art", "travel"]


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "article"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    topic: Mapped[str] = mapped_column(String(20))
    author: Mapped[int] = mapped_column(index=True)  # 1,000 authors, 20 articles each
    embedding = mapped_column(vk.Vector(DIM))
    __table_args__ = (
        vk.VectorIndex("article_embedding_idx", "embedding", distance="cosine", metadata_columns=["topic"]),
    )


def main(url: str) -> int:
    rng = np.random.default_rng(42)
    centers = rng.standard_normal((50, DIM)).astype(np.float32)
    vectors = centers[rng.integers(0, 50, ROWS)] + 0.4 * rng.standard_normal((ROWS, DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    topics = [TOPICS[i % len(TOPICS)] for i in range(ROWS)]

    engine = vk.create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)  # table + index (HNSW on PostgreSQL, vec0 on SQLite)
    started = time.perf_counter()
    with Session(engine) as session:
        rows_in = ({"id": i, "topic": topics[i], "author": i % 1000, "embedding": vectors[i]} for i in range(ROWS))
        n = vk.bulk_load(session, Article, rows_in)
        session.commit()
    print(f"bulk_load: {n} rows in {time.perf_counter() - started:.2f} s on {engine.dialect.name}")

    query = vectors[7] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
    failures = 0
    with Session(engine) as session:
        stmt = vk.nearest(Article.embedding, query, k=5)
        rows = session.execute(stmt).all()
        print("nearest 5:", [(a.id, a.topic, round(d, 4)) for a, d in rows])
        plan = vk.explain(session, stmt)
        print("index used:", plan.vector_indexes_used)
        failures += not plan.uses_vector_index

        filtered = vk.nearest(Article.embedding, query, k=5, where=Article.topic == "art")
        art = session.execute(filtered).all()
        print("nearest 5 'art' articles:", [(a.id, a.topic, round(d, 4)) for a, d in art])
        failures += len(art) != 5 or any(a.topic != "art" for a, _ in art)

        by_author = vk.nearest(Article.embedding, query, k=5, where=Article.author == 42)
        mine = session.execute(by_author).all()
        own = np.flatnonzero(np.arange(ROWS) % 1000 == 42)
        want = own[np.argsort(1 - vectors[own] @ query / np.linalg.norm(query))[:5]].tolist()
        author_plan = vk.explain(session, by_author)
        print(f"nearest 5 of author 42 (exact over their 20 articles; vector index used: "
              f"{author_plan.vector_indexes_used}):", [a.id for a, _ in mine])
        failures += [a.id for a, _ in mine] != want or author_plan.uses_vector_index

        tuned = stmt.execution_options(vector_search={"ef_search": 200})
        print("with ef_search=200:", [a.id for a, _ in session.execute(tuned)])

        cosine = 1 - vectors @ query / np.linalg.norm(query)
        exact = np.argsort(cosine)[:5].tolist()
        recall = len(set(exact) & {a.id for a, _ in rows}) / 5
        print(f"recall@5 against numpy: {recall:.2f}")
        failures += recall < 0.8
    engine.dispose()
    print("OK" if not failures else "CHECKS FAILED")
    return 1 if failures else 0


if __name__ == "__main__":
    default = f"sqlite:///{tempfile.mkdtemp(prefix='vk-search-')}/search.db"
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default))
