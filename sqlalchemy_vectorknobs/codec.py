"""Pure vector values: validation and every wire format (sqlite-vec BLOBs, pgvector text and binary).

Nothing here imports SQLAlchemy; the column types delegate to these functions in one line each.
Every ``check_*`` function takes the user's value and returns a canonical numpy value (or raises
one of the errors in :mod:`sqlalchemy_vectorknobs.exc` with a sentence naming ``subject``):

>>> check_dense([1, 2, 3], 3, "Column 'doc.embedding'").dtype
dtype('float32')
>>> decode_pg_vector(encode_pg_vector(check_dense([1.5, -2.0], 2, "v"))).tolist()
[1.5, -2.0]

Wire formats (checked against pgvector 0.8 and sqlite-vec 0.1.9):

* sqlite-vec float32: little-endian float32 values, no header.
* sqlite-vec bit: ``ceil(dim / 8)`` bytes, bit *i* is ``byte[i // 8] >> (i % 8) & 1``.
* pgvector ``vector`` binary: int16 dim, int16 0, dim big-endian float32; ``halfvec`` the same
  with float16; ``bit`` (PostgreSQL varbit): int32 length, bytes most significant bit first;
  ``sparsevec``: int32 dim, int32 nnz, int32 0, nnz int32 0-based indices, nnz float32 values.
* pgvector text: ``[1,2,3]``; bit ``0101``; sparsevec ``{1:1.5,3:2}/5`` (1-based indices).
"""

from __future__ import annotations

import array
import enum
import hashlib
import math
import struct
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import numpy.typing as npt

from .exc import DimensionMismatchError, InvalidVectorError, VectorTypeError

__all__ = [
    "CHECKERS",
    "HALF_MAX",
    "Kind",
    "SparseValue",
    "Subject",
    "check",
    "check_bits",
    "check_dense",
    "check_half",
    "check_sparse",
    "cosine_searchable",
    "decode_pg_binary",
    "decode_pg_text",
    "decode_pg_vector",
    "decode_sqlite",
    "encode_pg_binary",
    "encode_pg_text",
    "encode_pg_vector",
    "encode_sqlite",
    "to_dense",
]

F32 = npt.NDArray[np.float32]
#: How an error names the value's owner: a string, or a callable that builds it only when needed.
Subject = str | Callable[[], str]
HALF_MAX = 65504.0
_ACCEPTED = "a 1-D sequence of numbers (list, tuple, numpy array, array.array or pgvector value)"
_ACCEPTED_BITS = (
    "a 1-D sequence of booleans or 0/1 values, a string of '0' and '1', a pgvector Bit or an asyncpg BitString"
)
_ACCEPTED_SPARSE = (
    "a {index: value} dict, a scipy sparse vector, a pgvector SparseVector or a dense 1-D sequence"
)


class Kind(enum.Enum):
    """The storage kind of a vector column; decides validation and wire formats."""

    FLOAT32 = "vector"
    FLOAT16 = "halfvec"
    BIT = "bit"
    SPARSE = "sparsevec"


@dataclass(frozen=True)
class SparseValue:
    """A validated sparse vector: sorted 0-based ``indices`` with non-zero float32 ``values``."""

    dim: int
    indices: npt.NDArray[np.int32]
    values: F32

    def to_dense(self) -> F32:
        """Return the dense float32 array of length ``dim``."""
        out = np.zeros(self.dim, dtype=np.float32)
        out[self.indices] = self.values
        return out


# --------------------------------------------------------------------------- validation


def _s(subject: Subject) -> str:
    return subject if isinstance(subject, str) else subject()


