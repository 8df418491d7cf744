"""Unit tests for :mod:`sqlalchemy_vectorknobs.codec` (no database needed).

* round trips of every Kind through the sqlite-vec, pgvector binary and pgvector text encodings;
* pgvector-python's value classes as an independent reference for the pgvector wire formats;
* the inputs each ``check_*`` function accepts, and the errors (class and wording) it raises.
"""

from __future__ import annotations

import array
import math
import re
import struct
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pgvector
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sqlalchemy_vectorknobs import codec
from sqlalchemy_vectorknobs.codec import (
    HALF_MAX,
    Kind,
    SparseValue,
    check_bits,
    check_dense,
    check_half,
    check_sparse,
    decode_pg_binary,
    decode_pg_text,
    decode_sqlite,
    encode_pg_binary,
    encode_pg_text,
    encode_sqlite,
)
from sqlalchemy_vectorknobs.exc import (
    DimensionMismatchError,
    InvalidVectorError,
    VectorKnobsError,
    VectorTypeError,
)

# Validation must never make numpy warn (overflow in a sum or cast), valid input or not.
pytestmark = pytest.mark.filterwarnings("error::RuntimeWarning")

SUBJECT = "Column 'doc.embedding'"
MESSAGE_RE = re.compile(r"^Column 'doc\.embedding' [^\n]*\.$")

DENSE_DIMS = [1, 2, 3, 16, 100, 1000]
BIT_DIMS = [1, 7, 8, 9, 64, 130, 1024]
SPARSE_DIMS = [1, 2, 7, 130, 1000]
DIMS = {Kind.FLOAT32: DENSE_DIMS, Kind.FLOAT16: DENSE_DIMS, Kind.BIT: BIT_DIMS, Kind.SPARSE: SPARSE_DIMS}
KIND_DIMS = [pytest.param(k, d, id=f"{k.value}-{d}") for k in Kind for d in DIMS[k]]
SQLITE_KIND_DIMS = [p for p in KIND_DIMS if p.values[0] is not Kind.SPARSE]

# What the decoders return for each kind (sparse vectors come back dense).
DECODED_DTYPE = {Kind.FLOAT32: np.float32, Kind.FLOAT16: np.float16, Kind.BIT: np.bool_, Kind.SPARSE: np.float32}


# --------------------------------------------------------------------------- helpers


def _seed(kind: Kind, dim: int, salt: int = 0) -> int:
    return [Kind.FLOAT32, Kind.FLOAT16, Kind.BIT, Kind.SPARSE].index(kind) * 100_003 + dim * 7 + salt


def random_float32(rng: np.random.Generator, dim: int) -> np.ndarray:
    """Finite float32 values: half normal, half random bit patterns (subnormals, huge, -0.0 ...)."""
    normal = rng.standard_normal(dim).astype(np.float32)
    raw = rng.integers(0, 2**32, size=dim, dtype=np.uint64).astype(np.uint32).view(np.float32)
    out = np.where(rng.random(dim) < 0.5, normal, raw)
    return np.where(np.isfinite(out), out, np.float32(1.25)).astype(np.float32)


def random_float16(rng: np.random.Generator, dim: int) -> np.ndarray:
    normal = (rng.standard_normal(dim) * 100).astype(np.float16)
    raw = rng.integers(0, 2**16, size=dim, dtype=np.uint32).astype(np.uint16).view(np.float16)
    out = np.where(rng.random(dim) < 0.5, normal, raw)
    return np.where(np.isfinite(out), out, np.float16(-0.5)).astype(np.float16)


def make_value(kind: Kind, dim: int, salt: int = 0) -> Any:
    """A checked (canonical) value of ``kind`` with ``dim`` dimensions, from seeded random data."""
    rng = np.random.default_rng(_seed(kind, dim, salt))
    if kind is Kind.FLOAT32:
        return check_dense(random_float32(rng, dim), dim, SUBJECT)
    if kind is Kind.FLOAT16:
        return check_half(random_float16(rng, dim), dim, SUBJECT)
    if kind is Kind.BIT:
        return check_bits(rng.random(dim) < 0.5, dim, SUBJECT)
    dense = np.where(rng.random(dim) < 0.3, random_float32(rng, dim), np.float32(0))
    return check_sparse(dense, dim, SUBJECT)


def expected_decoded(kind: Kind, value: Any) -> np.ndarray:
    return value.to_dense() if kind is Kind.SPARSE else value


def assert_bit_exact(actual: np.ndarray, expected: np.ndarray, dtype: Any) -> None:
    """Same dtype (native), same shape, and the same bits (so -0.0 and subnormals count)."""
    assert isinstance(actual, np.ndarray)
    assert actual.dtype == np.dtype(dtype), (actual.dtype, dtype)
    assert actual.dtype.isnative
    assert actual.shape == expected.shape
    expected = np.asarray(expected, dtype=dtype)
    if actual.dtype.kind == "f":
        uint = np.uint32 if actual.dtype.itemsize == 4 else np.uint16
        np.testing.assert_array_equal(actual.view(uint), expected.view(uint))
    else:
        np.testing.assert_array_equal(actual, expected)


def to_pgvector(kind: Kind, value: Any) -> Any:
    """The pgvector-python value class instance holding the same vector."""
    if kind is Kind.FLOAT32:
        return pgvector.Vector(value)
    if kind is Kind.FLOAT16:
        return pgvector.HalfVector(value)
    if kind is Kind.BIT:
        return pgvector.Bit(value)
    return pgvector.SparseVector(dict(zip(value.indices.tolist(), value.values.tolist())), value.dim)


