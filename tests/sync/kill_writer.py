"""Run as a script by test_crash.py: commit changes with outbox=True into a Faiss mirror until killed.

``python kill_writer.py <database url> <faiss path> <table name> <kind> <seed> <commits> <changes per commit>``

The table and ``vk_outbox`` exist already (the test creates them). The writer attaches a
``FaissMirror`` (``kind`` flat or hnsw, saved to the path after every applied write) with
``outbox=True``, prints ``ready``, then makes ``commits`` commits of ``changes per commit`` ORM
changes each over a pool of keys: inserts, vector updates, category updates and deletes, chosen by
a seeded RNG. Before each commit it prints ``commit <i>`` and after the last one ``done``, so the
parent can aim its SIGKILL at the commit-and-apply phase.
"""

from __future__ import annotations

import random
import sys

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

DIM = 8
KEYS = 150


def main(url: str, faiss_path: str, table: str, kind: str, seed: str, commits: str, per_commit: str) -> None:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
        category: Mapped[str | None] = mapped_column(sa.String(50))
        note: Mapped[str | None] = mapped_column(sa.String(200))
        embedding = mapped_column(vk.Vector(DIM), nullable=True)

    engine = vk.create_engine(url)
    mirror = vk.FaissMirror(Doc.embedding, path=faiss_path, kind=kind, metadata_columns=["category"], m=8)
    maker = sessionmaker(engine)
    vks.attach(maker, [mirror], outbox=True)
    rng = random.Random(int(seed))
    nprng = np.random.default_rng(int(seed))
    with engine.connect() as conn:
        present = set(conn.execute(sa.select(Doc.id)).scalars())
    print("ready", flush=True)
    for i in range(int(commits)):
        with maker() as s:
            touched: set[int] = set()
            while len(touched) < int(per_commit):
                pk = rng.randrange(1, KEYS + 1)
                if pk in touched:
                    continue
                touched.add(pk)
                if pk not in present:
                    s.add(Doc(id=pk, category=rng.choice("abc"), embedding=nprng.standard_normal(DIM).astype(np.float32)))
                    present.add(pk)
                    continue
                doc = s.get(Doc, pk)
                assert doc is not None
                roll = rng.random()
                if roll < 0.15:
                    s.delete(doc)
                    present.discard(pk)
                elif roll < 0.3:
                    doc.category = rng.choice("abc")
                elif roll < 0.35:
                    doc.embedding = None  # a row without a vector leaves the mirror
                else:
                    doc.embedding = nprng.standard_normal(DIM).astype(np.float32)
            print(f"commit {i}", flush=True)
            s.commit()
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:8])