def _as_array(value: Any, subject: Subject, accepted: str) -> np.ndarray:
    """Turn any accepted container into an ndarray without choosing a dtype yet."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, (str, bytes, bytearray, memoryview)) or value is None:
        raise VectorTypeError(f"{_s(subject)} got a {type(value).__name__}; expected {accepted}.")
    to_numpy = getattr(value, "to_numpy", None)  # pgvector-python Vector / HalfVector / Bit
    if callable(to_numpy):
        return np.asarray(to_numpy())
    if isinstance(value, (list, tuple, array.array)) or hasattr(value, "__array__"):
        try:
            return np.asarray(value)
        except (ValueError, TypeError):  # ragged nesting
            raise VectorTypeError(f"{_s(subject)} got a malformed (ragged or nested) sequence; expected {accepted}.") from None
    raise VectorTypeError(f"{_s(subject)} got a {type(value).__name__}; expected {accepted}.")


def _check_shape(arr: np.ndarray, dim: int | None, subject: Subject) -> None:
    if arr.ndim != 1:
        raise InvalidVectorError(
            f"{_s(subject)} got an array with {arr.ndim} dimensions (shape {arr.shape}); expected a 1-D vector."
        )
    if arr.shape[0] == 0:
        raise InvalidVectorError(f"{_s(subject)} got an empty vector; a vector needs at least one value.")
    if dim is not None and arr.shape[0] != dim:
        raise DimensionMismatchError(f"{_s(subject)} expects {dim} dimensions, got {arr.shape[0]}.")


def _check_finite(arr: F32, subject: Subject, positions: np.ndarray | None = None) -> None:
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when every element
    # is; only then do we skip the element-wise check that finds the culprit.
    if math.isfinite(arr.sum(dtype=np.float64)):
        return
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        i = int(bad[0])
        where = i if positions is None else int(positions[i])
        raise InvalidVectorError(
            f"{_s(subject)} got {arr[i]} at index {where}; vectors accept only finite numbers (no NaN or infinity)."
        )


def _to_float32(arr: np.ndarray, subject: Subject, accepted: str, positions: np.ndarray | None = None) -> F32:
    """Numeric array -> native float32, refusing non-numbers, float32 overflow and NaN/Inf.

    ``positions`` maps element order to the index reported in errors (sparse vectors).
    """
    if arr.dtype != np.float32 or not arr.dtype.isnative:
        if arr.dtype.kind not in "fiu":
            raise VectorTypeError(f"{_s(subject)} got non-numeric values of dtype '{arr.dtype}'; expected {accepted}.")
        if arr.dtype.kind == "f" and arr.dtype.itemsize > 4:
            with np.errstate(invalid="ignore"):
                over = np.flatnonzero(np.isfinite(arr) & (np.abs(arr) > np.finfo(np.float32).max))
            if over.size:
                i = int(over[0])
                where = i if positions is None else int(positions[i])
                raise InvalidVectorError(
                    f"{_s(subject)} got {arr[i]} at index {where}, which overflows float32; "
                    "vectors accept only finite float32 values."
                )
        arr = arr.astype(np.float32)
    _check_finite(arr, subject, positions)
    return arr


def check_dense(value: Any, dim: int | None, subject: Subject) -> F32:
    """Validate ``value`` as a dense vector and return it as a 1-D float32 array."""
    arr = _as_array(value, subject, _ACCEPTED)
    if arr.dtype.kind not in "fiu":
        raise VectorTypeError(f"{_s(subject)} got non-numeric values of dtype '{arr.dtype}'; expected {_ACCEPTED}.")
    _check_shape(arr, dim, subject)
    return _to_float32(arr, subject, _ACCEPTED)


def cosine_searchable(vectors: Any) -> npt.NDArray[np.bool_]:
    """Which rows of ``vectors`` (one vector, or a 2-D batch) have a cosine distance the databases
    can compute: the sum of their squares, in float32 as pgvector and sqlite-vec add it up, is
    positive and finite.

    A zero vector fails (0/0), and so does a vector whose squares all underflow float32, such
    as ``[1e-30, 0, ...]``: pgvector reports 0 or 2 for it and sqlite-vec ``-inf``, so it would
    rank ahead of every real match. So does one whose squares overflow (``1e20`` and up). The
    package's one rule (docs/types.md, "NULL, zero and tiny vectors"): under cosine such rows are not
    search results anywhere (``nearest``, ``hybrid_search``, ``mmr``, ``rerank``, every mirror),
    just as rows whose vector is NULL are not, and a query vector like that is refused.

    >>> cosine_searchable([[1, 0], [0, 0], [1e-30, 0], [3e-20, 0]]).tolist()
    [True, False, False, True]
    """
    arr = np.asarray(vectors, dtype=np.float32)
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):
        squares = np.einsum("...i,...i->...", arr, arr, dtype=np.float32)
    return np.asarray((squares > 0) & np.isfinite(squares))


def check_half(value: Any, dim: int | None, subject: Subject) -> npt.NDArray[np.float16]:
    """Validate ``value`` as a half-precision vector and return it as float16 (range ±65504)."""
    arr = check_dense(value, dim, subject)
    over = np.flatnonzero(np.abs(arr) > HALF_MAX)
    if over.size:
        i = int(over[0])
        raise InvalidVectorError(
            f"{_s(subject)} got {arr[i]} at index {i}, outside the half-precision range of ±{HALF_MAX:g}."
        )
    return arr.astype(np.float16)


def check_bits(value: Any, dim: int | None, subject: Subject) -> npt.NDArray[np.bool_]:
    """Validate ``value`` as a bit vector and return a 1-D bool array."""
    as_string = getattr(value, "as_string", None)
    if callable(as_string) and callable(getattr(value, "to_int", None)):  # asyncpg.BitString
        value = str(as_string()).replace(" ", "")  # (it groups the bits by four)
    if isinstance(value, str):
        if value.strip("01"):
            raise VectorTypeError(f"{_s(subject)} got a string with characters other than '0' and '1'; expected {_ACCEPTED_BITS}.")
        arr: np.ndarray = np.frombuffer(value.encode("ascii"), dtype=np.uint8) == ord("1")
    else:
        arr = _as_array(value, subject, _ACCEPTED_BITS)
        if arr.dtype.kind != "b":
            if arr.dtype.kind not in "fiu":
                raise VectorTypeError(
                    f"{_s(subject)} got values of dtype '{arr.dtype}'; expected {_ACCEPTED_BITS}."
                )
            bad = np.flatnonzero((arr != 0) & (arr != 1))
            if bad.size:
                i = int(bad[0])
                raise InvalidVectorError(
                    f"{_s(subject)} got {arr[i]} at index {i}; bit vectors accept only 0/1 or booleans."
                )
            arr = arr.astype(bool)
    _check_shape(arr, dim, subject)
    return arr


def check_sparse(value: Any, dim: int | None, subject: Subject) -> SparseValue:
    """Validate ``value`` as a sparse vector (indices 0-based) and return a :class:`SparseValue`."""
    if isinstance(value, SparseValue):
        if dim is not None and value.dim != dim:
            raise DimensionMismatchError(f"{_s(subject)} expects {dim} dimensions, got {value.dim}.")
        return value
    if isinstance(value, dict):
        if dim is None:
            raise InvalidVectorError(
                f"{_s(subject)} got an {{index: value}} dict but declares no dimension; "
                "declare SparseVector(dim) or pass a scipy or pgvector sparse vector."
            )
        vdim = dim
        keys = np.asarray(list(value.keys()))
        if keys.size and keys.dtype.kind not in "iu":
            raise VectorTypeError(f"{_s(subject)} got non-integer indices; expected {_ACCEPTED_SPARSE}.")
        idx = keys.astype(np.int64)
        vals = _as_array(list(value.values()), subject, _ACCEPTED_SPARSE)
    elif hasattr(value, "tocoo"):  # scipy.sparse matrix or array
        coo = value.tocoo()
        shape = tuple(coo.shape)
        if len(shape) == 2 and 1 in shape:
            idx = np.asarray(coo.col if shape[0] == 1 else coo.row, dtype=np.int64)
            vdim = shape[1] if shape[0] == 1 else shape[0]
        elif len(shape) == 1:
            idx = np.asarray(coo.coords[0], dtype=np.int64)
            vdim = shape[0]
        else:
            raise InvalidVectorError(f"{_s(subject)} got a sparse matrix of shape {shape}; expected a single row or column.")
        vals = np.asarray(coo.data)
    elif callable(getattr(value, "indices", None)) and callable(getattr(value, "dimensions", None)):
        vdim = int(value.dimensions())  # pgvector-python SparseVector
        idx = np.asarray(value.indices(), dtype=np.int64)
        vals = np.asarray(value.values())
    else:
        dense = check_dense(value, dim, subject)
        nz = np.flatnonzero(dense)
        return SparseValue(dense.shape[0], nz.astype(np.int32), dense[nz])
    if dim is not None and vdim != dim:
        raise DimensionMismatchError(f"{_s(subject)} expects {dim} dimensions, got {vdim}.")
    if vdim <= 0:
        raise InvalidVectorError(f"{_s(subject)} got a sparse vector with {vdim} dimensions; at least one is required.")
    if vals.ndim != 1 or vals.shape[0] != idx.shape[0]:
        raise InvalidVectorError(
            f"{_s(subject)} got sparse values of shape {vals.shape} for {idx.shape[0]} indices; each index needs one number."
        )
    vals = _to_float32(vals, subject, _ACCEPTED_SPARSE, positions=idx) if vals.size else vals.astype(np.float32)
    out_of_range = np.flatnonzero((idx < 0) | (idx >= vdim))
    if out_of_range.size:
        raise InvalidVectorError(
            f"{_s(subject)} got index {int(idx[out_of_range[0]])}, outside 0..{vdim - 1} for a {vdim}-dimension sparse vector."
        )
    order = np.argsort(idx, kind="stable")
    idx, vals = idx[order], vals[order]
    dup = np.flatnonzero(idx[1:] == idx[:-1])
    if dup.size:
        raise InvalidVectorError(f"{_s(subject)} got index {int(idx[dup[0]])} more than once; sparse indices must be unique.")
    keep = vals != 0
    return SparseValue(vdim, idx[keep].astype(np.int32), vals[keep])


def check(kind: Kind, value: Any, dim: int | None, subject: Subject) -> Any:
    """Validate ``value`` for a column of ``kind`` (dispatches to the ``check_*`` functions)."""
    return CHECKERS[kind](value, dim, subject)


CHECKERS: dict[Kind, Callable[[Any, int | None, Subject], Any]] = {
    Kind.FLOAT32: check_dense,
    Kind.FLOAT16: check_half,
    Kind.BIT: check_bits,
    Kind.SPARSE: check_sparse,
}


def to_dense(kind: Kind, value: Any) -> np.ndarray:
    """The user-facing ndarray for a checked value (dense float32 for sparse vectors)."""
    return cast("np.ndarray", value.to_dense() if kind is Kind.SPARSE else value)


# --------------------------------------------------------------------------- sqlite-vec


def encode_sqlite(kind: Kind, value: Any) -> bytes:
    """Encode a checked value as a sqlite-vec BLOB (half vectors are stored as float32)."""
    if kind is Kind.BIT:
        return np.packbits(value, bitorder="little").tobytes()
    if kind is Kind.SPARSE:
        raise InvalidVectorError("Sparse vectors have no sqlite-vec encoding; use PostgreSQL + pgvector for SparseVector.")
    return cast("bytes", value.astype("<f4", copy=False).tobytes())


def decode_sqlite(kind: Kind, data: bytes, dim: int | None) -> np.ndarray:
    """Decode a sqlite-vec BLOB into the ndarray the column type returns."""
    if kind is Kind.BIT:
        bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8), bitorder="little").astype(bool)
        return bits if dim is None else bits[:dim]
    arr = np.frombuffer(data, dtype="<f4")
    return arr.astype(np.float16) if kind is Kind.FLOAT16 else arr.astype(np.float32)


# --------------------------------------------------------------------------- pgvector binary

_HDR16 = struct.Struct(">HH")
_HDR_SPARSE = struct.Struct(">iii")
_HDR_BIT = struct.Struct(">i")


def encode_pg_vector(arr: F32) -> bytes:
    """pgvector ``vector`` binary (``vector_recv``) for a checked float32 array."""
    return _HDR16.pack(arr.shape[0], 0) + arr.astype(">f4").tobytes()


def decode_pg_vector(data: bytes | memoryview) -> F32:
    """Decode ``vector_send`` output into a float32 array."""
    return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def encode_pg_binary(kind: Kind, value: Any) -> bytes:
    """Encode a checked value in pgvector's binary (``*_recv``) format."""
    if kind is Kind.FLOAT32:
        return cast("bytes", _HDR16.pack(value.shape[0], 0) + value.astype(">f4").tobytes())
    if kind is Kind.FLOAT16:
        return cast("bytes", _HDR16.pack(value.shape[0], 0) + value.astype(">f2").tobytes())
    if kind is Kind.BIT:
        return _HDR_BIT.pack(value.shape[0]) + np.packbits(value).tobytes()
    indices: bytes = value.indices.astype(">i4").tobytes()
    values: bytes = value.values.astype(">f4").tobytes()
    return _HDR_SPARSE.pack(value.dim, value.indices.shape[0], 0) + indices + values