PG_CLASS = {
    Kind.FLOAT32: pgvector.Vector,
    Kind.FLOAT16: pgvector.HalfVector,
    Kind.BIT: pgvector.Bit,
    Kind.SPARSE: pgvector.SparseVector,
}


def pgvector_numpy(kind: Kind, obj: Any) -> np.ndarray:
    return np.asarray(obj.to_numpy())


# --------------------------------------------------------------------------- canonical values


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_checked_values_are_canonical(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim)
    if kind is Kind.SPARSE:
        assert isinstance(value, SparseValue)
        assert value.dim == dim
        assert value.indices.dtype == np.int32 and value.values.dtype == np.float32
        assert value.indices.dtype.isnative and value.values.dtype.isnative
        assert np.all(np.diff(value.indices) > 0)
        assert np.all(value.values != 0)
        assert value.to_dense().shape == (dim,)
    else:
        assert value.dtype == np.dtype(DECODED_DTYPE[kind]) and value.dtype.isnative
        assert value.shape == (dim,)


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("kind, dim", SQLITE_KIND_DIMS)
def test_sqlite_round_trip(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim)
    blob = encode_sqlite(kind, value)
    assert isinstance(blob, bytes)
    assert len(blob) == (math.ceil(dim / 8) if kind is Kind.BIT else 4 * dim)
    assert_bit_exact(decode_sqlite(kind, blob, dim), value, DECODED_DTYPE[kind])


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_pg_binary_round_trip(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim)
    data = encode_pg_binary(kind, value)
    assert isinstance(data, bytes)
    assert_bit_exact(decode_pg_binary(kind, data), expected_decoded(kind, value), DECODED_DTYPE[kind])
    # Drivers hand over memoryviews too.
    assert_bit_exact(decode_pg_binary(kind, memoryview(data)), expected_decoded(kind, value), DECODED_DTYPE[kind])


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_pg_text_round_trip(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim)
    text = encode_pg_text(kind, value)
    assert isinstance(text, str)
    assert "\n" not in text and " " not in text
    assert_bit_exact(decode_pg_text(kind, text), expected_decoded(kind, value), DECODED_DTYPE[kind])


F32_MAX = np.finfo(np.float32).max
F32_TINY = np.finfo(np.float32).smallest_subnormal
SPECIAL_F32 = np.array(
    [0.0, -0.0, 1.0, -1.0, 0.1, 1 / 3, F32_MAX, -F32_MAX, F32_TINY, -F32_TINY,
     np.finfo(np.float32).tiny, 1e-30, 1e30, 16777217.0, 3.4e38],
    dtype=np.float32,
)
SPECIAL_F16 = np.array(
    [0.0, -0.0, 1.0, -2.5, 0.1, HALF_MAX, -HALF_MAX, np.finfo(np.float16).smallest_subnormal,
     np.finfo(np.float16).tiny, 1 / 3, 2048.0, 2049.0],
    dtype=np.float16,
)


@pytest.mark.parametrize("encoding", ["sqlite", "pg_binary", "pg_text"])
def test_special_float_values_round_trip(encoding: str) -> None:
    for kind, raw in [(Kind.FLOAT32, SPECIAL_F32), (Kind.FLOAT16, SPECIAL_F16)]:
        value = codec.check(kind, raw, raw.shape[0], SUBJECT)
        assert_bit_exact(value, raw, raw.dtype)
        if encoding == "sqlite":
            back = decode_sqlite(kind, encode_sqlite(kind, value), raw.shape[0])
        elif encoding == "pg_binary":
            back = decode_pg_binary(kind, encode_pg_binary(kind, value))
        else:
            back = decode_pg_text(kind, encode_pg_text(kind, value))
        assert_bit_exact(back, raw, raw.dtype)


@pytest.mark.parametrize("dim", [1, 5, 130])
def test_sparse_all_zero_round_trip(dim: int) -> None:
    value = check_sparse([0.0] * dim, dim, SUBJECT)
    assert value.indices.size == 0 and value.values.size == 0
    assert encode_pg_text(Kind.SPARSE, value) == f"{{}}/{dim}"
    assert encode_pg_binary(Kind.SPARSE, value) == struct.pack(">iii", dim, 0, 0)
    zeros = np.zeros(dim, dtype=np.float32)
    assert_bit_exact(decode_pg_binary(Kind.SPARSE, encode_pg_binary(Kind.SPARSE, value)), zeros, np.float32)
    assert_bit_exact(decode_pg_text(Kind.SPARSE, encode_pg_text(Kind.SPARSE, value)), zeros, np.float32)


def test_sparse_has_no_sqlite_encoding() -> None:
    with pytest.raises(InvalidVectorError):
        encode_sqlite(Kind.SPARSE, make_value(Kind.SPARSE, 7))


@settings(max_examples=100, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.floats(width=32, allow_nan=False, allow_infinity=False), min_size=1, max_size=64))
def test_float32_round_trip_property(values: list[float]) -> None:
    raw = np.array(values, dtype=np.float32)
    value = check_dense(values, len(values), SUBJECT)
    assert_bit_exact(value, raw, np.float32)
    assert_bit_exact(decode_sqlite(Kind.FLOAT32, encode_sqlite(Kind.FLOAT32, value), None), raw, np.float32)
    assert_bit_exact(decode_pg_binary(Kind.FLOAT32, encode_pg_binary(Kind.FLOAT32, value)), raw, np.float32)
    assert_bit_exact(decode_pg_text(Kind.FLOAT32, encode_pg_text(Kind.FLOAT32, value)), raw, np.float32)


