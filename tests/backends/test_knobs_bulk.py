"""Query-time knobs (SET LOCAL in the same transaction, validated first) and bulk_load."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique


def make(md: sa.MetaData, dim: int = 8, **index_kw: Any) -> sa.Table:
    name = unique("kb")
    t = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("label", sa.String(20), nullable=True),
        sa.Column("embedding", vk.Vector(dim)),
    )
    if index_kw:
        vk.VectorIndex(f"{name}_idx", t.c.embedding, **index_kw)
    return t


def settings(conn: sa.Connection) -> tuple[str, str, str]:
    return tuple(  # type: ignore[return-value]
        conn.exec_driver_sql(
            "SELECT current_setting('hnsw.ef_search', true), current_setting('hnsw.iterative_scan', true), "
            "current_setting('ivfflat.probes', true)"
        ).one()
    )


@pytest.fixture
def table(pg_backend: Backend) -> Any:
    md = sa.MetaData()
    t = make(md, distance="l2")
    pg_backend.run(md.create_all)
    pg_backend.run(lambda c: c.execute(sa.insert(t), [{"id": i, "embedding": np.full(8, i, np.float32)} for i in range(20)]))
    yield t
    pg_backend.run(md.drop_all)


def test_execution_option_sets_local_knobs(pg_backend: Backend, table: sa.Table) -> None:
    stmt = vk.nearest(table.c.embedding, np.zeros(8), k=3).execution_options(
        vector_search={"ef_search": 123, "probes": 7, "iterative_scan": "relaxed_order"}
    )

    def run(conn: sa.Connection) -> tuple[list[int], tuple[str, str, str]]:
        ids = [r.id for r in conn.execute(stmt)]
        return ids, settings(conn)

    ids, inside = pg_backend.run(run)
    assert ids == [0, 1, 2]
    assert inside == ("123", "relaxed_order", "7")
    assert pg_backend.run(settings) == ("100", "off", "1")  # SET LOCAL ended; the engine default is back


def test_nearest_asks_for_what_k_and_filters_need(pg_backend: Backend, table: sa.Table) -> None:
    def run(conn: sa.Connection) -> tuple[str, str, str]:
        conn.execute(vk.nearest(table.c.embedding, np.zeros(8), k=300, where=table.c.id > 2)).all()
        return settings(conn)

    assert pg_backend.run(run)[:2] == ("300", "relaxed_order")

    def override(conn: sa.Connection) -> tuple[str, str, str]:
        stmt = vk.nearest(table.c.embedding, np.zeros(8), k=300).execution_options(vector_search={"ef_search": 500})
        conn.execute(stmt).all()
        return settings(conn)

    assert pg_backend.run(override)[0] == "500"  # the caller's knob wins, key by key


def test_knobs_under_autocommit(pg_url: sa.URL, pg_backend: Backend, table: sa.Table) -> None:
    engine = vk.create_engine(pg_url.set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            stmt = vk.nearest(table.c.embedding, np.zeros(8), k=2).execution_options(vector_search={"ef_search": 77})
            assert [r.id for r in conn.execute(stmt)] == [0, 1]
            assert settings(conn)[0] == "100"  # applied inside its own transaction, gone after
    finally:
        engine.dispose()


@pytest.mark.parametrize(
    "knobs,message",
    [
        ({"ef_search": 0}, "ef_search=0 is not valid; it takes a whole number from 1 to 1000"),
        ({"ef_search": "100; DROP TABLE x"}, "ef_search='100; DROP TABLE x' is not valid"),
        ({"iterative_scan": "fast"}, "iterative_scan='fast' is not valid; use 'off', 'relaxed_order' or 'strict_order'"),
        ({"efsearch": 10}, "knob 'efsearch' is not known; the knobs are iterative_scan, ef_search"),
        ({"probes": True}, "probes=True is not valid"),
        ("ef_search=10", "vector_search must be a dict of knobs, got str"),
    ],
)
def test_invalid_knobs_raise_before_sql(backend: Backend, knobs: Any, message: str) -> None:
    md = sa.MetaData()
    t = make(md)
    stmt = vk.nearest(t.c.embedding, np.ones(8), k=3).execution_options(vector_search=knobs)
    backend.statements.clear()
    with pytest.raises(vk.InvalidSearchSettingError, match=message):
        backend.run(lambda c: c.execute(stmt).all())
    assert not [s for s in backend.statements if "vk_knn" in s or "ORDER BY" in s]


def test_search_settings_context_manager_restores(pg_backend: Backend, table: sa.Table) -> None:
    def run(conn: sa.Connection) -> tuple[str, str]:
        with Session(bind=conn) as session:
            with vk.search_settings(session, ef_search=250, iterative_scan="strict_order"):
                inside = settings(session.connection())[0]
                rows = session.execute(vk.nearest(table.c.embedding, np.zeros(8), k=3)).all()
                assert [r.id for r in rows] == [0, 1, 2]
            return inside, settings(session.connection())[0]

    assert pg_backend.run(run) == ("250", "100")


def test_engine_level_defaults(pg_url: sa.URL) -> None:
    """Every connection starts with the engine's knobs; {} keeps pgvector's own defaults."""
    url = pg_url.set(drivername="postgresql+psycopg")
    for knobs, expected in (({"ef_search": 64, "iterative_scan": "relaxed_order"}, ("64", "relaxed_order")), ({}, ("40", "off"))):
        engine = vk.create_engine(url, vector_search=knobs)
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT '[1]'::vector")  # loads pgvector, which defines its settings
                assert settings(conn)[:2] == expected
        finally:
            engine.dispose()
    with pytest.raises(vk.InvalidSearchSettingError, match="ef_search=5000 is not valid"):
        vk.create_engine(url, vector_search={"ef_search": 5000})


# --------------------------------------------------------------------------- bulk_load

N, DIM = 100_000, 384


@pytest.fixture(scope="module")
def big() -> np.ndarray:
    return np.random.default_rng(11).standard_normal((N, DIM)).astype(np.float32)


def test_bulk_load_100k_reads_back_equal(backend: Backend, big: np.ndarray) -> None:
    md = sa.MetaData()
    t = make(md, dim=DIM)
    backend.run(md.create_all)
    try:
        labels = [None if i % 7 == 0 else f"r{i}" for i in range(N)]
        n = backend.run(lambda c: vk.bulk_load(c, t, ({"id": i, "label": labels[i], "embedding": big[i]} for i in range(N))))
        assert n == N
        rows = backend.run(lambda c: c.execute(sa.select(t.c.id, t.c.label, t.c.embedding).order_by(t.c.id)).all())
        assert [r.id for r in rows] == list(range(N))
        assert [r.label for r in rows] == labels
        np.testing.assert_array_equal(np.stack([r.embedding for r in rows]), big)
    finally:
        backend.run(md.drop_all)


@pytest.mark.parametrize("nulls", [False, True])
def test_bulk_load_fixed_width_rows_read_back_equal(
    backend: Backend, big: np.ndarray, nulls: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All-number rows take PostgreSQL's numpy-built COPY stream; a NULL takes the general path."""
    from sqlalchemy_vectorknobs.dialects import postgresql as pg

    streams: list[bool] = []
    real = pg._copy_binary_chunks
    monkeypatch.setattr(pg, "_copy_binary_chunks", lambda *a: streams.append(real(*a) is not None) or real(*a))
    md = sa.MetaData()
    t = sa.Table(
        unique("bulkfix"), md,
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("big", sa.BigInteger), sa.Column("small", sa.SmallInteger),
        sa.Column("score", sa.Float), sa.Column("weight", sa.REAL),
        sa.Column("embedding", vk.Vector(DIM)),
    )
    backend.run(md.create_all)
    n = 5_000
    ids = np.arange(n) - 2_000  # negative keys too
    bigs = (np.arange(n, dtype=np.int64) - 3) * 3_000_000_007
    smalls = (np.arange(n) % 60_000 - 30_000).astype(np.int64)
    scores = np.random.default_rng(3).standard_normal(n)
    weights = scores.astype(np.float32)
    small_col: list[object] = [None if nulls and i == 17 else int(v) for i, v in enumerate(smalls)]
    try:
        rows = [
            {"id": int(ids[i]), "big": int(bigs[i]), "small": small_col[i], "score": float(scores[i]),
             "weight": float(weights[i]), "embedding": big[i]}
            for i in range(n)
        ]
        assert backend.run(lambda c: vk.bulk_load(c, t, rows)) == n
        if backend.id == "pg-psycopg":
            assert streams == [not nulls]
        got = backend.run(lambda c: c.execute(sa.select(t).order_by(t.c.id)).all())
        assert [r.id for r in got] == ids.tolist()
        assert [r.big for r in got] == bigs.tolist()
        assert [r.small for r in got] == small_col
        assert np.array_equal([r.score for r in got], scores)
        assert np.array_equal(np.array([r.weight for r in got], dtype=np.float32), weights)
        np.testing.assert_array_equal(np.stack([r.embedding for r in got]), big[:n])
    finally:
        backend.run(md.drop_all)