def decode_pg_binary(kind: Kind, data: bytes | memoryview) -> np.ndarray:
    """Decode pgvector's binary (``*_send``) format into the ndarray the column type returns."""
    if kind is Kind.FLOAT32:
        return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)
    if kind is Kind.FLOAT16:
        return np.frombuffer(data, dtype=">f2", offset=4).astype(np.float16)
    if kind is Kind.BIT:
        (n,) = _HDR_BIT.unpack_from(data)
        return np.unpackbits(np.frombuffer(data, dtype=np.uint8, offset=4))[:n].astype(bool)
    dim, nnz, _ = _HDR_SPARSE.unpack_from(data)
    idx = np.frombuffer(data, dtype=">i4", count=nnz, offset=12)
    vals = np.frombuffer(data, dtype=">f4", count=nnz, offset=12 + 4 * nnz)
    out = np.zeros(dim, dtype=np.float32)
    out[idx] = vals
    return out


# --------------------------------------------------------------------------- pgvector text


def _fmt(values: np.ndarray) -> str:
    # repr of a Python float is the shortest string that round-trips; float32 -> float is exact.
    return ",".join(map(repr, values.astype(np.float64).tolist()))


def encode_pg_text(kind: Kind, value: Any) -> str:
    """Encode a checked value in pgvector's text format (for drivers without binary binds)."""
    if kind is Kind.BIT:
        return cast("str", (value.astype(np.uint8) + ord("0")).tobytes().decode("ascii"))
    if kind is Kind.SPARSE:
        body = ",".join(f"{i + 1}:{v!r}" for i, v in zip(value.indices.tolist(), value.values.astype(np.float64).tolist()))
        return f"{{{body}}}/{value.dim}"
    return f"[{_fmt(value)}]"