def test_pg_text_decodes_shortest_float32_strings() -> None:
    """PostgreSQL prints each float32 as its shortest round-trip string; those must parse bit-exact."""
    rng = np.random.default_rng(1234)
    raw = rng.integers(0, 2**32, size=20_000, dtype=np.uint64).astype(np.uint32).view(np.float32)
    raw = raw[np.isfinite(raw)]
    text = "[" + ",".join(np.format_float_scientific(v, unique=True) for v in raw) + "]"
    assert_bit_exact(decode_pg_text(Kind.FLOAT32, text), raw, np.float32)


# --------------------------------------------------------------------------- exact wire layouts


def test_sqlite_float32_layout_is_little_endian() -> None:
    value = check_dense([1.0, -2.5], 2, SUBJECT)
    assert encode_sqlite(Kind.FLOAT32, value) == struct.pack("<2f", 1.0, -2.5)
    # Half vectors are stored as float32 in sqlite-vec.
    half = check_half([1.0, -2.5], 2, SUBJECT)
    assert encode_sqlite(Kind.FLOAT16, half) == struct.pack("<2f", 1.0, -2.5)


@pytest.mark.parametrize("dim", [1, 7, 8, 9, 130])
def test_sqlite_bit_layout_is_lsb_first(dim: int) -> None:
    bits = np.random.default_rng(dim).random(dim) < 0.5
    blob = encode_sqlite(Kind.BIT, check_bits(bits, dim, SUBJECT))
    assert blob == np.packbits(bits, bitorder="little").tobytes()
    for i in range(dim):
        assert (blob[i // 8] >> (i % 8)) & 1 == int(bits[i])


def test_sqlite_bit_layout_example() -> None:
    # bit 0 -> byte 0 LSB; bit 9 -> byte 1, value 0b10
    value = check_bits("1000000001", 10, SUBJECT)
    assert encode_sqlite(Kind.BIT, value) == b"\x01\x02"
    assert decode_sqlite(Kind.BIT, b"\x01\x02", 10).tolist() == [True] + [False] * 8 + [True]
    # Without a dim the padding bits come back too.
    assert decode_sqlite(Kind.BIT, b"\x01\x02", None).shape == (16,)


def test_pg_binary_layouts() -> None:
    assert encode_pg_binary(Kind.FLOAT32, check_dense([1.0, -2.0], 2, SUBJECT)) == struct.pack(">HH2f", 2, 0, 1.0, -2.0)
    assert encode_pg_binary(Kind.FLOAT16, check_half([1.0, -2.0], 2, SUBJECT)) == struct.pack(">HH2e", 2, 0, 1.0, -2.0)
    assert encode_pg_binary(Kind.BIT, check_bits("1000000001", 10, SUBJECT)) == struct.pack(">i", 10) + b"\x80\x40"
    sparse = check_sparse({4: 2.0, 0: 1.5}, 5, SUBJECT)
    assert encode_pg_binary(Kind.SPARSE, sparse) == struct.pack(">iii2i2f", 5, 2, 0, 0, 4, 1.5, 2.0)
    # encode_pg_vector is the FLOAT32 case
    v = make_value(Kind.FLOAT32, 16)
    assert codec.encode_pg_vector(v) == encode_pg_binary(Kind.FLOAT32, v)
    assert_bit_exact(codec.decode_pg_vector(codec.encode_pg_vector(v)), v, np.float32)


def test_pg_text_layouts() -> None:
    assert encode_pg_text(Kind.FLOAT32, check_dense([1, 2.5, -3], 3, SUBJECT)) == "[1.0,2.5,-3.0]"
    assert encode_pg_text(Kind.BIT, check_bits([0, 1, 0, 1, 1], 5, SUBJECT)) == "01011"
    assert encode_pg_text(Kind.SPARSE, check_sparse({2: 2, 0: 1.5}, 5, SUBJECT)) == "{1:1.5,3:2.0}/5"
    # PostgreSQL's own output style (no ".0") decodes as well.
    assert_bit_exact(decode_pg_text(Kind.SPARSE, "{1:1.5,3:2}/5"), np.array([1.5, 0, 2, 0, 0]), np.float32)
    assert_bit_exact(decode_pg_text(Kind.FLOAT32, "[1,2.5,-3]"), np.array([1, 2.5, -3]), np.float32)
    assert_bit_exact(decode_pg_text(Kind.FLOAT16, "[1,2.5,-3]"), np.array([1, 2.5, -3]), np.float16)
    assert_bit_exact(decode_pg_text(Kind.BIT, "01011"), np.array([0, 1, 0, 1, 1], bool), np.bool_)


# --------------------------------------------------------------------------- pgvector-python as reference


def test_pgvector_reference_version() -> None:
    from importlib.metadata import version

    assert version("pgvector") == "0.5.1"


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_pg_binary_bytes_equal_pgvector(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim)
    assert encode_pg_binary(kind, value) == to_pgvector(kind, value).to_binary()


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_decode_pg_binary_reads_pgvector(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim, salt=1)
    ref = to_pgvector(kind, value)
    decoded = decode_pg_binary(kind, ref.to_binary())
    assert_bit_exact(decoded, expected_decoded(kind, value), DECODED_DTYPE[kind])
    assert_bit_exact(decoded, pgvector_numpy(kind, ref), DECODED_DTYPE[kind])


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_pgvector_from_binary_reads_ours(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim, salt=2)
    ref = to_pgvector(kind, value)
    parsed = PG_CLASS[kind].from_binary(encode_pg_binary(kind, value))
    assert parsed == ref
    assert_bit_exact(pgvector_numpy(kind, parsed), expected_decoded(kind, value), DECODED_DTYPE[kind])


@pytest.mark.parametrize("kind, dim", KIND_DIMS)
def test_pg_text_equals_pgvector(kind: Kind, dim: int) -> None:
    value = make_value(kind, dim, salt=3)
    ref = to_pgvector(kind, value)
    ours = encode_pg_text(kind, value)
    assert ours == ref.to_text()
    # each side reads the other's text
    assert_bit_exact(decode_pg_text(kind, ref.to_text()), expected_decoded(kind, value), DECODED_DTYPE[kind])
    assert PG_CLASS[kind].from_text(ours) == ref


def test_pgvector_reference_values_round_trip_through_checkers() -> None:
    vec = pgvector.Vector([1.5, -2.0, 0.25])
    half = pgvector.HalfVector([1.5, -2.0, 0.25])
    bit = pgvector.Bit("101100111")
    sparse = pgvector.SparseVector({0: 1.5, 4: -2.0}, 6)
    assert encode_pg_binary(Kind.FLOAT32, check_dense(vec, 3, SUBJECT)) == vec.to_binary()
    assert encode_pg_binary(Kind.FLOAT16, check_half(half, 3, SUBJECT)) == half.to_binary()
    assert encode_pg_binary(Kind.BIT, check_bits(bit, 9, SUBJECT)) == bit.to_binary()
    assert encode_pg_binary(Kind.SPARSE, check_sparse(sparse, 6, SUBJECT)) == sparse.to_binary()


# --------------------------------------------------------------------------- accepted inputs

EXPECTED3 = np.array([1.0, -2.5, 3.0], dtype=np.float32)


def _dense_inputs() -> list[Any]:
    base = np.array([1.0, 9.0, -2.5, 9.0, 3.0, 9.0])
    return [
        pytest.param([1.0, -2.5, 3.0], id="list"),
        pytest.param([1, -2.5, 3], id="list-mixed-int"),
        pytest.param((1.0, -2.5, 3.0), id="tuple"),
        pytest.param(np.array([1.0, -2.5, 3.0], dtype=np.float64), id="float64"),
        pytest.param(np.array([1.0, -2.5, 3.0], dtype=np.float16), id="float16"),
        pytest.param(np.array([1.0, -2.5, 3.0], dtype=np.float32), id="float32"),
        pytest.param(np.array([1.0, -2.5, 3.0], dtype=">f4"), id="big-endian-f4"),
        pytest.param(np.array([1.0, -2.5, 3.0], dtype=">f8"), id="big-endian-f8"),
        pytest.param(base[::2], id="non-contiguous-float64"),
        pytest.param(base.astype(np.float32)[::2], id="non-contiguous-float32"),
        pytest.param(array.array("f", [1.0, -2.5, 3.0]), id="array-f"),
        pytest.param(array.array("d", [1.0, -2.5, 3.0]), id="array-d"),
        pytest.param(pgvector.Vector([1.0, -2.5, 3.0]), id="pgvector-Vector"),
        pytest.param(pgvector.HalfVector([1.0, -2.5, 3.0]), id="pgvector-HalfVector"),
    ]


@pytest.mark.parametrize("value", _dense_inputs())
def test_check_dense_accepts(value: Any) -> None:
    out = check_dense(value, 3, SUBJECT)
    assert_bit_exact(out, EXPECTED3, np.float32)
    assert out.ndim == 1
    # dim=None means "any dimension"
    assert_bit_exact(check_dense(value, None, SUBJECT), EXPECTED3, np.float32)


@pytest.mark.parametrize(
    "value, expected",
    [
        (np.array([1, -2, 3], dtype=np.int32), [1, -2, 3]),
        (np.array([1, 2, 3], dtype=np.uint8), [1, 2, 3]),
        (np.array([2**40, -(2**40)], dtype=np.int64), [2.0**40, -(2.0**40)]),
        ([F32_MAX.item(), -F32_MAX.item()], [F32_MAX, -F32_MAX]),
    ],
    ids=["int32", "uint8", "int64", "float32-max-as-float64"],
)
def test_check_dense_accepts_integers_and_extremes(value: Any, expected: list[float]) -> None:
    out = check_dense(value, len(expected), SUBJECT)
    assert_bit_exact(out, np.array(expected, dtype=np.float32), np.float32)


@pytest.mark.parametrize("value", [[HALF_MAX, -HALF_MAX, 0.5], np.array([HALF_MAX, -HALF_MAX, 0.5], np.float32),
                                   pgvector.HalfVector([HALF_MAX, -HALF_MAX, 0.5])])
def test_check_half_accepts_full_range(value: Any) -> None:
    out = check_half(value, 3, SUBJECT)
    assert_bit_exact(out, np.array([HALF_MAX, -HALF_MAX, 0.5], dtype=np.float16), np.float16)


BITS = [True, False, True, True, False, False, False, True, True]


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(BITS, id="bool-list"),
        pytest.param([int(b) for b in BITS], id="int-list"),
        pytest.param(tuple(int(b) for b in BITS), id="int-tuple"),
        pytest.param(np.array(BITS), id="bool-array"),
        pytest.param(np.array(BITS, dtype=np.uint8), id="uint8-array"),
        pytest.param(np.array(BITS, dtype=np.int64), id="int64-array"),
        pytest.param(np.array(BITS, dtype=np.float64), id="float-0-1-array"),
        pytest.param("".join("1" if b else "0" for b in BITS), id="str"),
        pytest.param(pgvector.Bit(BITS), id="pgvector-Bit"),
    ],
)
def test_check_bits_accepts(value: Any) -> None:
    out = check_bits(value, len(BITS), SUBJECT)
    assert_bit_exact(out, np.array(BITS), np.bool_)
    assert_bit_exact(check_bits(value, None, SUBJECT), np.array(BITS), np.bool_)


