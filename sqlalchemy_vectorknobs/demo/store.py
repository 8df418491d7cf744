"""The demo's database: the table of docstrings, its indexes, and building or reusing it.

One SQLite file holds ``stdlib_doc`` (one row per docstring, with an embedded vector column, a
vec0 ``VectorIndex`` and an FTS5 ``FullTextIndex``) and ``vectorknobs_demo`` (what corpus the file
was built from). Rows are inserted without vectors in one transaction and then embedded by
``vk.backfill`` in committed batches, so an interrupted build resumes where it stopped and a
finished one is reused: only stale rows (``vk.stale``) are ever embedded.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from .corpus import corpus_fingerprint, harvest

__all__ = ["DIM", "BuildReport", "faiss_path", "make_models", "prepare"]

DIM = 384
TABLE = "stdlib_doc"
INFO_TABLE = "vectorknobs_demo"


def make_models(embedder: Any) -> tuple[Any, Any]:
    """``(Doc, Info)`` mapped classes whose embedded column uses ``embedder``."""

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = TABLE
        id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
        module: Mapped[str] = mapped_column(sa.String(100), index=True)
        kind: Mapped[str] = mapped_column(sa.String(10))
        title: Mapped[str] = mapped_column(sa.String(200))  # the qualified name
        text: Mapped[str] = mapped_column(sa.Text)  # the docstring, trimmed
        embedding = vk.embedded_column(vk.Vector(DIM), source=("title", "text"), embedder=embedder, batch_size=64)
        __table_args__ = (
            vk.FullTextIndex(f"{TABLE}_fts", "title", "text", config="english"),
            vk.VectorIndex(f"{TABLE}_vec", "embedding", distance="cosine", metadata_columns=["kind"]),
        )

    class Info(Base):
        __tablename__ = INFO_TABLE
        key: Mapped[str] = mapped_column(sa.String(50), primary_key=True)
        value: Mapped[str] = mapped_column(sa.Text)

    return Doc, Info


@dataclass
class BuildReport:
    """What :func:`prepare` found and did, with its timings in seconds."""

    documents: int = 0
    created: bool = False  # the corpus was (re)inserted
    reason: str = ""  # why it was (re)built, or "" when reused
    embedded: int = 0  # rows embedded in this run (0: every vector was reused)
    built_seconds: float | None = None  # how long embedding took when the database was built
    timings: dict[str, float] = field(default_factory=dict)


def _info(session: Session, Info: Any) -> dict[str, str]:
    if not sa.inspect(session.get_bind()).has_table(INFO_TABLE):
        return {}
    return {row.key: row.value for row in session.scalars(sa.select(Info))}


def _why_rebuild(session: Session, Doc: Any, Info: Any, limit: int | None, rebuild: bool) -> str:
    if rebuild:
        return "--rebuild was given"
    info = _info(session, Info)
    if not info:
        return "new database"
    if info.get("corpus") != corpus_fingerprint(limit):
        return f"it holds another corpus (--limit {info.get('limit')}, Python {info.get('python')})"
    if not sa.inspect(session.get_bind()).has_table(TABLE):
        return "its document table is missing"
    count = session.scalar(sa.select(sa.func.count()).select_from(Doc))
    if str(count) != info.get("documents"):
        return f"it holds {count} documents instead of {info.get('documents')}"
    return ""


def prepare(engine: sa.Engine, Doc: Any, Info: Any, *, limit: int | None, rebuild: bool, log: Any) -> BuildReport:
    """Make ``engine``'s database hold the corpus with every vector made by ``Doc``'s embedder.

    Reuses what is there when the corpus matches; otherwise drops the demo's own tables (nothing
    else in the file) and inserts the corpus again. Then embeds exactly the stale rows.
    """
    report = BuildReport()
    with Session(engine) as session:
        reason = _why_rebuild(session, Doc, Info, limit, rebuild)
    if reason:
        report.created, report.reason = True, reason
        started = time.perf_counter()
        docs = harvest(limit)
        report.timings["harvest"] = time.perf_counter() - started
        log(f"building: {reason}; read {len(docs):,} docstrings from the standard library in {report.timings['harvest']:.1f} s")
        started = time.perf_counter()
        Doc.metadata.drop_all(engine)
        Doc.metadata.create_all(engine)
        with engine.begin() as conn:  # Core insert: no flush, so nothing is embedded yet (rows are stale)
            conn.execute(
                sa.insert(Doc.__table__),
                [{"id": i, "module": d.module, "kind": d.kind, "title": d.title, "text": d.text} for i, d in enumerate(docs, 1)],
            )
            info = {"corpus": corpus_fingerprint(limit), "limit": str(limit), "documents": str(len(docs)),
                    "python": sys.version.split()[0]}
            conn.execute(sa.insert(Info.__table__), [{"key": k, "value": v} for k, v in info.items()])
        report.timings["insert"] = time.perf_counter() - started
    with Session(engine) as session:
        started = time.perf_counter()
        report.documents = int(session.scalar(sa.select(sa.func.count()).select_from(Doc)) or 0)
        stale = int(session.scalar(sa.select(sa.func.count()).select_from(vk.stale(Doc).subquery())) or 0)
        report.timings["check"] = time.perf_counter() - started
        if not stale:
            seconds = session.get(Info, "embed_seconds")
            report.built_seconds = float(seconds.value) if seconds is not None else None
        else:
            if not report.created:
                log(f"{stale:,} of {report.documents:,} documents need a vector (an interrupted build, or another embedder made them)")
            started = time.perf_counter()
            result = vk.backfill(session, Doc, batch_size=256, progress=True)
            report.timings["embed"] = time.perf_counter() - started
            report.embedded = result.embedded
            if result.failures:
                first = result.failures[0]
                raise vk.EmbeddingError(f"embedding failed for {sum(f.rows for f in result.failures)} rows: {first.error}")
            session.merge(Info(key="embed_seconds", value=f"{report.timings['embed']:.1f}"))
            session.commit()
    return report


def faiss_path(database: Path) -> Path:
    """Where the Faiss mirror of ``database`` lives: next to it, same stem."""
    return database.with_suffix(".faiss")
