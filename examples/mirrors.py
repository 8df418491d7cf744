"""Mirrors end to end: a Faiss index and an in-memory oracle kept in step with SQLite through the outbox.

Runs on SQLite + sqlite-vec with no server (pass a PostgreSQL URL to use that instead)::

    python examples/mirrors.py
    python examples/mirrors.py postgresql+psycopg://postgres@/postgres?host=/tmp/pg

What it shows, printing each step:
1. rows inserted through a session reach both mirrors after the commit (outbox drained at once);
2. edits, a category change and deletes follow; a note edit writes nothing to the mirrors;
3. a bulk ``update()`` statement is captured too;
4. ``vk.nearest(..., via=faiss)`` returns ORM objects in the mirror's order, with a metadata filter;
5. raw SQL behind the ORM's back is invisible to sync, ``verify`` finds it, ``repair`` fixes it;
6. with the applying left to a worker, the outbox holds the changes until ``drain``;
7. the Faiss file reopened from disk holds exactly the table's vectors.
"""

from __future__ import annotations

import argparse
import inspect
import pydoc
import tempfile
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

import sqlalchemy_vectorknobs as vk

EMBEDDER = vk.HashingEmbedder(64)


class Base(DeclarativeBase):
    pass


class Article(Base):
    __tablename__ = "example_mirror_articles"
    id: Mapped[int] = mapped_column(primary_key=True)
    module: Mapped[str] = mapped_column(sa.String(40))
    title: Mapped[str] = mapped_column(sa.String(200))
    note: Mapped[str | None] = mapped_column(sa.String(200))
    embedding = mapped_column(vk.Vector(64))


def stdlib_articles() -> list[tuple[str, str]]:
    """(module, "name: first docstring line") of standard-library functions: real text, offline."""
    import json
    import os.path
    import shutil
    import string
    import textwrap

    out = []
    for module in (os.path, shutil, json, string, textwrap):
        for name, obj in sorted(vars(module).items()):
            doc = inspect.getdoc(obj) if callable(obj) and not name.startswith("_") else None
            if doc:
                first = " ".join((pydoc.splitdoc(doc)[0] or doc).split())
                out.append((module.__name__, f"{name}: {first}"[:150]))
    return out


def embed(text: str) -> Any:
    return EMBEDDER.embed([text])[0]


def pending(session: Session, *mirrors: Any) -> int:
    """Outbox rows waiting for these mirrors."""
    names = [m.name for m in mirrors]
    stmt = sa.select(sa.func.count()).select_from(vk.outbox_table).where(vk.outbox_table.c.mirror.in_(names))
    return int(session.scalar(stmt) or 0)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("url", nargs="?", help="database URL (default: a temporary SQLite file)")
    args = ap.parse_args(argv)

    workdir = Path(tempfile.mkdtemp(prefix="vk-mirrors-"))
    engine = vk.create_engine(args.url or f"sqlite:///{workdir / 'articles.db'}")
    Base.metadata.drop_all(engine)
    Base.metadata.create_all(engine)
    faiss_path = workdir / "articles.vkfaiss"
    faiss = vk.FaissMirror(Article.embedding, path=faiss_path, kind="hnsw", metadata_columns=["module"])
    memory = vk.MemoryMirror(Article.embedding, metadata_columns=["module"])
    maker = sessionmaker(engine)
    attachment = vk.attach(maker, mirrors=[faiss, memory], outbox=True)  # also creates vk_outbox
    with engine.begin() as conn:  # a fresh start: forget what earlier runs left for these mirrors
        conn.execute(vk.outbox_table.delete().where(vk.outbox_table.c.mirror.in_([faiss.name, memory.name])))
    print(f"database: {engine.dialect.name}; mirrors: {faiss.name} ({faiss.kind}), {memory.name}")

    articles = stdlib_articles()
    with maker() as session:
        session.add_all([Article(module=m, title=t, embedding=embed(t)) for m, t in articles])
        session.commit()
        print(f"1. inserted {len(articles)} rows: faiss holds {faiss.count()}, memory holds {memory.count()}, "
              f"outbox pending {pending(session, faiss, memory)}")

        first = session.scalars(sa.select(Article).order_by(Article.id).limit(12)).all()
        for a in first[:5]:
            a.title = a.title + " (revised)"
            a.embedding = embed(a.title)
        for a in first[5:8]:
            a.module = "misc"
        for a in first[8:12]:
            session.delete(a)
        session.commit()
        total = session.scalar(sa.select(sa.func.count()).select_from(Article)) or 0
        print(f"2. revised 5, moved 3 to 'misc', deleted 4: table {total}, faiss {faiss.count()}, memory {memory.count()}")
        before = memory.count()
        first[0].note = "a column no mirror keeps"
        session.commit()
        print(f"   edited a note: mirrors still hold {memory.count()} (unchanged: {memory.count() == before})")

        session.execute(sa.update(Article).where(Article.module == "json").values(module="serialisation"))
        session.commit()
        moved = faiss.search(embed("json"), k=total, where={"module": "serialisation"})
        print(f"3. bulk update() moved {len(moved)} rows to 'serialisation' in the mirrors")

        query = embed("copy a file")
        print("4. nearest to 'copy a file' via faiss, module shutil:")
        via = vk.nearest(Article.embedding, query, k=3, via=faiss, where={"module": "shutil"})
        hits = [(a.title, d) for a, d in session.execute(via)]
        for title, distance in hits:
            print(f"   {distance:.3f}  {title}")
        exact = session.execute(vk.nearest(Article.embedding, query, k=3, where=Article.module == "shutil")).all()
        print(f"   same order as exact SQL search: {'yes' if [t for t, _ in hits] == [a.title for a, _ in exact] else 'no'}")

        session.execute(sa.text(f"UPDATE {Article.__tablename__} SET module = 'raw' WHERE id IN (20, 21)"))
        session.execute(sa.text(f"DELETE FROM {Article.__tablename__} WHERE id = 22"))
        session.commit()
        report = vk.verify(session, faiss)
        print(f"5. raw SQL behind the ORM: {report}")
        report = vk.verify(session, faiss, repair=True)
        print(f"   {report}; now: {vk.verify(session, faiss)}")
        vk.verify(session, memory, repair=True)

    attachment.detach()
    worker_mode = vk.attach(maker, mirrors=[faiss, memory], outbox=True, drain_after_commit=False)
    with maker() as session:
        for a in session.scalars(sa.select(Article).where(Article.module == "textwrap")):
            a.embedding = embed(a.title + " (rewrapped)")
        session.commit()
        queued = pending(session, faiss, memory)
        report = vk.drain(engine, [faiss, memory])
        print(f"6. worker mode: outbox pending {queued} after commit; drain: {report}; pending now {pending(session, faiss, memory)}")
    worker_mode.detach()
    faiss.close()

    with vk.FaissMirror(Article.embedding, path=faiss_path, kind="hnsw", metadata_columns=["module"]) as reopened, maker() as session:
        print(f"7. reopened {faiss_path.name}: {reopened.count()} vectors; {vk.verify(session, reopened)}; "
              f"memory: {vk.verify(session, memory)}")
    engine.dispose()
    print("OK")


if __name__ == "__main__":
    main()