SPARSE_DENSE = np.array([0, 1.5, 0, 0, -2.0, 0, 0.25], dtype=np.float32)


def _sparse_inputs() -> list[Any]:
    idx = np.array([4, 1, 6])
    vals = np.array([-2.0, 1.5, 0.25])
    params = [
        pytest.param({1: 1.5, 4: -2.0, 6: 0.25}, 7, id="dict"),
        pytest.param({6: 0.25, 4: -2.0, 1: 1.5, 3: 0.0}, 7, id="dict-unsorted-with-zero"),
        pytest.param({np.int64(1): np.float64(1.5), np.int32(4): -2, 6: np.float32(0.25)}, 7, id="dict-numpy-scalars"),
        pytest.param(sp.csr_matrix((vals, (np.zeros(3, int), idx)), shape=(1, 7)), None, id="csr_matrix-row"),
        pytest.param(sp.csr_matrix((vals, (np.zeros(3, int), idx)), shape=(1, 7)), 7, id="csr_matrix-row-dim"),
        pytest.param(sp.csc_matrix((vals, (idx, np.zeros(3, int))), shape=(7, 1)), 7, id="csc_matrix-column"),
        pytest.param(sp.coo_matrix((vals, (np.zeros(3, int), idx)), shape=(1, 7)), 7, id="coo_matrix-row"),
        pytest.param(sp.coo_array((vals, (np.zeros(3, int), idx)), shape=(1, 7)), 7, id="coo_array-2d"),
        pytest.param(sp.csr_array(SPARSE_DENSE.reshape(1, -1)), 7, id="csr_array-2d"),
        pytest.param(pgvector.SparseVector({1: 1.5, 4: -2.0, 6: 0.25}, 7), 7, id="pgvector-SparseVector"),
        pytest.param(pgvector.SparseVector({1: 1.5, 4: -2.0, 6: 0.25}, 7), None, id="pgvector-SparseVector-nodim"),
        pytest.param(SPARSE_DENSE.tolist(), 7, id="dense-list"),
        pytest.param(SPARSE_DENSE.tolist(), None, id="dense-list-nodim"),
        pytest.param(SPARSE_DENSE.astype(np.float64), 7, id="dense-float64-array"),
        pytest.param(pgvector.Vector(SPARSE_DENSE.tolist()), 7, id="pgvector-Vector"),
    ]
    try:
        one_d = sp.coo_array((vals, (idx,)), shape=(7,))
    except Exception:  # pragma: no cover - scipy without 1-D sparse arrays
        return params
    params.append(pytest.param(one_d, 7, id="coo_array-1d"))
    params.append(pytest.param(one_d, None, id="coo_array-1d-nodim"))
    return params


