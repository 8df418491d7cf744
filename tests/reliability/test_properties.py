"""Property-based tests (hypothesis) of the codec and the column types, pure and through every driver.

* Any finite float32 vector of the declared dimension (subnormals, -0.0 and the extremes
  included) comes back bit-exact through SQLite, psycopg 3, asyncpg and psycopg 2, in every input
  form (list, float64, big-endian, non-contiguous). Half vectors with fp16-representable values,
  bit vectors and sparse vectors likewise.
* Every malformed value gets the error class the spec names (``exc.py``), before any SQL: the
  row count is unchanged after a rejected INSERT of a batch in which only one row is bad, after a
  rejected ORM flush and after a rejected ``vk.bulk_load``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st
from scipy import sparse as sp
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import codec
from sqlalchemy_vectorknobs.codec import Kind

from ..conftest import Backend, unique
from .conftest import examples

DIM = 8
HALF = np.float16

f32 = st.floats(width=32, allow_nan=False, allow_infinity=False)
f16 = st.floats(width=16, allow_nan=False, allow_infinity=False)
dense = st.lists(f32, min_size=DIM, max_size=DIM).map(lambda v: np.array(v, dtype=np.float32))
halfs = st.lists(f16, min_size=DIM, max_size=DIM).map(lambda v: np.array(v, dtype=np.float16))
bits = st.lists(st.booleans(), min_size=DIM, max_size=DIM).map(lambda v: np.array(v, dtype=bool))
nonzero_f32 = f32.filter(lambda x: x != 0)
sparse_dicts = st.dictionaries(st.integers(0, DIM - 1), nonzero_f32, max_size=DIM)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal bit patterns (so -0.0 differs from 0.0): the float32 values are stored exactly."""
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def input_forms(v: np.ndarray) -> st.SearchStrategy[Any]:
    """The same values as list, tuple, float64, big-endian and non-contiguous arrays."""
    strided = np.empty(2 * v.shape[0], dtype=v.dtype)
    strided[::2] = v
    return st.sampled_from(
        [v, v.tolist(), tuple(v.tolist()), v.astype(np.float64), v.astype(v.dtype.newbyteorder(">")), strided[::2]]
    )


# ---------------------------------------------------------------------------- pure codec


@examples(100)
@given(v=dense, data=st.data())
def test_codec_wire_formats_round_trip_float32_bit_exact(v: np.ndarray, data: st.DataObject, figures: Any) -> None:
    value = data.draw(input_forms(v))
    checked = codec.check_dense(value, DIM, "v")
    assert same_bits(checked, v)
    assert same_bits(codec.decode_pg_binary(Kind.FLOAT32, codec.encode_pg_binary(Kind.FLOAT32, checked)), v)
    assert same_bits(codec.decode_pg_text(Kind.FLOAT32, codec.encode_pg_text(Kind.FLOAT32, checked)), v)
    assert same_bits(codec.decode_sqlite(Kind.FLOAT32, codec.encode_sqlite(Kind.FLOAT32, checked), DIM), v)
    figures("inputs_tried")


@examples(100)
@given(h=halfs, b=bits, s=sparse_dicts)
def test_codec_half_bit_sparse_round_trip(h: np.ndarray, b: np.ndarray, s: dict[int, float], figures: Any) -> None:
    ch = codec.check_half(h, DIM, "h")
    assert same_bits(ch, h)
    for kind_codec in (
        lambda x: codec.decode_pg_binary(Kind.FLOAT16, codec.encode_pg_binary(Kind.FLOAT16, x)),
        lambda x: codec.decode_pg_text(Kind.FLOAT16, codec.encode_pg_text(Kind.FLOAT16, x)),
        lambda x: codec.decode_sqlite(Kind.FLOAT16, codec.encode_sqlite(Kind.FLOAT16, x), DIM),
    ):
        assert same_bits(kind_codec(ch), h)
    cb = codec.check_bits(b, DIM, "b")
    assert np.array_equal(codec.decode_pg_binary(Kind.BIT, codec.encode_pg_binary(Kind.BIT, cb)), b)
    assert np.array_equal(codec.decode_pg_text(Kind.BIT, codec.encode_pg_text(Kind.BIT, cb)), b)
    assert np.array_equal(codec.decode_sqlite(Kind.BIT, codec.encode_sqlite(Kind.BIT, cb), DIM), b)
    ref = np.zeros(DIM, dtype=np.float32)
    for i, x in s.items():
        ref[i] = x
    cs = codec.check_sparse(s, DIM, "s")
    assert same_bits(codec.decode_pg_binary(Kind.SPARSE, codec.encode_pg_binary(Kind.SPARSE, cs)), ref)
    assert same_bits(codec.decode_pg_text(Kind.SPARSE, codec.encode_pg_text(Kind.SPARSE, cs)), ref)
    figures("inputs_tried", 3)


