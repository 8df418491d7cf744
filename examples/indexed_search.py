"""Indexed search: declare a VectorIndex, bulk-load rows, query nearest (with a filter), explain.

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
        n = vk.bulk_load(session, Article, ({"id": i, "topic": topics[i], "embedding": vectors[i]} for i in range(ROWS)))
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
