"""Embedding sync end to end: vectors that follow their text, a model upgrade, a backfill.

Runs on SQLite + sqlite-vec with no server (pass a PostgreSQL URL to use that instead)::

    python examples/embedding_sync.py
    python examples/embedding_sync.py postgresql+psycopg://postgres@/postgres?host=/tmp/pg
    python examples/embedding_sync.py --minilm      # the real offline all-MiniLM-L6-v2 model

What it shows, printing each step:
1. new rows are embedded at flush, one embedder call per batch;
2. editing a title re-embeds exactly that row; editing another column embeds nothing;
3. a bulk UPDATE re-embeds the rows it touched in the same transaction;
4. raw SQL behind the ORM's back is caught by ``vk.stale()``;
5. a model upgrade (new embedder version) makes every row stale; ``vk.backfill`` fixes them;
6. a semantic search with ``vk.nearest`` over the synced vectors.
"""

from __future__ import annotations

import argparse
import inspect
import os
import pydoc
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk


class CountingEmbedder:
    """Wraps an embedder and counts the calls and texts it is given (to show the batching)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.texts = 0
        self.version = inner.version  # bumped below to play a model upgrade

    name = property(lambda self: self.inner.name)
    dim = property(lambda self: self.inner.dim)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls += 1
        self.texts += len(texts)
        return np.asarray(self.inner.embed(texts))

    def reset(self) -> str:
        seen = f"{self.calls} call(s), {self.texts} text(s)"
        self.calls = self.texts = 0
        return seen


def stdlib_docs(limit: int) -> list[tuple[str, str]]:
    """(title, first paragraph) of standard-library functions: real English text, offline."""
    import collections
    import functools
    import itertools
    import json
    import os.path
    import shutil
    import statistics
    import string
    import textwrap

    docs = []
    for module in (os.path, shutil, json, itertools, functools, collections, statistics, string, textwrap):
        for name, obj in sorted(vars(module).items()):
            if name.startswith("_") or not callable(obj):
                continue
            doc = inspect.getdoc(obj)
            if doc:
                first = pydoc.splitdoc(doc)[0] or doc.split("\n\n")[0]
                docs.append((f"{module.__name__}.{name}", " ".join(first.split())))
    return docs[:limit]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", help="database URL (default: a temporary SQLite file)")
    ap.add_argument("--minilm", action="store_true", help="use the offline all-MiniLM-L6-v2 model")
    args = ap.parse_args(argv)

    inner: Any = vk.SentenceTransformerEmbedder("minilm") if args.minilm else vk.HashingEmbedder(384)
    embedder = CountingEmbedder(inner)

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "example_sync_docs"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(sa.String(200))
        body: Mapped[str | None] = mapped_column(sa.Text)
        views: Mapped[int] = mapped_column(default=0)
        embedding = vk.embedded_column(vk.Vector(384), source=("title", "body"), embedder=embedder, batch_size=64)

    url = args.url or f"sqlite:///{tempfile.mkdtemp(prefix='vk-sync-')}/docs.db"
    engine = vk.create_engine(url)
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    print(f"database: {engine.dialect.name}; embedder: {embedder.name}@{embedder.version}")
    print(f"companion columns: {', '.join(c.name for c in Doc.__table__.c if c.name.startswith('embedding_'))}")

    docs = stdlib_docs(300)
    with Session(engine) as session:
        session.add_all([Doc(title=t, body=b) for t, b in docs])
        session.commit()
        print(f"1. inserted {len(docs)} rows in one flush: {embedder.reset()}")

        doc = session.scalars(sa.select(Doc).where(Doc.title == "json.dumps")).one()
        doc.title = "json.dumps (serialise to a string)"
        session.commit()
        print(f"2. edited one title: {embedder.reset()}")
        doc.views += 1
        session.commit()
        print(f"   edited a non-source column: {embedder.reset()}")

        session.execute(sa.update(Doc).where(Doc.title.like("itertools.%")).values(body=Doc.body + " (iterator tool)"))
        session.commit()
        changed = session.scalar(sa.select(sa.func.count()).where(Doc.title.like("itertools.%")))
        print(f"3. bulk UPDATE of {changed} rows: {embedder.reset()}; stale rows now: {count(session, vk.stale(Doc))}")

        session.execute(sa.text("UPDATE example_sync_docs SET body = 'edited by raw SQL' WHERE id IN (1, 2, 3)"))
        session.commit()
        print(f"4. raw SQL edited 3 rows behind the ORM: stale rows now: {count(session, vk.stale(Doc))}")
        report = vk.backfill(session, Doc, progress=False)
        print(f"   backfill: {report.embedded} row(s) in {report.batches} batch(es), {embedder.reset()}; "
              f"stale rows now: {count(session, vk.stale(Doc))}")

        embedder.version = f"{embedder.version}+upgraded"  # what a new model release looks like
        print(f"5. embedder version changed: stale rows now: {count(session, vk.stale(Doc))}")
        report = vk.backfill(session, Doc, batch_size=100, progress=False)
        print(f"   backfill: {report.embedded} row(s) in {report.batches} batch(es), {embedder.reset()}; "
              f"stale rows now: {count(session, vk.stale(Doc))}")

        query = embedder.embed(["copy a file to another directory"])[0]
        embedder.reset()
        print("6. nearest to 'copy a file to another directory':")
        for row in session.execute(vk.nearest(Doc.embedding, query, k=3)):
            print(f"   {row.distance:.3f}  {row[0].title}")
    engine.dispose()


def count(session: Session, stmt: Any) -> int:
    return int(session.scalar(sa.select(sa.func.count()).select_from(stmt.subquery())) or 0)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main(sys.argv[1:])
