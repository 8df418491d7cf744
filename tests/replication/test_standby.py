"""Everything read-only works on a PostgreSQL hot standby, with the same results as on the primary.

A model with an embedded column over ~1,500 stdlib docstrings, an HNSW index (cosine, with a
metadata column), an IVFFlat index (l2), a halfvec HNSW index (inner product), a binary HNSW index
(cosine, for ``rerank``) and a full-text index is created and filled on the primary; after the
standby has replayed it, every search entry point runs on both servers and must return the same
rows in the same order with the same distances / scores (float tolerance). The indexes are
WAL-logged, so the standby's planner uses them too (``vk.explain`` on the standby).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from ..search.conftest import EMBEDDER, stdlib_corpus
from .conftest import Pair

ROWS = 1500
VECTORKNOBS = str(Path(sys.executable).with_name("vectorknobs"))


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = "repl_doc"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(sa.String(10), nullable=False)
    title: Mapped[str] = mapped_column(sa.String(200))
    body: Mapped[str | None] = mapped_column(sa.Text)
    embedding = vk.embedded_column(vk.Vector(128), source=("title", "body"), embedder=EMBEDDER)
    __table_args__ = (
        vk.VectorIndex("repl_doc_hnsw", "embedding", distance="cosine", m=16, ef_construction=64, metadata_columns=["kind"]),
        vk.VectorIndex("repl_doc_ivf", "embedding", distance="l2", method="ivfflat", lists=10),
        vk.VectorIndex("repl_doc_half", "embedding", distance="ip", precision="halfvec"),
        vk.VectorIndex("repl_doc_bin", "embedding", distance="cosine", precision="binary"),
        vk.FullTextIndex("repl_doc_fts", "title", "body", config="english"),
    )


@pytest.fixture(scope="module")
def loaded(pair: Pair) -> Iterator[Pair]:
    primary = pair.engine("primary")
    Base.metadata.drop_all(primary)
    Base.metadata.create_all(primary)
    docs = stdlib_corpus(ROWS)
    with Session(primary) as session:
        session.add_all(Doc(id=i, kind=kind, title=title, body=body) for i, (_, kind, title, body) in enumerate(docs, 1))
        session.commit()
    with primary.begin() as conn:
        conn.exec_driver_sql("ANALYZE repl_doc")
    pair.wait_for_replay()
    yield pair
    Base.metadata.drop_all(primary)
    pair.wait_for_replay()


def queries(n: int = 4) -> list[np.ndarray]:
    texts = ["read a csv file", "copy a directory tree", "parse command line options", "compress data with gzip"][:n]
    return list(EMBEDDER.embed(texts))


def on_both(pair: Pair, fn: Callable[[Session], Any], driver: str = "psycopg") -> tuple[Any, Any]:
    """``fn(session)`` on the primary and on the standby."""
    out = []
    for which in ("primary", "standby"):
        engine = pair.engine(which, driver)
        if driver == "asyncpg":
            import asyncio

            from sqlalchemy.ext.asyncio import AsyncSession

            async def go(engine: Any = engine) -> Any:
                async with AsyncSession(engine) as session:
                    return await session.run_sync(fn)

            out.append(asyncio.run(go()))
            asyncio.run(engine.dispose())  # (its connections belong to this loop)
        else:
            with Session(engine) as session:
                out.append(fn(session))
    return out[0], out[1]


def rows(stmt: Any) -> Callable[[Session], list[tuple[int, float]]]:
    def go(session: Session) -> list[tuple[int, float]]:
        return [(row[0].id, float(row[-1])) for row in session.execute(stmt)]

    return go


def assert_same(primary: list[tuple[int, float]], standby: list[tuple[int, float]]) -> None:
    assert primary, "the search found nothing on the primary"
    assert [pk for pk, _ in standby] == [pk for pk, _ in primary]
    assert [d for _, d in standby] == pytest.approx([d for _, d in primary], rel=1e-6, abs=1e-6)


SEARCHES: dict[str, Callable[[np.ndarray], Any]] = {
    "hnsw": lambda q: vk.nearest(Doc.embedding, q, k=10),
    "hnsw ef_search=200": lambda q: vk.nearest(Doc.embedding, q, k=10).execution_options(vector_search={"ef_search": 200}),
    "hnsw filtered (iterative scan)": lambda q: vk.nearest(Doc.embedding, q, k=10, where=Doc.kind == "method"),
    "hnsw strict_order + max_scan_tuples": lambda q: vk.nearest(Doc.embedding, q, k=10, where=Doc.kind == "class").execution_options(
        vector_search={"iterative_scan": "strict_order", "max_scan_tuples": 5000, "scan_mem_multiplier": 2, "exact_below": 0}
    ),
    ".where() after the fact": lambda q: vk.nearest(Doc.embedding, q, k=10).where(Doc.kind == "function"),
    "ivfflat probes=10": lambda q: vk.nearest(Doc.embedding, q, k=10, distance="l2").execution_options(
        vector_search={"probes": 10, "iterative_scan": "relaxed_order", "max_probes": 10}
    ),
    "halfvec (re-ranked)": lambda q: vk.nearest(Doc.embedding, q, k=10, distance="ip"),
    "exact (l1, no index)": lambda q: vk.nearest(Doc.embedding, q, k=10, distance="l1"),
    "max_distance": lambda q: vk.nearest(Doc.embedding, q, k=50, max_distance=cutoff(q)),
}


def cutoff(q: np.ndarray) -> float:
    """The cosine distance of the 20th nearest row (exactly): a max_distance that keeps about 20."""
    x = EMBEDDER.embed([f"{title}\n{body}" if body else title for _, _, title, body in stdlib_corpus(ROWS)])
    d = np.sort(1 - (x @ q) / (np.linalg.norm(x, axis=1) * np.linalg.norm(q)))
    return float(d[19] + d[20]) / 2


@pytest.mark.parametrize("search", list(SEARCHES))
def test_nearest_on_the_standby_equals_the_primary(loaded: Pair, search: str) -> None:
    for q in queries():
        assert_same(*on_both(loaded, rows(SEARCHES[search](q))))


@pytest.mark.parametrize("search", ["hnsw", "hnsw filtered (iterative scan)", "ivfflat probes=10"])
def test_asyncpg_on_the_standby(loaded: Pair, search: str) -> None:
    q = queries(1)[0]
    assert_same(*on_both(loaded, rows(SEARCHES[search](q)), driver="asyncpg"))


def test_search_settings_context_on_the_standby(loaded: Pair) -> None:
    q = queries(1)[0]

    def go(session: Session) -> list[tuple[int, float]]:
        with vk.search_settings(session, ef_search=300, iterative_scan="relaxed_order", exact_below=0):
            return rows(vk.nearest(Doc.embedding, q, k=20, where=Doc.kind == "method"))(session)

    assert_same(*on_both(loaded, go))


def test_text_and_hybrid_search_on_the_standby(loaded: Pair) -> None:
    q = queries(1)[0]
    for stmt in (
        vk.near_text(Doc.embedding, "read a csv file", k=10),
        vk.text_search(Doc, "csv reader", k=10),
        vk.text_search(Doc, "file", k=10, match="any"),
        vk.hybrid_search(Doc, text="read a csv file", k=10),
        vk.hybrid_search(Doc, text="compress data", vector=q, k=10, fusion="weighted", weights=(0.3, 0.7)),
        vk.hybrid_search(Doc, text="read a csv file", k=10, where=Doc.kind == "class"),
    ):
        assert_same(*on_both(loaded, rows(stmt)))
    details = vk.hybrid_search(Doc, text="copy a file", k=10, details=True)

    def detailed(session: Session) -> list[tuple[int, float, float, int]]:
        return [(r.entity.id, r.distance, r.score, r.rank) for r in session.execute(details)]

    primary, standby = on_both(loaded, detailed)
    assert primary and [r[0] for r in standby] == [r[0] for r in primary] and [r[3] for r in standby] == [r[3] for r in primary]
    assert np.allclose([r[1:3] for r in standby], [r[1:3] for r in primary])


def test_mmr_and_rerank_on_the_standby(loaded: Pair) -> None:
    for q in queries(2):
        assert_same(*on_both(loaded, lambda s, q=q: [(d.id, dist) for d, dist in vk.mmr(s, Doc.embedding, q, k=8, lambda_=0.5)]))
        assert_same(*on_both(loaded, lambda s, q=q: [(d.id, dist) for d, dist in vk.rerank(s, Doc.embedding, q, k=8)]))


def explain_indexed(session: Session, stmt: Any) -> vk.ExplainResult:
    """``vk.explain`` with sequential scans priced out: on 1,500 rows PostgreSQL would rather sort
    the table, and the point here is that the standby *can* use the indexes it replayed."""
    session.execute(sa.text("SET LOCAL enable_seqscan = off"))
    return vk.explain(session, stmt)


def test_explain_on_the_standby_uses_the_indexes(loaded: Pair) -> None:
    q = queries(1)[0]
    for stmt, index in (
        (vk.nearest(Doc.embedding, q, k=10), "repl_doc_hnsw"),
        (vk.nearest(Doc.embedding, q, k=10, distance="l2"), "repl_doc_ivf"),
        (vk.nearest(Doc.embedding, q, k=10, distance="ip"), "repl_doc_half"),
    ):
        primary, standby = on_both(loaded, lambda s, stmt=stmt: explain_indexed(s, stmt))
        assert index in standby.vector_indexes_used, standby.plan
        assert standby.vector_indexes_used == primary.vector_indexes_used


def test_inspection_and_staleness_on_the_standby(loaded: Pair, tmp_path: Path) -> None:
    primary, standby = (loaded.engine(which) for which in ("primary", "standby"))
    p, s = vk.inspect_vectors(primary), vk.inspect_vectors(standby)
    assert (s.extension_version, s.columns, s.indexes) == (p.extension_version, p.columns, p.indexes)
    assert {i.name for i in s.indexes} >= {"repl_doc_hnsw", "repl_doc_ivf", "repl_doc_half", "repl_doc_bin"}
    counts = on_both(loaded, lambda session: session.scalar(sa.select(sa.func.count()).select_from(vk.stale(Doc).subquery())))
    assert counts == (0, 0)

    standby_url = loaded.standby.url().render_as_string(hide_password=False)
    shown = subprocess.run([VECTORKNOBS, "inspect", "--database", standby_url, "--json"], capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert {i["name"] for i in json.loads(shown.stdout)["inventory"]["indexes"]} >= {"repl_doc_hnsw", "repl_doc_bin"}
    (tmp_path / "repl_models.py").write_text(textwrap.dedent(
        """
        from tests.replication.test_standby import Doc
        """
    ))  # fmt: skip
    check = subprocess.run(
        [VECTORKNOBS, "sync", "check", "--database", standby_url, "--model", "repl_models:Doc", "--json"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{Path(__file__).parents[2]}"},
    )  # fmt: skip
    assert check.returncode == 0, (check.stdout, check.stderr)


def test_a_new_row_on_the_primary_is_found_on_the_standby(loaded: Pair) -> None:
    with Session(loaded.engine("primary")) as session:
        session.add(Doc(id=ROWS + 1, kind="function", title="vectorknobs.replicated", body="a brand new replicated document"))
        session.commit()
    try:
        loaded.wait_for_replay()
        q = EMBEDDER.embed(["vectorknobs.replicated\na brand new replicated document"])[0]
        primary, standby = on_both(loaded, rows(vk.nearest(Doc.embedding, q, k=1)))
        assert primary[0][0] == standby[0][0] == ROWS + 1
    finally:
        with loaded.engine("primary").begin() as conn:
            conn.execute(sa.delete(Doc.__table__).where(Doc.__table__.c.id == ROWS + 1))
        loaded.wait_for_replay()


def test_writing_on_the_standby_fails_clearly(loaded: Pair) -> None:
    with pytest.raises(sa.exc.InternalError, match="read-only transaction"):
        with Session(loaded.engine("standby")) as session:
            session.add(Doc(id=ROWS + 2, kind="function", title="x", body="y"))
            session.commit()


def test_the_read_only_check_names_the_standby(loaded: Pair) -> None:
    from sqlalchemy_vectorknobs.inspection import refuse_read_only

    refuse_read_only(loaded.engine("primary"), "vectorknobs backfill")  # the primary takes writes
    with pytest.raises(vk.ReadOnlyDatabaseError, match=r"^vectorknobs backfill writes, and postgresql\+psycopg://postgres@127\.0\.0\.1:\d+/postgres is a hot standby \(in recovery, read-only\); point it at the primary\.$"):
        refuse_read_only(loaded.engine("standby"), "vectorknobs backfill")
