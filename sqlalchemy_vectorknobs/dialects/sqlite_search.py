"""SQLite + sqlite-vec: a VectorIndex as a ``vec0`` virtual table kept in step by triggers, KNN
queries through it, exact-search fallbacks, ``EXPLAIN QUERY PLAN``, and hiding vec0's tables.

The vec0 table is named like the index and keyed by the base table's primary key. Its triggers
(``<index>__ai``, ``__au``/``__an``, ``__ad``) copy the vector (and metadata columns) on insert, update and
delete; creating the index fills it from the existing rows. sqlite-vec's KNN search is exact
(a brute-force scan in C), so SQLite results equal numpy's.
"""

from __future__ import annotations

import re
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import func, literal_column
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.sql import operators, visitors
from sqlalchemy.sql.elements import BinaryExpression, BindParameter, BooleanClauseList

from ..codec import Kind
from ..distance import Distance
from ..exc import UnsupportedDialectError
from .base import cosine_direction, exact_knn_select, explain_sql, subquery_sql

#: sqlite-vec refuses KNN queries with k above this.
MAX_K = 4096
#: A binary-quantized index's vec0 table is split into this many partitions (``vk_partition``, the
#: base row's rowid modulo 16), and its candidates are the union of each partition's nearest
#: ``ceil(candidates / 16)``. sqlite-vec keeps its running top k by insertion, so a KNN scan costs
#: about rows x k: on 100k x 384 one 800-candidate scan took 16.8x faiss IndexFlatIP, sixteen
#: 50-candidate partition scans 1.9x, with the same recall@10 after re-ranking (0.98).
BINARY_PARTITIONS = 16
_PARTITION = "vk_partition"
_VEC0_METRIC = {Distance.L2: "l2", Distance.COSINE: "cosine", Distance.L1: "l1"}
_PUSHABLE_OPS = {operators.eq, operators.ne, operators.lt, operators.le, operators.gt, operators.ge}
_SHADOW = re.compile(r"^(?P<base>.+?)_(info|chunks|rowids|auxiliary|vector_chunks\d+|metadatachunks\d+|metadatatext\d+)$")
_TRIGGERS = ("__ai", "__au", "__an", "__ad")


def _metadata_type(column: Any) -> str:
    type_ = column.type
    if isinstance(type_, sa.Boolean):
        return "boolean"
    if isinstance(type_, sa.Integer):
        return "integer"
    if isinstance(type_, (sa.Float, sa.Numeric)):
        return "float"
    if isinstance(type_, (sa.String, sa.Enum)):
        return "text"
    raise UnsupportedDialectError(
        f"Metadata column '{column.table.name}.{column.name}' is {type_!r}; sqlite-vec metadata columns "
        "take integer, float, text or boolean values."
    )


def partitions(index: Any) -> int:
    """How many partitions the vec0 table of ``index`` has: BINARY_PARTITIONS for a binary-quantized
    index on a rowid table, else 1."""
    if index.vector_options.precision != "binary":
        return 1
    if index.vector_column.table.dialect_options["sqlite"].get("with_rowid") is False:
        return 1
    return BINARY_PARTITIONS


def vec0_table(index: Any) -> sa.Table:
    """A Core Table describing the vec0 table of ``index`` (private metadata, never created)."""
    table = index.__dict__.get("_vk_vec0_table")
    if table is None:
        col, pk = index.vector_column, _primary_key(index)
        base = col.table
        table = sa.Table(
            index.name,
            sa.MetaData(),
            sa.Column(vec0_column(pk.name), pk.type, primary_key=True),
            sa.Column(vec0_column(col.name), col.type.copy()),
            sa.Column("distance", sa.Float),
            sa.Column("k", sa.Integer),
            *[sa.Column(vec0_column(name), base.c[name].type) for name in index.vector_options.metadata_columns],
            *([sa.Column(_PARTITION, sa.Integer)] if partitions(index) > 1 else []),
        )
        index.__dict__["_vk_vec0_table"] = table
    return cast("sa.Table", table)


