"""PostgreSQL + pgvector: DDL, binary transport, operators, extension setup, reflection, inspection.

Transport: on psycopg 3 and asyncpg a bound vector is sent in pgvector's binary format (a
per-connection psycopg dumper / asyncpg codec encodes it with :mod:`..codec`); other drivers
(psycopg2, pg8000) send the text form. Selected vector columns come back as ``vector_send(col)``
(``halfvec_send``, ``varbit_send``, ``sparsevec_send``): bytea, which every driver decodes in C,
so fetching a vector costs one ``numpy.frombuffer`` instead of parsing text.
:mod:`.postgresql_drivers` holds each driver's adapters, arrays of vectors included.
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy import event, text
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.exc import DBAPIError

from .. import codec
from ..codec import Kind
from ..exc import ExtensionError, VectorTypeError
from .base import install_statement_hook
from .postgresql_drivers import (
    BINARY_DRIVERS,
    VALUE_CLASS,
    PgTextParam,
    register_connection,
)
from .postgresql_drivers import PgValue as PgValue  # re-exported: tests and benchmarks use them from here
from .postgresql_drivers import PgVectorValue as PgVectorValue
from .postgresql_search import PostgreSQLSearch
from .postgresql_text import PostgreSQLText

if TYPE_CHECKING:
    from ..comparator import VectorBind, VectorDistance, VectorOutput
    from ..inspection import VectorInventory
    from ..types import VectorType

_SQL_TYPE = {Kind.FLOAT32: "vector", Kind.FLOAT16: "halfvec", Kind.BIT: "bit", Kind.SPARSE: "sparsevec"}
_SEND = {
    Kind.FLOAT32: "vector_send",
    Kind.FLOAT16: "halfvec_send",
    Kind.BIT: "varbit_send",
    Kind.SPARSE: "sparsevec_send",
}
_OPERATORS = {
    "l2": "<->",
    "cosine": "<=>",
    "max_inner_product": "<#>",
    "l1": "<+>",
    "hamming": "<~>",
    "jaccard": "<%>",
}
#: The extension ``create_all`` installs (a constant so tests can aim at one that does not exist).
EXTENSION = "vector"
# Drivers whose vector parameters carry the type's OID (our binary dumper), so need no cast.
_TYPED_PARAM_DRIVERS = {"psycopg", "psycopg_async"}


# --------------------------------------------------------------------------- support


_COPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
_FIXED_OIDS = {21: ">i2", 23: ">i4", 20: ">i8", 700: ">f4", 701: ">f8"}  # int2/4/8, float4/8
_COPY_CHUNK_ROWS = 512  # rows encoded at a time: stays in cache, keeps memory flat


def _copy_binary_chunks(table: Any, names: list[str], columns: list[Any], oids: list[int]) -> Any:
    """The COPY BINARY stream for fixed-width rows, or None when a column is not fixed-width.

    Applies when every column is int2/int4/int8/float4/float8 without NULLs, or a ``vector``
    column given as a validated float32 matrix. Each row is then the same size, so a block of
    rows is one numpy byte matrix: the per-row field count and lengths are constant, numbers are
    written big-endian in place. This replaces a Python call per row (``write_row``).
    """
    fields: list[tuple[str, Any, int]] = []  # (big-endian dtype, values, payload width)
    for name, values, oid in zip(names, columns, oids):
        kind = getattr(table.c[name].type, "kind", None)
        if kind is Kind.FLOAT32 and isinstance(values, np.ndarray) and values.ndim == 2 and values.dtype == np.float32:
            fields.append(("vector", values, 4 + 4 * values.shape[1]))
            continue
        dtype = _FIXED_OIDS.get(oid)
        if dtype is None or kind is not None:
            return None
        try:
            arr = np.asarray(values)
        except (TypeError, ValueError):
            return None
        if arr.ndim != 1 or arr.dtype.kind not in ("iu" if dtype[1] == "i" else "iuf"):
            return None  # None values (object dtype), strings, ...: the general path
        if dtype[1] == "i" and arr.size and (arr.min() < np.iinfo(dtype).min or arr.max() > np.iinfo(dtype).max):
            return None  # let the server report the overflow
        fields.append((dtype, arr, np.dtype(dtype).itemsize))
    width = 2 + sum(4 + w for _, _, w in fields)
    n = len(columns[0])

    def chunks() -> Any:
        yield _COPY_SIGNATURE
        block = np.empty((min(n, _COPY_CHUNK_ROWS), width), dtype=np.uint8)
        block[:, 0:2] = np.frombuffer(len(fields).to_bytes(2, "big"), np.uint8)
        pos = 2
        layout = []
        for dtype, values, w in fields:
            block[:, pos : pos + 4] = np.frombuffer(w.to_bytes(4, "big"), np.uint8)
            pos += 4
            if dtype == "vector":
                block[:, pos : pos + 4] = np.frombuffer(struct.pack(">HH", values.shape[1], 0), np.uint8)
                layout.append((">f4", values, pos + 4, w - 4))
            else:
                layout.append((dtype, values, pos, w))
            pos += w
        for start in range(0, n, _COPY_CHUNK_ROWS):
            m = min(_COPY_CHUNK_ROWS, n - start)
            rows = block[:m]
            for dtype, values, at, w in layout:
                rows[:, at : at + w].view(dtype).reshape(m, -1)[:] = values[start : start + m].reshape(m, -1)
            yield rows.tobytes()
        yield _COPY_TRAILER

    return chunks()


class PostgreSQLSupport(PostgreSQLText, PostgreSQLSearch):
    """:class:`~.base.DialectSupport` for PostgreSQL with the pgvector extension."""

    name = "postgresql"
    bulk_binds_arrays = False

    def col_spec(self, type_: VectorType) -> str:
        base = _SQL_TYPE[type_.kind]
        if type_.dim is None:
            return "bit varying" if type_.kind is Kind.BIT else base
        return f"{base}({type_.dim})"

    def bind_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], Any] | None:
        kind, dim, subject = type_.kind, type_.dim, type_.describe
        check = codec.CHECKERS[kind]
        driver = getattr(dialect, "driver", None)  # (the string compiler has none)
        if driver in BINARY_DRIVERS:
            wrap = VALUE_CLASS[kind]

            def process(value: Any) -> Any:
                return None if value is None else wrap(check(value, dim, subject))

        elif driver == "psycopg2":

            def process(value: Any) -> Any:
                return None if value is None else PgTextParam(kind, codec.encode_pg_text(kind, check(value, dim, subject)))

        else:

            def process(value: Any) -> Any:
                return None if value is None else codec.encode_pg_text(kind, check(value, dim, subject))

        return _in_array_without_dimensions(type_, process)

    def result_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], Any] | None:
        kind = type_.kind

        def process(value: Any) -> Any:
            if value is None or isinstance(value, np.ndarray):
                return value
            if isinstance(value, (bytes, memoryview)):
                return codec.decode_pg_binary(kind, value)
            if isinstance(value, str):
                return codec.decode_pg_text(kind, value)
            return codec.to_dense(kind, codec.check(kind, value, None, type_.describe))

        return process

    def literal_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], str] | None:
        kind, spec = type_.kind, self.col_spec(type_)

        def process(value: Any) -> str:
            return f"'{codec.encode_pg_text(kind, type_.check(value))}'::{spec}"

        return process

    def render_output(self, compiler: Any, element: VectorOutput, **kw: Any) -> str:
        return f"{_SEND[element.vector_type.kind]}({compiler.process(element.element, **kw)})"

    def render_bind(self, compiler: Any, element: VectorBind, **kw: Any) -> str:
        inner = compiler.process(element.element, **kw)
        if getattr(compiler.dialect, "driver", None) in _TYPED_PARAM_DRIVERS:  # (the string compiler has none)
            return str(inner)
        # asyncpg lets the server infer parameter types and text drivers send untyped literals:
        # without a cast, vector_dims($1) or a bare SELECT $1 would be ambiguous.
        return f"{inner}::{self.col_spec(element.vector_type)}"

    def render_distance(self, compiler: Any, element: VectorDistance, **kw: Any) -> str:
        left = compiler.process(element.left, **kw)
        right = compiler.process(element.right, **kw)
        if element.operator == "inner_product":
            return f"(({left} <#> {right}) * -1)"
        return f"({left} {_escape_percent(compiler, _OPERATORS[element.operator])} {right})"

    def read_only_reason(self, connection: Connection) -> str | None:
        if connection.exec_driver_sql("SELECT pg_is_in_recovery()").scalar():
            return "a hot standby (in recovery, read-only)"
        if connection.exec_driver_sql("SELECT current_setting('default_transaction_read_only')").scalar() == "on":
            return "read-only (default_transaction_read_only = on)"
        return None

    def render_cosine_direction(self, compiler: Any, element: Any, **kw: Any) -> str:
        # <=> of a vector with itself is 0, NaN without a direction (0/0, inf/inf). '<> NaN' is
        # estimated to keep 99.5 % of rows (an inequality would be 33 %: the planner would then
        # prefer a sort of a small table to its HNSW index).
        column = compiler.process(element.column, **kw)
        return f"(({column} <=> {column}) <> 'NaN'::float8)"

    def prepare_engine_kwargs(self, url: URL, kwargs: dict[str, Any]) -> None:
        """pg8000 connects to a Unix socket only through ``unix_sock``: a socket directory given as
        ``?host=/path`` (as libpq-based drivers take it) becomes ``unix_sock=/path/.s.PGSQL.<port>``."""
        if url.get_driver_name() != "pg8000":
            return
        host = url.query.get("host", url.host)
        if isinstance(host, str) and host.startswith("/") and "unix_sock" not in url.query:
            connect_args = kwargs.setdefault("connect_args", {})
            if "unix_sock" not in connect_args:
                connect_args["unix_sock"] = f"{host.rstrip('/')}/.s.PGSQL.{url.port or 5432}"

    def setup_engine(self, engine: Engine) -> None:
        from ..types import BitVector, HalfVector, SparseVector, Vector

        dialect = engine.dialect
        # An instance attribute: reflection through this engine knows the pgvector types,
        # other engines (and the dialect class) are untouched.
        dialect.ischema_names = {  # type: ignore[attr-defined]
            **dialect.ischema_names,  # type: ignore[attr-defined]
            "vector": Vector,
            "halfvec": HalfVector,
            "sparsevec": SparseVector,
            "bit": BitVector,
        }
        driver = dialect.driver

        def on_connect(dbapi_conn: Any, record: Any) -> None:
            register_connection(dbapi_conn, driver, record.info)

        def on_checkout(dbapi_conn: Any, record: Any, proxy: Any) -> None:
            # pgvector was missing when this connection opened; it may exist now.
            if record.info.get("vk_types_pending"):
                register_connection(dbapi_conn, driver, record.info)

        event.listen(engine, "connect", on_connect)
        event.listen(engine, "checkout", on_checkout)
        install_statement_hook(engine, self.before_statement, self.after_statement)

    def before_create_table(self, table: Any, connection: Connection) -> None:
        self.ensure_extension(connection)

    def ensure_extension(self, connection: Connection) -> None:
        """``CREATE EXTENSION IF NOT EXISTS vector`` unless present; clear error if impossible."""
        present = connection.execute(
            text("SELECT 1 FROM pg_catalog.pg_extension WHERE extname = :name"), {"name": EXTENSION}
        ).scalar()
        if present:
            return
        try:
            quoted = connection.dialect.identifier_preparer.quote(EXTENSION)
            connection.exec_driver_sql(f"CREATE EXTENSION IF NOT EXISTS {quoted}")
        except DBAPIError as err:
            raise ExtensionError(_explain_extension_error(connection, err)) from err
        raw = connection.connection
        register_connection(raw.dbapi_connection, connection.dialect.driver, raw.info, in_transaction=True)

    def render_source_hash(self, compiler: Any, element: Any, **kw: Any) -> str:
        # concat_ws skips NULLs exactly like codec.source_text; sha256() wants bytea, so UTF-8 it.
        cols = compiler.process(element.clauses, **kw)
        return f"encode(sha256(convert_to(concat_ws(chr(10), {cols}), 'UTF8')), 'hex')"

    def in_values(self, column: Any, values: Sequence[Any]) -> Any:
        """``column = ANY(CAST(:keys AS type[]))``: one array parameter. An expanded ``IN (...)`` of a
        thousand keys made psycopg parse a new statement of a thousand placeholders every time
        (~4 ms each, four per drained batch)."""
        from sqlalchemy.dialects.postgresql import ARRAY

        array = ARRAY(column.type)
        return column == sa.any_(sa.cast(sa.literal(list(values), array), array))

    def insert_ids(
        self, connection: Connection, table: Any, names: Sequence[str], rows: Sequence[tuple[Any, ...]], constants: Mapping[str, Any], key: Sequence[str]
    ) -> list[int]:
        """``INSERT ... SELECT ... FROM unnest(:col1, :col2, ...) RETURNING id, <key>``: one array
        parameter per column, and one plain parameter for a column that holds the same value in
        every row (the outbox's mirror name, table and time: a thousand-row insert took 2.9 ms so
        against 5.3 ms with every column an array). A multi-row ``VALUES`` list of a thousand rows
        is a 130 kB statement that psycopg parses anew each time (~10 ms). The returned ``key``
        columns map each id back to its row (RETURNING keeps no order)."""
        from sqlalchemy.dialects.postgresql import ARRAY

        if not rows:
            return []
        first = rows[0]
        # (Rows all alike still unnest one column, for the row count.)
        varying = [name for n, name in enumerate(names) if any(row[n] != first[n] for row in rows)] or [names[0]]
        arrays = []
        for name in varying:
            n = names.index(name)
            array = ARRAY(table.c[name].type)
            arrays.append(sa.cast(sa.literal([row[n] for row in rows], array), array))
        source = sa.func.unnest(*arrays).table_valued(*varying).render_derived()
        values = [
            source.c[name] if name in varying else sa.literal(first[n], table.c[name].type).label(name) for n, name in enumerate(names)
        ]
        select = sa.select(*values, *(value.label(name) for name, value in constants.items()))
        stmt = sa.insert(table).from_select([*names, *constants], select).returning(table.c.id, *(table.c[name] for name in key))
        at = [names.index(name) for name in key]
        position = {tuple(row[i] for i in at): n for n, row in enumerate(rows)}
        ids = [0] * len(rows)
        for new_id, *got in connection.execute(stmt):
            ids[position[tuple(got)]] = int(new_id)
        return ids

    def advance_key_sequence(self, connection: Connection, table: Any, column: Any) -> None:
        """``setval`` the serial/identity sequence behind ``column`` (if any) to the largest key held."""
        q = connection.dialect.identifier_preparer
        stmt = sa.text(
            "SELECT setval(s.seq, m.top) FROM (SELECT pg_get_serial_sequence(:table, :column) AS seq) AS s, "
            f"(SELECT max({q.quote(column.name)}) AS top FROM {q.format_table(table)}) AS m "
            "WHERE s.seq IS NOT NULL AND m.top IS NOT NULL"
        )
        connection.execute(stmt, {"table": q.format_table(table), "column": column.name})

    def bulk_load(
        self, connection: Connection, table: Any, names: list[str], columns: list[Any], *, rows: list[Any] | None = None
    ) -> int:
        """COPY ... FORMAT BINARY on psycopg 3 and asyncpg; batched INSERTs on other drivers."""

        def wrap(type_: Any, values: Any) -> Any:
            kind = getattr(type_, "kind", None)
            if kind is None:
                return values
            cls = VALUE_CLASS[kind]
            return [None if v is None else cls(v) for v in values]

        def row_tuples() -> list[tuple[Any, ...]]:
            return list(zip(*(wrap(table.c[n].type, values) for n, values in zip(names, columns))))

        count = len(columns[0]) if columns else 0
        driver = connection.dialect.driver
        preparer = connection.dialect.identifier_preparer
        if driver == "psycopg":
            oids: dict[str, int] = dict(
                connection.execute(
                    text(
                        "SELECT attname, atttypid::int FROM pg_catalog.pg_attribute "
                        "WHERE attrelid = CAST(:t AS regclass) AND attnum > 0 AND NOT attisdropped"
                    ),
                    {"t": preparer.format_table(table)},
                ).all()
            )
            cols = ", ".join(preparer.quote(n) for n in names)
            raw = connection.connection.driver_connection
            chunks = _copy_binary_chunks(table, names, columns, [oids[n] for n in names])
            with raw.cursor() as cur:  # type: ignore[union-attr]
                with cur.copy(f"COPY {preparer.format_table(table)} ({cols}) FROM STDIN (FORMAT BINARY)") as copy:
                    if chunks is not None:  # fixed-width rows: the COPY stream is built with numpy
                        for chunk in chunks:
                            copy.write(chunk)
                        return count
                    copy.set_types([oids[n] for n in names])
                    for row in row_tuples():
                        copy.write_row(row)
            return count
        if driver == "asyncpg":
            connection.exec_driver_sql("SELECT 1")  # makes the adapter open its transaction first
            dbapi_conn = connection.connection.dbapi_connection

            async def copy_records(conn: Any) -> None:
                await conn.copy_records_to_table(table.name, records=records, columns=names, schema_name=table.schema)

            records = row_tuples()
            dbapi_conn.run_async(copy_records)  # type: ignore[union-attr]
            return count
        from sqlalchemy import insert

        plain = list(zip(*columns))
        for start in range(0, len(plain), 10_000):
            connection.execute(insert(table), [dict(zip(names, row)) for row in plain[start : start + 10_000]])
        return len(plain)

    def inspect(self, connection: Connection) -> VectorInventory:
        from ..inspection import VectorColumnInfo, VectorIndexInfo, VectorInventory

        version = connection.exec_driver_sql(
            "SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'vector'"
        ).scalar()
        columns = [
            VectorColumnInfo(schema=s, table=t, column=c, type=_TYPE_NAMES[typ], dim=None if mod < 1 else mod)
            for s, t, c, typ, mod in connection.execute(text(_COLUMNS_QUERY))
        ]
        indexes = [
            VectorIndexInfo(
                schema=s,
                table=t,
                name=name,
                method=method,
                expression=expr,
                opclass=opclass,
                options=dict(o.split("=", 1) for o in (opts or [])),
                where=where,
                definition=definition,
            )
            for s, t, name, method, expr, opclass, opts, where, definition in connection.execute(text(_INDEX_QUERY))
        ]
        return VectorInventory(
            dialect="postgresql", extension="pgvector", extension_version=version, columns=columns, indexes=indexes
        )


_TYPE_NAMES = {"vector": "Vector", "halfvec": "HalfVector", "bit": "BitVector", "sparsevec": "SparseVector"}
_COLUMNS_QUERY = """
SELECT n.nspname, c.relname, a.attname, t.typname, a.atttypmod
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
WHERE t.typname IN ('vector', 'halfvec', 'sparsevec', 'bit') AND a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname !~ '^pg_toast'
ORDER BY 1, 2, a.attnum
"""
_INDEX_QUERY = """
SELECT n.nspname, t.relname, i.relname, am.amname, pg_catalog.pg_get_indexdef(i.oid, 1, true),
       opc.opcname, i.reloptions, pg_catalog.pg_get_expr(ix.indpred, ix.indrelid),
       pg_catalog.pg_get_indexdef(i.oid)
