"""Migrating between backends: copy a table of vectors from one database to another with vk.migrate.

Run with ``python examples/migrate_backends.py [target-url]``. The source is a SQLite file (the
prototype); the target is a second SQLite file, or the PostgreSQL database you pass (production).
The script:

1. fills the source with 20,000 seeded 64-d vectors in 8 categories (``vk.bulk_load``);
2. copies them with ``vk.migrate`` in batches of 5,000 (each batch commits with its resume marker)
   and prints the verification: row counts and an order-independent vector checksum;
3. adds 2,000 rows to the source and runs ``vk.migrate`` again: only the new rows are copied;
4. creates the vector index on the target (indexes are not copied), runs ANALYZE, and checks that the target's
   ``vk.nearest`` top 10 equals the source's and a numpy brute-force search over the same vectors.

The same copy from the command line: ``vectorknobs migrate --source URL --target URL``.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

DIM, FIRST, MORE, BATCH = 64, 20000, 2000, 5000
CATEGORIES = ["kitchen", "garden", "books", "music", "sports", "toys", "tools", "travel"]


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "product"
    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(20))
    embedding = mapped_column(vk.Vector(DIM))
    __table_args__ = (vk.VectorIndex("product_embedding_idx", "embedding", distance="cosine"),)


def make_rows(rng: np.random.Generator, start: int, n: int, centres: np.ndarray) -> list[dict[str, object]]:
    cats = rng.integers(0, len(CATEGORIES), n)
    vectors = centres[cats] + rng.normal(0, 0.35, (n, DIM)).astype(np.float32)
    return [
        {"id": start + i, "category": CATEGORIES[c], "embedding": v} for i, (c, v) in enumerate(zip(cats, vectors))
    ]


def top10(session: Session, query: np.ndarray) -> list[int]:
    return [p.id for p, _ in session.execute(vk.nearest(Product.embedding, query, k=10))]


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="vk_migrate_"))
    source = vk.create_engine(f"sqlite:///{workdir / 'prototype.db'}")
    target = vk.create_engine(sys.argv[1] if len(sys.argv) > 1 else f"sqlite:///{workdir / 'production.db'}")
    print(f"source: {source.dialect.name}, target: {target.dialect.name}")

    rng = np.random.default_rng(20261124)
    centres = rng.normal(0, 1, (len(CATEGORIES), DIM)).astype(np.float32)
    Base.metadata.create_all(source)
    with Session(source) as session:
        rows = make_rows(rng, 1, FIRST, centres)
        vk.bulk_load(session, Product, rows)
        session.commit()
    print(f"1. source holds {FIRST} rows")

    report = vk.migrate(source, target, ["product"], batch_size=BATCH, progress=False)
    print(f"2. first run: {report}")
    print(f"   verified: {report.ok}")
    assert report.ok and report.copied == FIRST

    with Session(source) as session:
        more = make_rows(rng, FIRST + 1, MORE, centres)
        vk.bulk_load(session, Product, more)
        session.commit()
    rows += more
    report = vk.migrate(source, target, ["product"], batch_size=BATCH, progress=False)
    print(f"3. after adding {MORE} rows to the source: {report}")
    assert report.ok and report.copied == MORE

    index = next(i for i in Product.__table__.indexes if i.name == "product_embedding_idx")
    with target.begin() as conn:
        index.create(conn)
        conn.exec_driver_sql("ANALYZE product")  # fresh statistics after a bulk copy, so the planner sees the rows
    query = centres[2] + rng.normal(0, 0.35, DIM).astype(np.float32)
    matrix = np.stack([np.asarray(r["embedding"], dtype=np.float32) for r in rows])
    ids = np.array([r["id"] for r in rows])
    cosine = 1 - matrix @ query / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(query))
    reference = ids[np.argsort(cosine, kind="stable")[:10]].tolist()
    with Session(source) as s_session, Session(target) as t_session:
        on_source, on_target = top10(s_session, query), top10(t_session, query)
        count = t_session.scalar(select(func.count()).select_from(Product))
        plan = vk.explain(t_session, vk.nearest(Product.embedding, query, k=10))
    print(f"4. target holds {count} rows; index used on the target: {plan.vector_indexes_used}")
    print(f"   top 10 on the target: {on_target}")
    print(f"   same as on the source: {'yes' if on_target == on_source else 'NO'}; "
          f"same as numpy brute force: {'yes' if on_target == reference else 'NO'}")
    assert count == FIRST + MORE and on_target == on_source == reference
    print("OK")


if __name__ == "__main__":
    main()