# ---------------------------------------------------------------------------- malformed inputs

E_DIM, E_VALUE, E_TYPE = vk.DimensionMismatchError, vk.InvalidVectorError, vk.VectorTypeError


@st.composite
def malformed_dense(draw: st.DrawFn) -> tuple[Any, type[Exception]]:
    """A bad value for ``Vector(DIM)`` and the error class the spec gives it."""
    good = draw(st.lists(f32, min_size=DIM, max_size=DIM))
    pos = draw(st.integers(0, DIM - 1))
    case = draw(st.sampled_from(
        ["dim", "huge", "nan", "inf", "overflow", "string", "strings", "nested", "ragged", "empty",
         "none_item", "object", "complex", "2d_array", "scalar", "bytes", "dict"]
    ))
    if case == "dim":
        n = draw(st.integers(1, 3 * DIM).filter(lambda n: n != DIM))
        return draw(st.lists(f32, min_size=n, max_size=n)), E_DIM
    if case == "huge":
        return np.ones(draw(st.integers(DIM + 1, 2_000_000)), dtype=draw(st.sampled_from([np.float32, np.float64]))), E_DIM
    if case in ("nan", "inf"):
        bad = float("nan") if case == "nan" else draw(st.sampled_from([float("inf"), float("-inf")]))
        good[pos] = bad
        form = draw(st.sampled_from(["list", "f32", "f64", ">f4", "strided"]))
        if form == "list":
            return good, E_VALUE
        if form == "strided":
            arr = np.zeros(2 * DIM)
            arr[::2] = good
            return arr[::2], E_VALUE
        return np.array(good, dtype=form if form == ">f4" else {"f32": np.float32, "f64": np.float64}[form]), E_VALUE
    if case == "overflow":  # finite in float64, infinite in float32
        good[pos] = draw(st.sampled_from([1.0, -1.0])) * draw(st.floats(3.5e38, 1.7e308))
        return draw(st.sampled_from([good, np.array(good, dtype=np.float64), np.array(good, dtype=">f8")])), E_VALUE
    if case == "string":
        return draw(st.text(max_size=30)), E_TYPE
    if case == "strings":
        return [draw(st.text(max_size=5)) for _ in range(DIM)], E_TYPE
    if case == "nested":
        return [good], E_VALUE  # a 1 x DIM matrix is not a vector
    if case == "ragged":
        return [good[:3], good[3:]], E_TYPE
    if case == "empty":
        return draw(st.sampled_from([[], (), np.array([], dtype=np.float32)])), E_VALUE
    if case == "none_item":
        good[pos] = None  # type: ignore[call-overload]
        return good, E_TYPE
    if case == "object":
        return [object()] * DIM, E_TYPE
    if case == "complex":
        return np.ones(DIM, dtype=np.complex64), E_TYPE
    if case == "2d_array":
        return np.ones((2, DIM // 2), dtype=np.float32), E_VALUE
    if case == "scalar":
        return draw(st.sampled_from([1.5, 3, object()])), E_TYPE
    if case == "bytes":
        return np.ones(DIM, dtype=np.float32).tobytes(), E_TYPE
    return {i: 1.0 for i in range(DIM)}, E_TYPE


@st.composite
def malformed_half(draw: st.DrawFn) -> tuple[Any, type[Exception]]:
    value = draw(st.lists(f16, min_size=DIM, max_size=DIM))
    value[draw(st.integers(0, DIM - 1))] = draw(st.sampled_from([1.0, -1.0])) * draw(st.floats(65520.0, 3e38))
    return value, E_VALUE


@st.composite
def malformed_bits(draw: st.DrawFn) -> tuple[Any, type[Exception]]:
    case = draw(st.sampled_from(["dim", "two", "chars", "float", "nan"]))
    good = draw(st.lists(st.integers(0, 1), min_size=DIM, max_size=DIM))
    pos = draw(st.integers(0, DIM - 1))
    if case == "dim":
        n = draw(st.integers(1, 3 * DIM).filter(lambda n: n != DIM))
        return [1] * n, E_DIM
    if case == "two":
        good[pos] = draw(st.integers().filter(lambda x: x not in (0, 1)))
        return good, E_VALUE
    if case == "chars":
        text = "".join(map(str, good))
        return text[:pos] + draw(st.characters().filter(lambda c: c not in "01")) + text[pos + 1 :], E_TYPE
    if case == "float":
        g: list[Any] = list(good)
        g[pos] = draw(st.floats(allow_nan=False).filter(lambda x: x not in (0.0, 1.0)))
        return g, E_VALUE
    g = list(map(float, good))
    g[pos] = float("nan")
    return g, E_VALUE


@st.composite
def malformed_sparse(draw: st.DrawFn) -> tuple[Any, type[Exception]]:
    case = draw(st.sampled_from(["range_dict", "negative", "dup_scipy", "dup_pgvector", "range_scipy", "nan", "float_key", "dim_scipy"]))
    if case == "range_dict":
        return {draw(st.integers(DIM, 10**12)): 1.0}, E_VALUE
    if case == "negative":
        return {draw(st.integers(-(10**12), -1)): 1.0}, E_VALUE
    if case == "dup_scipy":
        i = draw(st.integers(0, DIM - 1))
        return sp.coo_array((np.array([1.0, 2.0]), (np.array([i, i]),)), shape=(DIM,)), E_VALUE
    if case == "dup_pgvector":
        import pgvector

        i = draw(st.integers(0, DIM - 1))
        value = pgvector.SparseVector({i: 1.0}, DIM)
        value._indices = [i, i]  # a hand-built value object with a repeated index
        value._values = [1.0, 2.0]
        return value, E_VALUE
    if case == "range_scipy":
        n = draw(st.integers(1, 3 * DIM).filter(lambda n: n != DIM))
        return sp.coo_array((np.array([1.0]), (np.array([0]),)), shape=(n,)), E_DIM
    if case == "nan":
        return {draw(st.integers(0, DIM - 1)): draw(st.sampled_from([float("nan"), float("inf"), 1e300]))}, E_VALUE
    if case == "float_key":
        return {draw(st.floats(0.1, DIM - 1.1)): 1.0}, E_TYPE
    return sp.coo_array((np.array([1.0]), (np.array([0]), np.array([0]))), shape=(1, DIM + 1)), E_DIM


CHECKERS = {
    "vector": (codec.check_dense, malformed_dense()),
    "halfvec": (codec.check_half, malformed_half()),
    "bit": (codec.check_bits, malformed_bits()),
    "sparsevec": (codec.check_sparse, malformed_sparse()),
}


@pytest.mark.parametrize("kind", list(CHECKERS))
@examples(150)
@given(data=st.data())
def test_malformed_values_raise_the_specified_error(kind: str, data: st.DataObject, figures: Any) -> None:
    check, strategy = CHECKERS[kind]
    value, expected = data.draw(strategy)
    with pytest.raises(expected) as info:
        check(value, DIM, "Column 't.v'")
    message = str(info.value)
    assert message.startswith("Column 't.v'") and message.endswith(".") and "\n" not in message, message
    figures("inputs_tried")


# ---------------------------------------------------------------------------- through the databases


def _table(sparse_ok: bool) -> tuple[sa.MetaData, sa.Table]:
    md = sa.MetaData()
    cols: list[Any] = [
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("v", vk.Vector(DIM)),
        sa.Column("h", vk.HalfVector(DIM)),
        sa.Column("b", vk.BitVector(DIM)),
    ]
    if sparse_ok:
        cols.append(sa.Column("s", vk.SparseVector(DIM)))
    return md, sa.Table(unique("prop"), md, *cols)


@pytest.fixture
def prop_table(any_backend: Backend) -> Iterator[tuple[Backend, sa.Table]]:
    md, table = _table(any_backend.dialect == "postgresql")
    any_backend.create(md)
    yield any_backend, table
    any_backend.drop(md)


def _count(backend: Backend, table: sa.Table) -> int:
    return int(backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()))


@examples(25)
@given(v=dense, h=halfs, b=bits, s=sparse_dicts, data=st.data())
def test_values_round_trip_bit_exact_through_every_driver(
    prop_table: tuple[Backend, sa.Table], v: np.ndarray, h: np.ndarray, b: np.ndarray, s: dict[int, float],
    data: st.DataObject, figures: Any,
) -> None:
    backend, table = prop_table
    row: dict[str, Any] = {"id": data.draw(st.integers(1, 2**30)), "v": data.draw(input_forms(v)), "h": h, "b": b}
    if "s" in table.c:
        row["s"] = s

    def write_read(conn: sa.Connection) -> Any:
        conn.execute(table.delete())
        conn.execute(table.insert(), [row])
        return conn.execute(sa.select(table)).one()

    got = backend.run(write_read)
    assert same_bits(got.v, v), (got.v, v)
    assert same_bits(got.h, h), (got.h, h)
    assert got.b.dtype == np.bool_ and np.array_equal(got.b, b)
    if "s" in table.c:
        ref = np.zeros(DIM, dtype=np.float32)
        for i, x in s.items():
            ref[i] = x
        assert same_bits(got.s, ref)
    # The same value used as a query parameter finds the row at distance 0 (the bind path of operators).
    if np.any(v):
        dist = backend.run(lambda c: c.execute(sa.select(table.c.v.l2_distance(v))).scalar_one())
        assert dist == 0.0
    figures("inputs_tried", 4)


@examples(30)
@given(data=st.data())
def test_malformed_values_write_nothing_on_every_driver(
    prop_table: tuple[Backend, sa.Table], data: st.DataObject, figures: Any
) -> None:
    backend, table = prop_table
    columns = ["v", "h", "b", *(["s"] if "s" in table.c else [])]
    column = data.draw(st.sampled_from(columns))
    kind = {"v": "vector", "h": "halfvec", "b": "bit", "s": "sparsevec"}[column]
    bad, expected = data.draw(CHECKERS[kind][1])
    before = _count(backend, table)
    good = {"id": 1, "v": np.ones(DIM), "h": np.ones(DIM), "b": [1] * DIM}
    if "s" in table.c:
        good["s"] = {0: 1.0}
    rows = [dict(good, id=i) for i in range(1, 4)]
    rows[data.draw(st.integers(0, 2))][column] = bad
    how = data.draw(st.sampled_from(["core", "orm", "bulk_load"]))

    def write(conn: sa.Connection) -> None:
        if how == "core":
            conn.execute(table.insert(), rows)
        elif how == "bulk_load":
            vk.bulk_load(conn, table, rows)
        else:
            with Session(bind=conn) as session:
                session.execute(table.insert(), rows)

    with pytest.raises(expected):
        backend.run(write)
    assert _count(backend, table) == before
    assert not backend.statements or not any(s.lstrip().upper().startswith(("INSERT", "COPY")) for s in backend.statements)
    backend.statements.clear()
    figures("inputs_tried")


@pytest.mark.parametrize("dim", [0, -5, "many", 2.5j])
def test_bad_declared_dimensions_are_refused(dim: Any) -> None:
    with pytest.raises(vk.InvalidVectorError):
        vk.Vector(dim)