FROM pg_catalog.pg_index ix
JOIN pg_catalog.pg_class i ON i.oid = ix.indexrelid
JOIN pg_catalog.pg_class t ON t.oid = ix.indrelid
JOIN pg_catalog.pg_namespace n ON n.oid = t.relnamespace
JOIN pg_catalog.pg_am am ON am.oid = i.relam
LEFT JOIN pg_catalog.pg_opclass opc ON opc.oid = ix.indclass[0]
WHERE am.amname IN ('hnsw', 'ivfflat')
ORDER BY 1, 2, 3
"""


def _in_array_without_dimensions(type_: VectorType, process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``process``, explaining one mistake: SQLAlchemy's ``ARRAY(vk.Vector(n))`` without
    ``dimensions=1`` takes a list of lists for a 2-D array of numbers and hands the vector type
    single numbers."""
    column = type_._column_ref() if type_._column_ref is not None else None
    outer = getattr(column, "type", None)
    if not isinstance(outer, sa.ARRAY) or outer.dimensions is not None:
        return process

    def in_array(value: Any) -> Any:
        if isinstance(value, (int, float, np.number)):
            raise VectorTypeError(
                f"{type_.subject} got the single number {value!r} for a {type_!r} element, because "
                f"ARRAY({type_!r}) without dimensions takes a list of lists for a 2-D array of numbers; "
                f"declare ARRAY({type_!r}, dimensions=1), or give the elements as numpy arrays."
            )
        return process(value)

    return in_array