@contextmanager
def made(backend: Backend, **kw: Any) -> Iterator[sa.Table]:
    """A fresh ``make()`` table on ``backend``, dropped afterwards."""
    md = sa.MetaData()
    t = make(md, **kw)
    backend.run(md.create_all)
    try:
        yield t
    finally:
        backend.run(md.drop_all)


@pytest.mark.parametrize(
    "layout",
    ["rows-of-a-matrix", "strided", "big-endian", "float64", "list-rows"],
)
def test_bulk_load_tuples_of_any_array_layout_read_back_equal(backend: Backend, layout: str) -> None:
    """Tuples of little-endian float32 rows are handed to SQLite's executemany as they are (their
    buffers are the BLOBs); every other layout is converted first. All must read back equal."""
    base = np.random.default_rng(21).standard_normal((3_000, 32)).astype(np.float32)
    expected = base[:, ::2].copy()
    vectors: list[np.ndarray] = {
        "rows-of-a-matrix": list(expected),
        "strided": list(base[:, ::2]),
        "big-endian": list(expected.astype(">f4")),
        "float64": list(expected.astype(np.float64)),
        "list-rows": list(expected),
    }[layout]
    rows: list[Any] = [(i, f"r{i}", v) for i, v in enumerate(vectors)]
    if layout == "list-rows":
        rows = [list(r) for r in rows]
    with made(backend, dim=16) as t:
        assert backend.run(lambda c: vk.bulk_load(c, t, rows)) == len(rows)
        got = backend.run(lambda c: c.execute(sa.select(t.c.id, t.c.label, t.c.embedding).order_by(t.c.id)).all())
        assert [(r.id, r.label) for r in got] == [(i, f"r{i}") for i in range(len(rows))]
        np.testing.assert_array_equal(np.stack([r.embedding for r in got]), expected)