def decode_pg_text(kind: Kind, text: str) -> np.ndarray:
    """Decode pgvector's text format into the ndarray the column type returns."""
    if kind is Kind.BIT:
        return cast("np.ndarray", np.frombuffer(text.encode("ascii"), dtype=np.uint8) == ord("1"))
    if kind is Kind.SPARSE:
        body, _, dim = text.rpartition("/")
        out = np.zeros(int(dim), dtype=np.float32)
        for item in filter(None, body.strip("{}").split(",")):
            i, _, v = item.partition(":")
            out[int(i) - 1] = float(v)
        return out
    arr = np.array(text.strip("[]").split(","), dtype=np.float32)
    return arr.astype(np.float16) if kind is Kind.FLOAT16 else arr


# ----------------------------------------------------------------------------- source text hash

SOURCE_SEPARATOR = "\n"


def source_text(values: Sequence[Any]) -> str:
    """The text an embedded column embeds when it has no template: non-NULL values, one per line."""
    return SOURCE_SEPARATOR.join(v for v in values if v is not None)


def source_hash(*values: Any) -> str:
    """SHA-256 (hex) of :func:`source_text`; the databases compute the same value in SQL.

    >>> source_hash("a", None, "b") == source_hash("a", "b")
    True
    """
    return hashlib.sha256(source_text(values).encode("utf-8")).hexdigest()


EMPTY_SOURCE_HASH = hashlib.sha256(b"").hexdigest()
