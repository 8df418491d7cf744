"""Quickstart: store a few hundred vectors in SQLite + sqlite-vec and query nearest by each metric.

Run with ``python examples/quickstart.py [database-url]`` (``make demo`` runs ``vectorknobs demo``). No server needed: the
default database is a SQLite file in a temporary directory. Each metric's top 5 is checked against
a numpy brute-force search, and the table shows which category the neighbours come from.
"""

from __future__ import annotations

import sys
import tempfile
import time

import numpy as np
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

CATEGORIES = ["kitchen", "garden", "books", "music", "sports", "toys", "tools", "travel"]
DIM, PER_CATEGORY = 64, 40


class Base(DeclarativeBase):
    pass


class Product(Base):
    __tablename__ = "product"
    id: Mapped[int] = mapped_column(primary_key=True)
    category: Mapped[str] = mapped_column(String(20))
    embedding = mapped_column(vk.Vector(DIM))


def main(url: str) -> int:
    rng = np.random.default_rng(7)
    centroids = rng.standard_normal((len(CATEGORIES), DIM)).astype(np.float32)
    labels = np.repeat(np.arange(len(CATEGORIES)), PER_CATEGORY)
    vectors = (centroids[labels] + 0.6 * rng.standard_normal((labels.size, DIM))).astype(np.float32)

    engine = vk.create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    started = time.perf_counter()
    with Session(engine) as session:
        session.add_all(
            Product(id=i + 1, category=CATEGORIES[c], embedding=v) for i, (c, v) in enumerate(zip(labels, vectors))
        )
        session.commit()
    print(f"Stored {labels.size} products with {DIM}-d vectors in {time.perf_counter() - started:.2f} s ({url}).")

    query = (centroids[CATEGORIES.index("kitchen")] + 0.6 * rng.standard_normal(DIM)).astype(np.float32)
    print("Query: a new product drawn from the 'kitchen' category.\n")
    reference = {
        "l2_distance": np.linalg.norm(vectors - query, axis=1),
        "cosine_distance": 1 - vectors @ query / (np.linalg.norm(vectors, axis=1) * np.linalg.norm(query)),
        "max_inner_product": -(vectors @ query),
        "l1_distance": np.abs(vectors - query).sum(axis=1),
    }
    header = f"{'metric':<18} {'top-5 ids':<26} {'nearest distance':>16}  {'categories of top 5':<44} numpy agrees"
    print(header)
    print("-" * len(header))
    failures = 0
    with Session(engine) as session:
        for method, ref in reference.items():
            distance = getattr(Product.embedding, method)(query)
            rows = session.execute(select(Product, distance).order_by(distance).limit(5)).all()
            ids = [p.id for p, _ in rows]
            expected = (np.argsort(ref, kind="stable")[:5] + 1).tolist()
            agrees = ids == expected and abs(rows[0][1] - float(ref[expected[0] - 1])) < 1e-3
            failures += not agrees
            cats = ",".join(p.category for p, _ in rows)
            print(f"{method:<18} {ids!s:<26} {rows[0][1]:>16.4f}  {cats:<44} {'yes' if agrees else 'NO'}")
    engine.dispose()
    return 1 if failures else 0


if __name__ == "__main__":
    default = f"sqlite:///{tempfile.mkdtemp(prefix='vk-demo-')}/demo.db"
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else default))
