"""PostgreSQL driver adapters: how each DBAPI driver sends and receives pgvector values.

* psycopg 3 (sync and async): a bound vector is a :class:`PgValue`; per-connection dumpers send it
  in pgvector's binary format with the type's OID (and in text where psycopg asks for text), and
  the pgvector types are registered with their array OIDs, so ``ARRAY(vk.Vector(n))`` travels as
  a typed ``vector[]`` and comes back as a list of vectors.
* asyncpg: per-connection binary codecs for ``vector``, ``halfvec``, ``sparsevec``, ``bit`` and
  ``varbit`` (arrays of them follow from the element codec).
* psycopg2: a bound vector is a :class:`PgTextParam`, which psycopg2 quotes as a typed literal
  (``'[1,2,3]'::vector``), so a list of them is a ``vector[]`` and not a ``text[]``; arrays of
  pgvector types are parsed into lists of their text form.
* pg8000: a bound vector is its pgvector text (the server infers its type); arrays of pgvector
  types are parsed into lists of their text form.

Scalar vector columns are selected through ``vector_send`` (see :mod:`.postgresql`), so every
driver hands back bytes for them; arrays come back as lists that the element type decodes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import numpy as np

from .. import codec
from ..codec import Kind

__all__ = [
    "BINARY_DRIVERS",
    "VALUE_CLASS",
    "PgBitValue",
    "PgHalfvecValue",
    "PgSparsevecValue",
    "PgTextParam",
    "PgValue",
    "PgVectorValue",
    "register_connection",
]

BINARY_DRIVERS = {"psycopg", "psycopg_async", "asyncpg"}
#: Drivers whose connections need the pgvector types' OIDs (binary formats, or array parsing).
_TYPED_DRIVERS = BINARY_DRIVERS | {"psycopg2", "pg8000"}
_BIT_OID, _VARBIT_OID = 1560, 1562
_BIT_ARRAY_OID, _VARBIT_ARRAY_OID = 1561, 1563
_EXTENSION_TYPES = {"vector": Kind.FLOAT32, "halfvec": Kind.FLOAT16, "sparsevec": Kind.SPARSE}
#: The SQL type a psycopg2 literal is cast to; ``bit`` alone would mean ``bit(1)``.
_LITERAL_TYPE = {Kind.FLOAT32: "vector", Kind.FLOAT16: "halfvec", Kind.BIT: "varbit", Kind.SPARSE: "sparsevec"}
_TYPE_QUERY = (
    "SELECT t.typname, t.oid::int, n.nspname, t.typarray::int FROM pg_catalog.pg_type t "
    "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace "
    "WHERE t.oid IN (to_regtype('vector')::oid, to_regtype('halfvec')::oid, to_regtype('sparsevec')::oid)"
)


class PgType(NamedTuple):
    """One pgvector type as the connected database knows it."""

    name: str
    oid: int
    schema: str
    array_oid: int


# --------------------------------------------------------------------------- bound values


class PgValue:
    """A checked vector on its way to a binary-capable driver; the driver adapter encodes it."""

    __slots__ = ("value",)
    kind: ClassVar[Kind]

    def __init__(self, value: Any) -> None:
        self.value = value

    def binary(self) -> bytes:
        return codec.encode_pg_binary(self.kind, self.value)

    def text(self) -> str:
        return codec.encode_pg_text(self.kind, self.value)


class PgVectorValue(PgValue):
    __slots__ = ()
    kind = Kind.FLOAT32


class PgHalfvecValue(PgValue):
    __slots__ = ()
    kind = Kind.FLOAT16


class PgBitValue(PgValue):
    __slots__ = ()
    kind = Kind.BIT


class PgSparsevecValue(PgValue):
    __slots__ = ()
    kind = Kind.SPARSE


VALUE_CLASS: dict[Kind, type[PgValue]] = {c.kind: c for c in (PgVectorValue, PgHalfvecValue, PgBitValue, PgSparsevecValue)}


class PgTextParam:
    """A vector in pgvector's text form for psycopg2, which quotes it as a typed literal.

    psycopg2 adapts an object through its ``__conform__`` method: this one renders
    ``'[1,2,3]'::vector``, so a list of them (an ``ARRAY(vk.Vector(n))`` value) becomes a
    ``vector[]`` array instead of a ``text[]`` the server would refuse to store.
    """

    __slots__ = ("kind", "text")

    def __init__(self, kind: Kind, text: str) -> None:
        self.kind = kind
        self.text = text

    def __conform__(self, protocol: Any) -> PgTextParam:
        return self

    def getquoted(self) -> bytes:
        return f"'{self.text}'::{_LITERAL_TYPE[self.kind]}".encode("ascii")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return repr(self.text)


# --------------------------------------------------------------------------- per-connection setup


def _fetch_types(dbapi_conn: Any, *, end_transaction: bool) -> dict[Kind, PgType]:
    """The pgvector types visible on this connection, by kind.

    ``end_transaction`` is for pool events, where the lookup is the only work of its transaction;
    inside a caller's transaction (right after CREATE EXTENSION) it must stay open.
    """
    cur = dbapi_conn.cursor()
    try:
        cur.execute(_TYPE_QUERY)
        rows = cur.fetchall()
    finally:
        cur.close()
    if end_transaction:
        dbapi_conn.rollback()
    return {_EXTENSION_TYPES[name]: PgType(name, int(oid), schema, int(array_oid)) for name, oid, schema, array_oid in rows}


_psycopg_dumpers: dict[tuple[int, bool], type] = {}


def _psycopg_dumper(oid: int, binary: bool) -> type:
    """A psycopg Dumper class sending PgValue with ``oid`` (0: the server infers), in binary or text."""
    key = (oid, binary)
    cls = _psycopg_dumpers.get(key)
    if cls is None:
        from psycopg.adapt import Dumper
        from psycopg.pq import Format

        if binary:

            def dump(self: Any, obj: PgValue) -> bytes:
                return obj.binary()

            cls = type(f"VkBinaryDumper{oid}", (Dumper,), {"format": Format.BINARY, "oid": oid, "dump": dump})
        else:

            def dump_text(self: Any, obj: PgValue) -> bytes:
                return obj.text().encode("ascii")

            cls = type(f"VkTextDumper{oid}", (Dumper,), {"format": Format.TEXT, "oid": oid, "dump": dump_text})
        _psycopg_dumpers[key] = cls
    return cls


def _register_psycopg(driver_conn: Any, types: dict[Kind, PgType]) -> None:
    from psycopg.types import TypeInfo

    adapters = driver_conn.adapters
    for kind, value_cls in VALUE_CLASS.items():
        oid = _BIT_OID if kind is Kind.BIT else (types[kind].oid if kind in types else 0)
        # Text first, binary last: the last dumper registered is the one a plain %s uses. Text is
        # for where psycopg asks for it (an array dumped in text); without an OID it is the only one.
        adapters.register_dumper(value_cls, _psycopg_dumper(oid, binary=False))
        if oid:
            adapters.register_dumper(value_cls, _psycopg_dumper(oid, binary=True))
    for t in types.values():
        # Knowing the array OID lets psycopg dump a list of values as vector[] and load vector[]
        # as a list (of text, which the element type decodes).
        TypeInfo(t.name, t.oid, t.array_oid).register(driver_conn)


def _asyncpg_codec(kind: Kind) -> tuple[Callable[[Any], bytes], Callable[[bytes], np.ndarray]]:
    def encode(value: Any) -> bytes:
        if isinstance(value, PgValue):
            return value.binary()
        return codec.encode_pg_binary(kind, codec.check(kind, value, None, "Query parameter"))

    def decode(data: bytes) -> np.ndarray:
        return codec.decode_pg_binary(kind, data)

    return encode, decode


def _register_asyncpg(dbapi_conn: Any, types: dict[Kind, PgType]) -> None:
    targets = [(t.name, t.schema, kind) for kind, t in types.items()]
    targets += [("bit", "pg_catalog", Kind.BIT), ("varbit", "pg_catalog", Kind.BIT)]

    async def register(conn: Any) -> None:
        for name, schema, kind in targets:
            enc, dec = _asyncpg_codec(kind)
            await conn.set_type_codec(name, schema=schema, encoder=enc, decoder=dec, format="binary")

    dbapi_conn.run_async(register)


def _array_oids(types: dict[Kind, PgType]) -> list[int]:
    return [t.array_oid for t in types.values()] + [_BIT_ARRAY_OID, _VARBIT_ARRAY_OID]


def _register_psycopg2(dbapi_conn: Any, types: dict[Kind, PgType]) -> None:
    import psycopg2
    import psycopg2.extensions

    caster = psycopg2.extensions.new_array_type(tuple(_array_oids(types)), "VK_VECTOR_ARRAY", psycopg2.STRING)
    psycopg2.extensions.register_type(caster, dbapi_conn)


def _register_pg8000(dbapi_conn: Any, types: dict[Kind, PgType]) -> None:
    from pg8000.converters import string_array_in

    for oid in _array_oids(types):
        dbapi_conn.register_in_adapter(oid, string_array_in)


def register_connection(dbapi_conn: Any, driver: str, info: dict[str, Any], *, in_transaction: bool = False) -> None:
    """Teach one DBAPI connection the pgvector types; remember if pgvector was not there yet."""
    if driver not in _TYPED_DRIVERS:
        return
    types = _fetch_types(dbapi_conn, end_transaction=not in_transaction)
    if driver == "asyncpg":
        _register_asyncpg(dbapi_conn, types)
    elif driver == "psycopg2":
        _register_psycopg2(dbapi_conn, types)
    elif driver == "pg8000":
        _register_pg8000(dbapi_conn, types)
    else:
        _register_psycopg(getattr(dbapi_conn, "driver_connection", dbapi_conn), types)
    info["vk_types_pending"] = Kind.FLOAT32 not in types