def _escape_percent(compiler: Any, operator: str) -> str:
    """``operator`` as the driver must see it: '%' (jaccard's ``<%>``) doubled wherever the DBAPI
    reads ``%`` as a placeholder -- psycopg, psycopg2 (pyformat) and pg8000 (format; SQLAlchemy's
    pg8000 dialect does not double it in compiled text, unlike the other two)."""
    if "%" in operator and getattr(compiler.dialect, "paramstyle", None) in ("format", "pyformat"):
        return operator.replace("%", "%%")
    return operator


def _explain_extension_error(connection: Connection, err: DBAPIError) -> str:
    orig = err.orig
    state = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
    text = str(orig)
    if state == "42501" or re.search(r"permission denied", text, re.IGNORECASE):
        return (
            "The current role may not create the pgvector extension; ask a superuser (pgvector is "
            "not a trusted extension, so a database owner cannot) to run CREATE EXTENSION vector in this database, "
            f"then retry (server said: {text.strip().splitlines()[0]})."
        )
    if state in ("0A000", "58P01") or re.search(r"not available|could not open extension control file", text, re.IGNORECASE):
        return (
            "The PostgreSQL server has no pgvector extension to create; install pgvector on the "
            "database server (e.g. the postgresql-<version>-pgvector package, or build it from "
            f"source) and retry (server said: {text.strip().splitlines()[0]})."
        )
    return f"CREATE EXTENSION vector failed: {text.strip().splitlines()[0]}."


SUPPORT = PostgreSQLSupport()

