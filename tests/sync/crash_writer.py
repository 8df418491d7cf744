"""Run as a script by test_outbox.py: commit with outbox=True, then die between the commit and the mirror write.

``python crash_writer.py <database url> <faiss path> <table name>``

The first commit is applied normally (the Faiss file is saved). The after-commit drain of the
second commit is replaced by ``os._exit(17)``: the process dies with the data and its outbox rows
committed and the mirror not told, exactly the window the outbox exists for.
"""

from __future__ import annotations

import importlib
import os
import sys

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, sessionmaker

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

# The module, not the function of the same name that the package exports.
outbox_module = importlib.import_module("sqlalchemy_vectorknobs.sync.outbox")

DIM = 8


def vec(i: int, variant: int = 0) -> np.ndarray:
    return np.random.default_rng(i * 1000 + variant).standard_normal(DIM).astype(np.float32)


def main(url: str, faiss_path: str, table: str) -> None:
    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = table
        id: Mapped[int] = mapped_column(sa.Integer, primary_key=True)
        category: Mapped[str | None] = mapped_column(sa.String(50))
        note: Mapped[str | None] = mapped_column(sa.String(200))
        embedding = mapped_column(vk.Vector(DIM), nullable=True)

    engine = vk.create_engine(url)
    Base.metadata.create_all(engine)
    mirror = vk.FaissMirror(Doc.embedding, path=faiss_path, metadata_columns=["category"])
    maker = sessionmaker(engine)
    vks.attach(maker, [mirror], outbox=True)  # creates vk_outbox: the factory has a bind
    with maker() as s:
        s.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in range(1, 21)])
        s.commit()
    print(f"first commit applied: {mirror.count()} vectors", flush=True)

    def crash(*args: object, **kw: object) -> None:
        os._exit(17)

    outbox_module.drain_committed = crash  # type: ignore[assignment]
    with maker() as s:
        for i in range(1, 6):
            s.get(Doc, i).embedding = vec(i, 1)
        for i in range(6, 9):
            s.delete(s.get(Doc, i))
        s.add_all([Doc(id=i, category="c", embedding=vec(i)) for i in range(21, 26)])
        s.commit()
    print("not reached", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:4])