@pytest.mark.parametrize("value, dim", _sparse_inputs())
def test_check_sparse_accepts(value: Any, dim: int | None) -> None:
    out = check_sparse(value, dim, SUBJECT)
    assert isinstance(out, SparseValue)
    assert out.dim == 7
    assert out.indices.dtype == np.int32 and out.indices.dtype.isnative
    assert out.values.dtype == np.float32 and out.values.dtype.isnative
    assert out.indices.tolist() == [1, 4, 6]
    assert_bit_exact(out.values, np.array([1.5, -2.0, 0.25]), np.float32)
    assert_bit_exact(out.to_dense(), SPARSE_DENSE, np.float32)


def test_check_sparse_drops_explicit_zeros_from_scipy() -> None:
    m = sp.coo_matrix((np.array([0.0, 3.0]), (np.array([0, 0]), np.array([2, 5]))), shape=(1, 6))
    out = check_sparse(m, 6, SUBJECT)
    assert out.indices.tolist() == [5]
    assert out.values.tolist() == [3.0]


def test_check_sparse_passes_sparse_value_through() -> None:
    value = make_value(Kind.SPARSE, 130)
    assert check_sparse(value, 130, SUBJECT) is value
    assert check_sparse(value, None, SUBJECT) is value


def test_check_dispatches_by_kind() -> None:
    assert codec.CHECKERS == {
        Kind.FLOAT32: check_dense, Kind.FLOAT16: check_half, Kind.BIT: check_bits, Kind.SPARSE: check_sparse
    }
    assert codec.check(Kind.FLOAT16, [1, 2], 2, SUBJECT).dtype == np.float16
    assert codec.check(Kind.BIT, "01", 2, SUBJECT).dtype == np.bool_
    assert isinstance(codec.check(Kind.SPARSE, [0, 2], 2, SUBJECT), SparseValue)
    assert codec.to_dense(Kind.SPARSE, check_sparse({1: 2.0}, 3, SUBJECT)).tolist() == [0.0, 2.0, 0.0]
    v = check_dense([1, 2], 2, SUBJECT)
    assert codec.to_dense(Kind.FLOAT32, v) is v


# --------------------------------------------------------------------------- errors

nan, inf = float("nan"), float("inf")


def _coo_dup() -> Any:
    return sp.coo_matrix((np.array([1.0, 2.0]), (np.array([0, 0]), np.array([2, 2]))), shape=(1, 5))