def _primary_key(index: Any) -> Any:
    pks = list(index.vector_column.table.primary_key.columns)
    where = f"VectorIndex '{index.name}' on SQLite"
    if len(pks) != 1:
        raise UnsupportedDialectError(f"{where} needs a single-column primary key to key its vec0 table, got {len(pks)}.")
    return pks[0]


def _quote(preparer: Any, name: str) -> str:
    return str(preparer.quote_identifier(name))


_PLAIN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: Column names a vec0 table keeps for itself: its hidden ``distance`` and ``k`` columns and the
#: names of its rowid. A base-table column with one of these names (any case) is called
#: ``vk_c_<name>`` inside the vec0 table; the triggers and queries translate.
VEC0_RESERVED = frozenset({"distance", "k", "rowid", "oid", "_rowid_"})
_RENAMED = "vk_c_"


def vec0_column(name: str) -> str:
    """The name inside a vec0 table of the base-table column ``name``."""
    return f"{_RENAMED}{name}" if name.lower() in VEC0_RESERVED else name


def base_column(name: str) -> str:
    """The base-table column behind the vec0 column ``name`` (the inverse of :func:`vec0_column`)."""
    if name.startswith(_RENAMED) and name[len(_RENAMED) :].lower() in VEC0_RESERVED:
        return name[len(_RENAMED) :]
    return name


def _vec0_name(index: Any, name: str) -> str:
    """vec0 parses its own column list and takes no quoted names: only plain identifiers."""
    if not _PLAIN_NAME.fullmatch(name):
        raise UnsupportedDialectError(
            f"VectorIndex '{index.name}' on SQLite cannot use column name {name!r}; sqlite-vec's vec0 accepts "
            "only letters, digits and underscores in its column names."
        )
    return vec0_column(name)


def _fence(select: Any) -> Any:
    """``LIMIT -1``: SQLite does not flatten a subquery with a LIMIT into an outer query that
    filters, so the subquery's columns are computed once."""
    return select.limit(literal_column("-1"))