def test_bulk_load_tuple_rows_with_an_infinity_write_nothing(backend: Backend) -> None:
    rows = [(i, None, np.ones(8, dtype=np.float32)) for i in range(2_000)]
    rows[1_234] = (1_234, None, np.array([1, 2, np.inf, 4, 5, 6, 7, 8], dtype=np.float32))
    with made(backend) as t:
        with pytest.raises(vk.InvalidVectorError, match=r"\(bulk_load row 1234\); nothing was written\.$"):
            backend.run(lambda c: vk.bulk_load(c, t, rows))
        assert backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).scalar()) == 0


def test_bulk_load_rows_of_a_matrix_with_a_nan_elsewhere(backend: Backend) -> None:
    """Rows that are views of one matrix are checked through that matrix; a NaN in a row of it that
    is not loaded must not reject the load, and one in a loaded row must name that row."""
    matrix = np.random.default_rng(8).standard_normal((1_000, 8)).astype(np.float32)
    matrix[999, 3] = np.nan
    with made(backend) as t:
        assert backend.run(lambda c: vk.bulk_load(c, t, [(i, None, matrix[i]) for i in range(999)])) == 999
        got = backend.run(lambda c: c.execute(sa.select(t.c.embedding).order_by(t.c.id)).scalars().all())
        np.testing.assert_array_equal(np.stack(got), matrix[:999])
        with pytest.raises(vk.InvalidVectorError, match=r"\(bulk_load row 999\); nothing was written\.$"):
            backend.run(lambda c: vk.bulk_load(c, t, [(1_000 + i, None, v) for i, v in enumerate(matrix)]))
        assert backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).scalar()) == 999