def _ragged_cases() -> list[Any]:
    return [
        pytest.param(check_dense, [[1.0, 2.0], [3.0]], None, VectorTypeError, "malformed", id="dense-ragged-nested"),
        pytest.param(check_dense, [1.0, [2.0, 3.0]], None, VectorTypeError, "malformed", id="dense-ragged-mixed"),
    ]


# (checker, value, dim, exact class, fragment the message must contain)
ERROR_CASES = [
    # dimension
    pytest.param(check_dense, [1.0, 2.0], 3, DimensionMismatchError, "expects 3 dimensions, got 2", id="dense-dim"),
    pytest.param(check_dense, np.zeros(4, np.float32), 3, DimensionMismatchError, "got 4", id="dense-dim-array"),
    pytest.param(check_half, [1.0, 2.0, 3.0], 2, DimensionMismatchError, "expects 2 dimensions", id="half-dim"),
    pytest.param(check_bits, "0101", 5, DimensionMismatchError, "expects 5 dimensions, got 4", id="bits-dim-str"),
    pytest.param(check_bits, [1, 0], 3, DimensionMismatchError, "expects 3 dimensions", id="bits-dim-list"),
    # non-finite
    pytest.param(check_dense, [1.0, nan, 3.0], 3, InvalidVectorError, "nan at index 1", id="dense-nan"),
    pytest.param(check_dense, [1.0, 2.0, inf], 3, InvalidVectorError, "inf at index 2", id="dense-posinf"),
    pytest.param(check_dense, [-inf, 2.0], 2, InvalidVectorError, "-inf at index 0", id="dense-neginf"),
    pytest.param(check_dense, np.array([0, 0, 0, 0, np.nan], np.float32), 5, InvalidVectorError, "index 4",
                 id="dense-nan-float32-array"),
    pytest.param(check_dense, np.array([1, np.inf], np.float16), 2, InvalidVectorError, "inf at index 1",
                 id="dense-inf-float16-array"),
    pytest.param(check_half, [0.0, nan], 2, InvalidVectorError, "nan at index 1", id="half-nan"),
    pytest.param(check_half, [inf], 1, InvalidVectorError, "inf at index 0", id="half-inf"),
    # wrong whole value
    pytest.param(check_dense, "1,2,3", None, VectorTypeError, "got a str", id="dense-str"),
    pytest.param(check_dense, "[1,2,3]", 3, VectorTypeError, "got a str", id="dense-str-brackets"),
    pytest.param(check_dense, b"\x00\x00\x80\x3f", None, VectorTypeError, "got a bytes", id="dense-bytes"),
    pytest.param(check_dense, bytearray(b"ab"), None, VectorTypeError, "got a bytearray", id="dense-bytearray"),
    pytest.param(check_dense, None, 3, VectorTypeError, "got a NoneType", id="dense-none"),
    pytest.param(check_dense, 1.5, None, VectorTypeError, "got a float", id="dense-python-float"),
    pytest.param(check_dense, object(), None, VectorTypeError, "got a object", id="dense-object"),
    pytest.param(check_dense, {1: 2.0}, None, VectorTypeError, "got a dict", id="dense-dict"),
    pytest.param(check_half, None, 3, VectorTypeError, "NoneType", id="half-none"),
    # bad elements
    pytest.param(check_dense, [1.0, "a", 3.0], 3, VectorTypeError, "non-numeric", id="dense-list-with-str"),
    pytest.param(check_dense, [1.0, None, 3.0], 3, VectorTypeError, "non-numeric", id="dense-list-with-none"),
    pytest.param(check_dense, ["1", "2"], 2, VectorTypeError, "non-numeric", id="dense-list-of-str"),
    pytest.param(check_dense, [True, False], 2, VectorTypeError, "non-numeric", id="dense-bools"),
    pytest.param(check_dense, np.array([1 + 2j]), 1, VectorTypeError, "non-numeric", id="dense-complex"),
    # shape
    pytest.param(check_dense, [], None, InvalidVectorError, "empty", id="dense-empty-list"),
    pytest.param(check_dense, np.array([], np.float32), None, InvalidVectorError, "empty", id="dense-empty-array"),
    pytest.param(check_dense, [[1.0, 2.0], [3.0, 4.0]], None, InvalidVectorError, "2 dimensions",
                 id="dense-2d-list"),
    pytest.param(check_dense, np.zeros((1, 3), np.float32), 3, InvalidVectorError, "shape (1, 3)", id="dense-2d"),
    pytest.param(check_dense, np.float64(1.0), None, InvalidVectorError, "0 dimensions", id="dense-0d-scalar"),
    pytest.param(check_dense, np.array(1.0, np.float32), 1, InvalidVectorError, "0 dimensions", id="dense-0d"),
    pytest.param(check_bits, np.zeros((2, 2), bool), None, InvalidVectorError, "2 dimensions", id="bits-2d"),
    pytest.param(check_bits, "", None, InvalidVectorError, "empty", id="bits-empty-str"),
    pytest.param(check_bits, [], None, InvalidVectorError, "empty", id="bits-empty-list"),
    # float32 / float16 range
    pytest.param(check_dense, [1.0, 1e39], 2, InvalidVectorError, "at index 1, which overflows float32",
                 id="dense-overflow"),
    pytest.param(check_dense, np.array([-1e39, 0.0]), 2, InvalidVectorError, "index 0", id="dense-neg-overflow"),
    pytest.param(check_dense, np.array([1e300], dtype=">f8"), 1, InvalidVectorError, "overflows float32",
                 id="dense-overflow-big-endian"),
    pytest.param(check_half, [0.0, 65520.0], 2, InvalidVectorError, "index 1, outside the half-precision range",
                 id="half-over"),
    pytest.param(check_half, [-70000.0], 1, InvalidVectorError, "half-precision", id="half-under"),
    pytest.param(check_half, [HALF_MAX + 1], 1, InvalidVectorError, "65504", id="half-just-over"),
    pytest.param(check_half, [1e39], 1, InvalidVectorError, "overflows float32", id="half-float32-overflow"),
    # bits
    pytest.param(check_bits, [0, 2, 1], 3, InvalidVectorError, "got 2 at index 1", id="bits-2"),
    pytest.param(check_bits, np.array([0, 1, -1]), 3, InvalidVectorError, "index 2", id="bits-negative"),
    pytest.param(check_bits, [0.5, 1.0], 2, InvalidVectorError, "index 0", id="bits-half"),
    pytest.param(check_bits, [1.0, nan], 2, InvalidVectorError, "index 1", id="bits-nan"),
    pytest.param(check_bits, "0120", 4, VectorTypeError, "other than '0' and '1'", id="bits-str-2"),
    pytest.param(check_bits, "01 1", 4, VectorTypeError, "other than '0' and '1'", id="bits-str-space"),
    pytest.param(check_bits, "abc", None, VectorTypeError, "other than '0' and '1'", id="bits-str-letters"),
    pytest.param(check_bits, ["0", "1"], 2, VectorTypeError, "dtype", id="bits-list-of-str"),
    pytest.param(check_bits, [0, None], 2, VectorTypeError, "dtype", id="bits-list-with-none"),
    pytest.param(check_bits, None, 2, VectorTypeError, "NoneType", id="bits-none"),
    pytest.param(check_bits, b"01", 2, VectorTypeError, "bytes", id="bits-bytes"),
    # sparse
    pytest.param(check_sparse, {5: 1.0}, 5, InvalidVectorError, "index 5, outside 0..4", id="sparse-index-high"),
    pytest.param(check_sparse, {-1: 1.0}, 5, InvalidVectorError, "index -1, outside 0..4", id="sparse-index-neg"),
    pytest.param(check_sparse, _coo_dup(), 5, InvalidVectorError, "index 2 more than once", id="sparse-dup"),
    pytest.param(check_sparse, _coo_dup(), None, InvalidVectorError, "more than once", id="sparse-dup-nodim"),
    pytest.param(check_sparse, {0: 1.0}, None, InvalidVectorError, "declares no dimension", id="sparse-dict-nodim"),
    pytest.param(check_sparse, sp.csr_matrix(np.ones((1, 5))), 6, DimensionMismatchError,
                 "expects 6 dimensions, got 5", id="sparse-dim-scipy"),
    pytest.param(check_sparse, pgvector.SparseVector({0: 1.0}, 5), 4, DimensionMismatchError,
                 "expects 4 dimensions, got 5", id="sparse-dim-pgvector"),
    pytest.param(check_sparse, [0.0, 1.0, 0.0], 4, DimensionMismatchError, "got 3", id="sparse-dim-dense"),
    pytest.param(check_sparse, SparseValue(3, np.array([0], np.int32), np.array([1.0], np.float32)), 4,
                 DimensionMismatchError, "got 3", id="sparse-dim-sparsevalue"),
    pytest.param(check_sparse, sp.csr_matrix(np.ones((2, 3))), None, InvalidVectorError, "shape (2, 3)",
                 id="sparse-2d-matrix"),
    pytest.param(check_sparse, {0: nan}, 3, InvalidVectorError, "nan", id="sparse-nan"),
    pytest.param(check_sparse, {0: -inf}, 3, InvalidVectorError, "-inf", id="sparse-neginf"),
    pytest.param(check_sparse, {"a": 1.0}, 3, VectorTypeError, "non-integer indices", id="sparse-str-index"),
    pytest.param(check_sparse, {0: "x"}, 3, VectorTypeError, "non-numeric", id="sparse-str-value"),
    pytest.param(check_sparse, {0: None}, 3, VectorTypeError, "non-numeric", id="sparse-none-value"),
    pytest.param(check_sparse, None, 3, VectorTypeError, "NoneType", id="sparse-none"),
    pytest.param(check_sparse, "{1:1}/3", 3, VectorTypeError, "got a str", id="sparse-str"),
    pytest.param(check_sparse, [nan, 0.0], 2, InvalidVectorError, "nan at index 0", id="sparse-dense-nan"),
    pytest.param(check_sparse, [], None, InvalidVectorError, "empty", id="sparse-dense-empty"),
]