class SQLiteSearch:
    """VectorIndex DDL, KNN candidates, search knobs and EXPLAIN for SQLite + sqlite-vec."""

    # ------------------------------------------------------------------ declaration and DDL

    def check_vector_index(self, index: Any) -> None:
        return None  # SQLite-only limits are checked when the index is created, on SQLite

    def _vec0_definition(self, index: Any, preparer: Any) -> str:
        opts, col, pk = index.vector_options, index.vector_column, _primary_key(index)
        where = f"VectorIndex '{index.name}' on SQLite"
        if opts.where is not None:
            raise UnsupportedDialectError(f"{where} cannot be partial (where=); sqlite-vec vec0 tables index every row.")
        if isinstance(pk.type, sa.Integer):
            pk_sql = "integer primary key"
        elif isinstance(pk.type, sa.String):
            pk_sql = "text primary key"
        else:
            raise UnsupportedDialectError(f"{where} needs an integer or text primary key, got {pk.type!r}.")
        if opts.precision == "binary" and index.dim % 8:
            raise UnsupportedDialectError(
                f"{where} cannot quantize {index.dim} dimensions to bits: sqlite-vec's vec_quantize_binary needs "
                "a multiple of 8; give the column a multiple of 8 dimensions, or use PostgreSQL."
            )
        if index.storage_kind is Kind.BIT:
            if opts.index_distance is not Distance.HAMMING:
                raise UnsupportedDialectError(f"{where} cannot use {opts.distance.value}: sqlite-vec bit vectors use hamming.")
            vec_sql = f"bit[{-(-index.dim // 8) * 8}]"
        else:
            metric = _VEC0_METRIC.get(opts.distance)
            if metric is None:
                raise UnsupportedDialectError(
                    f"{where} cannot use {opts.distance.value} distance: sqlite-vec's vec0 supports l2, cosine and l1; "
                    "use cosine (the same order for normalised vectors) or query without an index."
                )
            vec_sql = f"float[{index.dim}] distance_metric={metric}"
        parts = [f"{_vec0_name(index, pk.name)} {pk_sql}", f"{_vec0_name(index, col.name)} {vec_sql}"]
        for name in opts.metadata_columns:
            parts.append(f"{_vec0_name(index, name)} {_metadata_type(col.table.c[name])}")
        names = [part.split()[0].lower() for part in parts]
        clash = next((name for name in names if names.count(name) > 1), None)
        if clash is not None:
            raise UnsupportedDialectError(
                f"{where} would give its vec0 table two columns named {clash!r} (names are compared without case, "
                f"and {', '.join(sorted(VEC0_RESERVED))} become vk_c_<name>); rename one of the columns."
            )
        if partitions(index) > 1:
            if _PARTITION in (pk.name, col.name, *opts.metadata_columns):
                raise UnsupportedDialectError(f"{where} cannot index a column named {_PARTITION!r}; the name is taken.")
            parts.append(f"{_PARTITION} integer partition key")
        return f"CREATE VIRTUAL TABLE {_quote(preparer, index.name)} USING vec0({', '.join(parts)})"

    def render_create_vector_index(self, compiler: Any, create: Any, **kw: Any) -> str:
        return self._vec0_definition(create.element, compiler.preparer)

    def render_drop_vector_index(self, compiler: Any, drop: Any, **kw: Any) -> str:
        return f"DROP TABLE IF EXISTS {_quote(compiler.preparer, drop.element.name)}"

    def before_create_vector_index(self, index: Any, connection: Connection) -> None:
        self._vec0_definition(index, connection.dialect.identifier_preparer)  # refuse before any DDL

    def _encode(self, index: Any, value_sql: str) -> str:
        if index.vector_options.precision == "binary":
            return f"vec_quantize_binary({value_sql})"
        if index.storage_kind is Kind.BIT:
            return f"vec_bit({value_sql})"
        return value_sql

    def vector_index_follow_up(self, index: Any, preparer: Any) -> list[str]:
        """DDL after the vec0 table exists: the four triggers, then the backfill from existing rows."""
        q = preparer.quote_identifier
        col, pk = index.vector_column, _primary_key(index)
        base, vt = q(col.table.name), q(index.name)
        names = [pk.name, col.name, *index.vector_options.metadata_columns]
        parts = partitions(index)
        target = ", ".join(q(vec0_column(n)) for n in names) + (f", {_PARTITION}" if parts > 1 else "")

        def values(row: str) -> str:
            cols = [f"{row}.{q(n)}" for n in names]
            cols[1] = self._encode(index, cols[1])
            if parts > 1:  # non-negative for negative rowids too
                cols.append(f"(({row}.rowid % {parts}) + {parts}) % {parts}")
            return ", ".join(cols)

        def searchable(row: str) -> str:
            # Rows without a vector are not indexed; under cosine neither are vectors without a
            # direction (codec.cosine_searchable: their distance to themselves is NULL). CASE:
            # sqlite-vec's functions refuse NULL, and only CASE is sure to skip the call.
            value = f"{row}.{q(col.name)}"
            if index.vector_options.distance is not Distance.COSINE or index.storage_kind is Kind.BIT:
                return f"{value} IS NOT NULL"
            return f"(CASE WHEN {value} IS NULL THEN 0 ELSE ifnull(vec_distance_cosine({value}, {value}) < 1, 0) END)"

        not_null = searchable("NEW")
        updated = f"AFTER UPDATE OF {', '.join(q(n) for n in names)} ON {base}"
        vt_key = q(vec0_column(pk.name))
        delete_old = f"DELETE FROM {vt} WHERE {vt_key} = OLD.{q(pk.name)};"
        # Two exclusive UPDATE triggers rather than one INSERT ... SELECT ... WHERE: inside a trigger
        # that form drops the subtype vec_quantize_binary()/vec_bit() put on the value, and vec0
        # then refuses the bits as a float32 vector.
        return [
            f"CREATE TRIGGER {q(index.name + '__ai')} AFTER INSERT ON {base} WHEN {not_null} BEGIN "
            f"INSERT INTO {vt}({target}) VALUES ({values('NEW')}); END",
            f"CREATE TRIGGER {q(index.name + '__au')} {updated} WHEN {not_null} BEGIN {delete_old} "
            f"INSERT INTO {vt}({target}) VALUES ({values('NEW')}); END",
            f"CREATE TRIGGER {q(index.name + '__an')} {updated} WHEN NOT ({not_null}) BEGIN {delete_old} END",
            f"CREATE TRIGGER {q(index.name + '__ad')} AFTER DELETE ON {base} BEGIN {delete_old} END",
            f"INSERT INTO {vt}({target}) SELECT {values(base)} FROM {base} WHERE {searchable(base)}",
        ]

    def after_create_vector_index(self, index: Any, connection: Connection) -> None:
        for sql in self.vector_index_follow_up(index, connection.dialect.identifier_preparer):
            connection.exec_driver_sql(sql)

    def drop_vector_index_sql(self, name: str, preparer: Any) -> list[str]:
        """Everything a vec0-backed index leaves behind: its triggers, then its table."""
        q = preparer.quote_identifier
        return [f"DROP TRIGGER IF EXISTS {q(name + suffix)}" for suffix in _TRIGGERS] + [f"DROP TABLE IF EXISTS {q(name)}"]

    def after_drop_vector_index(self, index: Any, connection: Connection) -> None:
        for sql in self.drop_vector_index_sql(index.name, connection.dialect.identifier_preparer):
            connection.exec_driver_sql(sql)

    # ------------------------------------------------------------------ migrations (alembic_ext)

    offline_index_ddl = False  # the vec0 table is keyed by the live table's primary key

    def vector_index_preamble(self, index: Any, preparer: Any) -> list[str]:
        # A table rebuild (batch migration) drops its triggers and leaves the vec0 table orphaned.
        return self.drop_vector_index_sql(str(index.name), preparer)

    def extension_sql(self, create: bool, schema: str | None, preparer: Any) -> list[str]:
        return []  # sqlite-vec is loaded on every connection by the engine

    def reindex_sql(self, name: str, schema: str | None, concurrently: bool, preparer: Any) -> list[str] | None:
        return None  # refilled from its definition (see vector_index_follow_up)

    def alter_vector_column_sql(
        self, table: str, column: str, new: Any, using: str | None, schema: str | None, preparer: Any
    ) -> list[str] | None:
        return None  # SQLite changes column types by rebuilding the table (which drops every trigger)

    def retarget_index_definition(self, definition: str, old: Any, new: Any) -> str:
        return definition

    def vector_index_matches(self, connection: Connection, index: Any, info: Any) -> bool:
        return bool(self._vec0_definition(index, connection.dialect.identifier_preparer) == info.definition)

    def recreate_vector_index_sql(self, index: Any, preparer: Any) -> list[str]:
        """The vec0 index ``index`` built afresh on the table it is declared on, replacing one of
        the same name: the old triggers and vec0 table dropped, the vec0 table created for the
        declared columns and types, then the triggers and the fill of :meth:`vector_index_follow_up`.

        alembic_ext runs it for the copy a batch migration makes of an indexed table (declared on
        the copy, ``_alembic_tmp_<table>``): SQLite moves the triggers to the table's name when
        the copy is renamed.
        """
        return [
            *self.drop_vector_index_sql(str(index.name), preparer),
            self._vec0_definition(index, preparer),
            *self.vector_index_follow_up(index, preparer),
        ]

    def vectors_not_fitting(self, connection: Connection, table: str, column: str, type_: Any) -> int:
        """How many rows of ``table`` hold a ``column`` value that is not the size of a ``type_``
        vector (SQLite keeps the bytes when a column's declared type changes)."""
        if getattr(type_, "dim", None) is None:
            return 0
        size = -(-type_.dim // 8) if type_.kind is Kind.BIT else 4 * type_.dim
        q = connection.dialect.identifier_preparer.quote
        sql = f"SELECT count(*) FROM {q(table)} WHERE {q(column)} IS NOT NULL AND length({q(column)}) != ?"
        return int(connection.exec_driver_sql(sql, (size,)).scalar() or 0)

    # ------------------------------------------------------------------ queries

    def _pushdown(self, where: Any, index: Any, vt: sa.Table) -> Any | None:
        """``where`` rewritten onto the vec0 table's metadata columns, or None if vec0 cannot run it."""
        if where is None:
            return None
        allowed = set(index.vector_options.metadata_columns)
        base = index.vector_column.table

        def ok(clause: Any) -> bool:
            if isinstance(clause, BooleanClauseList) and clause.operator is operators.and_:
                return all(ok(c) for c in clause.clauses)
            if isinstance(clause, BinaryExpression) and clause.operator in _PUSHABLE_OPS:
                left, right = clause.left, clause.right
                return (
                    isinstance(left, sa.Column)
                    and left.table is base
                    and left.name in allowed
                    and isinstance(right, BindParameter)
                )
            return False

        if not ok(where):
            return None

        def swap(element: Any) -> Any:
            if isinstance(element, sa.Column) and element.table is base:
                return vt.c[vec0_column(element.name)]
            return None

        return visitors.replacement_traverse(where, {}, swap)  # type: ignore[call-overload]

    def knn_select(self, element: Any) -> Any:
        from ..comparator import VectorDistance

        index, col, q = element.index, element.column, element.query
        if index is None or element.k > MAX_K:
            return exact_knn_select(element, fence=_fence)
        vt = vec0_table(index)
        pushed = self._pushdown(element.where, index, vt)
        if element.where is not None and pushed is None:
            return exact_knn_select(element, fence=_fence)  # filter first, then exact distances: k rows if k qualify
        if index.vector_options.precision == "binary":
            match = func.vec_quantize_binary(q)
        elif index.storage_kind is Kind.BIT:
            match = func.vec_bit(q)
        else:
            match = q
        pk = element.key_column
        conditions = [vt.c[vec0_column(col.name)].op("MATCH")(match)]
        if pushed is not None:
            conditions.append(pushed)
        if index.vector_options.precision != "binary":
            k: Any = literal_column(str(element.k))
            return sa_select(vt.c[vec0_column(pk.name)].label("id"), vt.c.distance.label("distance")).where(vt.c.k == k, *conditions)
        parts = partitions(index)
        per_part = min(-(-element.candidates // parts), MAX_K)
        scans = [
            sa_select(vt.c[vec0_column(pk.name)].label("cid")).where(
                vt.c.k == literal_column(str(per_part)),
                *conditions,
                *([vt.c[_PARTITION] == literal_column(str(part))] if parts > 1 else []),
            )
            for part in range(parts)
        ]
        knn = (scans[0] if parts == 1 else sa.union_all(*scans)).subquery("vk_candidates")
        exact = VectorDistance(col, q, element.operator)
        # vec0 holds no vector without a cosine direction (see vector_index_follow_up), unless the
        # index was made by a version before 0.2: re-check the candidates, cheap for so few rows.
        searchable = [cosine_direction(col)] if element.operator == "cosine" else []
        return (
            sa_select(pk.label("id"), exact.label("distance"))
            .join_from(col.table, knn, pk == knn.c.cid)
            .where(*searchable)
            .order_by(exact)
            .limit(literal_column(str(element.k)))
        )

    def render_knn(self, compiler: Any, element: Any, **kw: Any) -> str:
        return subquery_sql(compiler, self.knn_select(element), **kw)

    # ------------------------------------------------------------------ knobs and plans

    def apply_search_settings(self, connection: Connection, settings: dict[str, Any]) -> None:
        return None  # vec0 KNN is exact: there is nothing to tune

    def set_connection_defaults(self, engine: Engine, settings: dict[str, Any]) -> None:
        return None  # validated by the plugin; vec0 has nothing to tune

    def before_statement(self, conn: Connection, execution_options: Any, context: Any = None) -> bool:
        """Knobs are still validated, so a bad one fails the same way on every dialect."""
        from ..query import statement_settings

        statement_settings(execution_options)
        return False

    def current_settings(self, connection: Connection, knobs: list[str]) -> dict[str, str | None]:
        return {}

    def restore_settings(self, connection: Connection, previous: dict[str, str | None]) -> None:
        return None

    def render_explain(self, compiler: Any, element: Any, **kw: Any) -> str:
        return explain_sql("EXPLAIN QUERY PLAN", compiler, element.statement, **kw)

    def explain(self, connection: Connection, stmt: Any) -> tuple[str, list[str], list[str]]:
        from ..query import Explain

        rows = connection.execute(Explain(stmt)).all()
        plan = "\n".join(str(row[-1]) for row in rows)
        vec0 = set(_vec0_tables(connection))
        used = sorted({m.group(1) for m in re.finditer(r"(?:SCAN|SEARCH) (\S+)", plan)})
        vector_used = sorted(name for name in used if name in vec0 and "VIRTUAL TABLE INDEX" in plan)
        return plan, used, vector_used

    # ------------------------------------------------------------------ reflection

    def hide_vec0_tables(self, engine: Engine) -> None:
        """Reflection through this engine skips vec0 tables and their shadow tables.

        The indexes they implement are reported by ``vk.inspect_vectors``, not ``get_indexes``:
        a reflected ``Index`` cannot carry a vec0 definition.
        """
        dialect = engine.dialect
        get_table_names = dialect.get_table_names

        def table_names(connection: Any, schema: Any = None, **kw: Any) -> list[str]:
            hidden = set(_vec0_tables(connection))
            return [n for n in get_table_names(connection, schema=schema, **kw) if not _is_vec0(n, hidden)]

        dialect.get_table_names = table_names  # type: ignore[method-assign]


def parse_vec0(sql: str) -> dict[str, Any]:
    """What a vec0 definition (as this module writes it) says: primary key, vector column, metric,
    dimension, whether it stores bits, and the metadata columns (base-table column names)."""
    body = sql[sql.find("(") + 1 : sql.rfind(")")]
    out: dict[str, Any] = {"primary_key": None, "column": None, "bits": False, "dim": None, "metric": None, "metadata": []}
    for part in (p.strip() for p in body.split(",")):
        words = part.split()
        if not words:
            continue
        name, rest = base_column(words[0]), " ".join(words[1:])
        vector = re.match(r"(float|bit)\[(\d+)\](?:\s+distance_metric=(\w+))?", rest)
        if vector:
            out.update(column=name, bits=vector.group(1) == "bit", dim=int(vector.group(2)), metric=vector.group(3))
        elif "partition key" in rest:
            continue  # vk_partition: storage layout of a binary-quantized index, not a metadata column
        elif "primary key" in rest:
            out["primary_key"] = name
        else:
            out["metadata"].append(name)
    if out["metric"] is None:
        out["metric"] = "hamming" if out["bits"] else "l2"
    return out


def _vec0_tables(connection: Any) -> dict[str, str]:
    rows = connection.exec_driver_sql(
        "SELECT name, sql FROM sqlite_master WHERE type = 'table' AND sql LIKE 'CREATE VIRTUAL TABLE%' AND sql LIKE '%vec0%'"
    )
    return {name: sql for name, sql in rows}


def _is_vec0(name: str, vec0: set[str]) -> bool:
    if name in vec0:
        return True
    match = _SHADOW.match(name)
    return bool(match and match.group("base") in vec0)