def test_bulk_load_validates_every_row_before_writing(any_backend: Backend) -> None:
    md = sa.MetaData()
    t = make(md)
    any_backend.run(md.create_all)
    try:
        rows = [{"id": i, "label": None, "embedding": np.ones(8)} for i in range(1000)]
        rows[999]["embedding"] = np.ones(7)
        any_backend.statements.clear()
        with pytest.raises(vk.DimensionMismatchError, match=r"expects 8 dimensions, got 7 \(bulk_load row 999\); nothing was written\.$"):
            any_backend.run(lambda c: vk.bulk_load(c, t, rows))
        assert any_backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).scalar()) == 0
        with pytest.raises(vk.InvalidVectorError, match="bulk_load row 1 has keys"):
            vk.bulk_load(any_backend.sync_engine, t, [{"id": 1, "embedding": np.ones(8)}, {"id": 2}])
        # tuples in table column order, through a Session and an Engine, and into an indexed table
        assert any_backend.run(lambda c: vk.bulk_load(Session(bind=c), t, [(1, "a", np.ones(8)), (2, None, np.zeros(8))])) == 2
        assert any_backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).scalar()) == 2
    finally:
        any_backend.run(md.drop_all)


@pytest.mark.parametrize(
    "bad,error,message",
    [
        (np.full(8, np.nan), vk.InvalidVectorError, r"got nan at index 0; .* \(bulk_load row 500\); nothing was written\.$"),
        (np.full(8, 1e39), vk.InvalidVectorError, r"overflows float32; .* \(bulk_load row 500\)"),
        (np.ones(9), vk.DimensionMismatchError, r"expects 8 dimensions, got 9 \(bulk_load row 500\)"),
    ],
    ids=["nan", "float64-overflow", "ragged"],
)
def test_bulk_load_matrix_path_names_the_bad_row(backend: Backend, bad: np.ndarray, error: type, message: str) -> None:
    """Float arrays are checked as one matrix; a bad one is still reported by its row, nothing written."""
    md = sa.MetaData()
    t = make(md)
    backend.run(md.create_all)
    try:
        rows = [{"id": i, "label": None, "embedding": np.ones(8)} for i in range(1000)]
        rows[500]["embedding"] = bad
        with pytest.raises(error, match=message):
            backend.run(lambda c: vk.bulk_load(c, t, rows))
        assert backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).scalar()) == 0
    finally:
        backend.run(md.drop_all)


def test_bulk_load_keeps_the_sqlite_index_in_step(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    t = make(md, distance="l2")
    sqlite_backend.run(md.create_all)
    try:
        x = np.random.default_rng(5).standard_normal((500, 8)).astype(np.float32)
        sqlite_backend.run(lambda c: vk.bulk_load(c, t, [{"id": i, "label": None, "embedding": x[i]} for i in range(500)]))
        got = sqlite_backend.run(lambda c: [r.id for r in c.execute(vk.nearest(t.c.embedding, x[42], k=3))])
        assert got == np.argsort(np.linalg.norm(x - x[42], axis=1))[:3].tolist()
    finally:
        sqlite_backend.run(md.drop_all)