def assert_error_class(err: BaseException, cls: type) -> None:
    assert type(err) is cls, f"expected exactly {cls.__name__}, got {type(err).__name__}: {err}"
    assert isinstance(err, VectorKnobsError)
    assert isinstance(err, InvalidVectorError)
    assert isinstance(err, ValueError)
    if cls is VectorTypeError:
        assert isinstance(err, TypeError)
    else:
        assert not isinstance(err, TypeError)


def assert_message_shape(message: str, subject: str = SUBJECT) -> None:
    assert message.startswith(subject + " "), message
    assert message.endswith("."), message
    assert "\n" not in message, message
    assert MESSAGE_RE.match(message) or subject != SUBJECT, message


def _raise(checker: Callable[..., Any], value: Any, dim: int | None, subject: Any = SUBJECT) -> BaseException:
    with pytest.raises(VectorKnobsError) as excinfo:
        checker(value, dim, subject)
    return excinfo.value


@pytest.mark.parametrize("checker, value, dim, cls, fragment", ERROR_CASES + _ragged_cases())
def test_errors(checker: Callable[..., Any], value: Any, dim: int | None, cls: type, fragment: str) -> None:
    err = _raise(checker, value, dim)
    assert_error_class(err, cls)
    message = str(err)
    assert fragment in message, message
    assert_message_shape(message)


@pytest.mark.parametrize("checker, value, dim, cls, fragment", ERROR_CASES)
def test_error_messages_are_one_sentence(
    checker: Callable[..., Any], value: Any, dim: int | None, cls: type, fragment: str
) -> None:
    message = str(_raise(checker, value, dim))
    # A '.' followed by whitespace would start a second sentence ("1.5" or "doc.embedding" do not).
    assert not re.search(r"\.\s", message), message


@pytest.mark.parametrize("checker, value, dim, cls, fragment", _ragged_cases())
def test_ragged_error_message_is_one_sentence(
    checker: Callable[..., Any], value: Any, dim: int | None, cls: type, fragment: str
) -> None:
    message = str(_raise(checker, value, dim))
    assert not re.search(r"\.\s", message), message


def test_error_classes_hierarchy() -> None:
    assert issubclass(DimensionMismatchError, InvalidVectorError)
    assert issubclass(VectorTypeError, InvalidVectorError) and issubclass(VectorTypeError, TypeError)
    for cls in (InvalidVectorError, DimensionMismatchError, VectorTypeError):
        assert issubclass(cls, VectorKnobsError) and issubclass(cls, ValueError)


def test_sparse_overflow_is_rejected() -> None:
    err = _raise(check_sparse, {0: 1e39}, 3)
    assert_error_class(err, InvalidVectorError)
    assert_message_shape(str(err))


# --------------------------------------------------------------------------- lazy subject


class RecordingSubject:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        return "Column 'lazy.vec'"


VALID_FOR_LAZY = [
    (check_dense, [1.0, 2.0, 3.0], 3),
    (check_dense, np.array([1.0, 2.0, 3.0]), 3),
    (check_dense, np.array([1.0, 2.0], dtype=">f4"), None),
    (check_half, [1.0, HALF_MAX], 2),
    (check_bits, "0101", 4),
    (check_bits, [0, 1, 1], 3),
    (check_sparse, {0: 1.0, 3: 2.0}, 5),
    (check_sparse, sp.csr_matrix(np.array([[0.0, 1.0]])), 2),
    (check_sparse, pgvector.SparseVector({1: 1.0}, 4), 4),
    (check_sparse, [0.0, 1.0], 2),
]


@pytest.mark.parametrize("checker, value, dim", VALID_FOR_LAZY)
def test_callable_subject_not_called_for_valid_values(checker: Callable[..., Any], value: Any, dim: int) -> None:
    subject = RecordingSubject()
    checker(value, dim, subject)
    assert subject.calls == 0


@pytest.mark.parametrize("checker, value, dim, cls, fragment", ERROR_CASES[::3])
def test_callable_subject_called_on_error(
    checker: Callable[..., Any], value: Any, dim: int | None, cls: type, fragment: str
) -> None:
    subject = RecordingSubject()
    err = _raise(checker, value, dim, subject)
    assert_error_class(err, cls)
    assert subject.calls >= 1
    assert str(err).startswith("Column 'lazy.vec' ")
    assert_message_shape(str(err), "Column 'lazy.vec'")


# --------------------------------------------------------------------------- known bugs


def test_sparse_nonfinite_message_names_vector_index() -> None:
    message = str(_raise(check_sparse, {3: nan}, 5))
    assert "at index 3" in message, message


def test_sparse_dict_with_sequence_value_is_rejected() -> None:
    try:
        got = check_sparse({0: [1.0, 2.0]}, 5, SUBJECT)
    except InvalidVectorError:
        return
    raise AssertionError(f"accepted {{0: [1.0, 2.0]}} as {got}")


def test_sparse_dict_with_fractional_index_is_rejected() -> None:
    try:
        got = check_sparse({1.5: 2.0}, 5, SUBJECT)
    except VectorTypeError:
        return
    raise AssertionError(f"accepted {{1.5: 2.0}} as {got}")


def test_sparse_overflow_reported_like_dense() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidVectorError, match="overflows float32"):
            check_sparse({0: 1e39}, 3, SUBJECT)


@pytest.mark.parametrize(
    "checker, value",
    [(check_dense, [3e38, 3e38]), (check_sparse, {0: 3e38, 1: 3e38})],
    ids=["dense", "sparse"],
)
def test_large_finite_values_do_not_warn(checker: Callable[..., Any], value: Any) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = checker(value, 2, SUBJECT)
    assert_bit_exact(codec.to_dense(Kind.SPARSE, out) if checker is check_sparse else out,
                     np.array([3e38, 3e38], np.float32), np.float32)


# --------------------------------------------------------------------------- no SQLAlchemy import


def test_codec_does_not_import_sqlalchemy() -> None:
    source = Path(codec.__file__).read_text(encoding="utf-8")
    # "sqlalchemy" as a whole top-level name: "from sqlalchemy_vectorknobs ..." would be fine.
    pattern = re.compile(r"^\s*(import|from)\s+sqlalchemy\b")
    offending = [line for line in source.splitlines() if pattern.match(line)]
    assert offending == []
    assert "from .exc import" in source  # the errors come from the package, not from SQLAlchemy
