"""PostgreSQL + pgvector: vector indexes (HNSW / IVFFlat DDL, pgvector's limits), KNN queries that
use exactly the indexed expression, ``SET LOCAL`` search knobs and ``EXPLAIN``.

A mixin of :class:`.postgresql.PostgreSQLSupport`; the knowledge of pgvector's index operator
classes and limits lives here and nowhere else.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Boolean, bindparam, cast, event, func, literal_column, not_, text, union_all
from sqlalchemy import select as sa_select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, Executable
from sqlalchemy.sql.visitors import InternalTraversal

from ..codec import Kind
from ..distance import Distance
from ..exc import InvalidIndexError
from .base import cosine_direction, exact_knn_select, explain_sql, index_knn_select, subquery_sql

_L2, _COS, _IP, _L1, _HAM, _JAC = (
    Distance.L2,
    Distance.COSINE,
    Distance.INNER_PRODUCT,
    Distance.L1,
    Distance.HAMMING,
    Distance.JACCARD,
)
#: (method, stored kind) -> (distances with an operator class, max dimensions) per pgvector 0.8
INDEX_SUPPORT: dict[tuple[str, Kind], tuple[frozenset[Distance], int | None]] = {
    ("hnsw", Kind.FLOAT32): (frozenset({_L2, _COS, _IP, _L1}), 2000),
    ("hnsw", Kind.FLOAT16): (frozenset({_L2, _COS, _IP, _L1}), 4000),
    ("hnsw", Kind.BIT): (frozenset({_HAM, _JAC}), 64000),
    ("hnsw", Kind.SPARSE): (frozenset({_L2, _COS, _IP, _L1}), None),
    ("ivfflat", Kind.FLOAT32): (frozenset({_L2, _COS, _IP}), 2000),
    ("ivfflat", Kind.FLOAT16): (frozenset({_L2, _COS, _IP}), 4000),
    ("ivfflat", Kind.BIT): (frozenset({_HAM}), 64000),
}
_OPCLASS_METRIC = {_L2: "l2", _COS: "cosine", _IP: "ip", _L1: "l1", _HAM: "hamming", _JAC: "jaccard"}
_METHOD_NAME = {"hnsw": "HNSW", "ivfflat": "IVFFlat"}

#: knob -> (GUC, kind, low, high); validated in query.validate_search_settings, applied here
SEARCH_GUCS: dict[str, tuple[str, ...]] = {
    "ef_search": ("hnsw.ef_search",),
    "max_scan_tuples": ("hnsw.max_scan_tuples",),
    "scan_mem_multiplier": ("hnsw.scan_mem_multiplier",),
    "probes": ("ivfflat.probes",),
    "max_probes": ("ivfflat.max_probes",),
    "iterative_scan": ("hnsw.iterative_scan", "ivfflat.iterative_scan"),
}


def opclass(kind: Kind, distance: Distance) -> str:
    """pgvector operator class for an index storing ``kind`` searched by ``distance``."""
    return f"{kind.value}_{_OPCLASS_METRIC[distance]}_ops"


def _supported(method: str, kind: Kind, distance: Distance) -> bool:
    entry = INDEX_SUPPORT.get((method, kind))
    return entry is not None and distance in entry[0]


def ivfflat_lists(rows: int) -> int:
    """pgvector's guidance: rows / 1000 up to 1M rows, sqrt(rows) above; 100 for an empty table."""
    if rows <= 0:
        return 100
    return max(1, min(32768, rows // 1000 if rows <= 1_000_000 else int(rows**0.5)))


def _gucs(settings: dict[str, Any]) -> list[tuple[str, Any]]:
    """(GUC, value) pairs for validated knobs (``exact_below`` is the plugin's own, not a GUC)."""
    pairs = []
    for knob, value in settings.items():
        for guc in SEARCH_GUCS.get(knob, ()):
            if guc == "ivfflat.iterative_scan" and value == "strict_order":
                value = "relaxed_order"  # IVFFlat has no strict order; the outer query re-sorts
            pairs.append((guc, value))
    return pairs


@dataclass
class _ExactChoice:
    """One filtered search in a compiled statement: its switch, and what the planner is asked."""

    flag: Any  # the Boolean bind parameter: true runs the exact branch, false the index scan
    table: Any
    where: Any
    dim: int
    estimate: Any = None  # EXPLAIN (FORMAT JSON) SELECT 1 FROM table WHERE ..., built once
    names: Any = None  # the estimate's bind parameter -> name when compiled


class _ExplainJson(Executable, ClauseElement):
    """``EXPLAIN (FORMAT JSON)`` of a statement: the planner's estimate, nothing run."""

    inherit_cache = True
    _traverse_internals = [("statement", InternalTraversal.dp_clauseelement)]

    def __init__(self, statement: Any) -> None:
        self.statement = statement


@compiles(_ExplainJson)
def _compile_explain_json(element: _ExplainJson, compiler: Any, **kw: Any) -> str:
    return explain_sql("EXPLAIN (FORMAT JSON)", compiler, element.statement, **kw)


def _choose_exact(conn: Connection, context: Any, choices: list[_ExactChoice], knob: int | None) -> bool:
    """Switch each filtered search of the statement about to run to exact search when the planner
    expects the filter to keep at most ``exact_below`` rows and can find them without reading the
    whole table (an index on the filter columns); otherwise the vector index's iterative scan runs.

    One ``EXPLAIN`` of ``SELECT 1 FROM table WHERE <filter>`` per filtered search (statistics
    only, no rows read). Exact search over a few thousand rows is faster than an HNSW scan that
    must skip 99 % of what it visits, and always finds k rows when k qualify, where the iterative
    scan stops at ``max_scan_tuples``. True when every filtered search went exact.
    """
    from ..query import exact_below_default

    configured = knob if knob is not None else conn.info.get("vk_exact_below")
    if configured is None:
        configured = getattr(conn.dialect, "_vk_exact_below", None)
    if configured == 0:
        return False
    compiled = context.compiled
    values = context.compiled_parameters[0]
    expanded = bool(compiled.post_compile_params or compiled.literal_execute_params)
    if expanded:  # IN lists are expanded by now: take the values from before that
        values = compiled.construct_params(
            dict(values), extracted_parameters=context.extracted_parameters, escape_names=False, _no_postcompile=True
        )
    flags = []
    for choice in choices:
        limit = configured if configured is not None else exact_below_default(choice.dim)
        if choice.estimate is None:
            choice.estimate = _ExplainJson(sa_select(literal_column("1")).select_from(choice.table).where(choice.where))
            names = choice.estimate.compile(dialect=conn.dialect).bind_names
            choice.names = [(name, compiled.bind_names[bp]) for bp, name in names.items() if bp in compiled.bind_names]
        params = {name: values[ours] for name, ours in choice.names}
        plan = conn.execute(choice.estimate, params).scalar_one()
        top = (json.loads(plan) if isinstance(plan, str) else plan)[0]["Plan"]
        if top["Plan Rows"] <= limit and not _scans_whole(top, choice.table.name):
            flags.append(compiled.bind_names[choice.flag])
    if flags:
        order = compiled.positiontup
        if compiled.positional and expanded:  # positions after IN lists were expanded
            order = compiled._process_parameters_for_postcompile(dict(values)).positiontup
        for name in flags:
            _set_parameter(context, name, True, order)
    return len(flags) == len(choices)


def _scans_whole(node: dict[str, Any], table: str) -> bool:
    if node.get("Node Type") == "Seq Scan" and node.get("Relation Name") == table:
        return True
    return any(_scans_whole(child, table) for child in node.get("Plans", ()))


def _set_parameter(context: Any, name: str, value: Any, order: Any) -> None:
    """Change one bound value of the statement about to run (named or positional paramstyle;
    ``order``: the parameter names by position)."""
    params = context.parameters[0]
    if isinstance(params, dict):
        params[context.compiled.escaped_bind_names.get(name, name)] = value
        return
    position = order.index(name)
    changed = list(params)
    changed[position] = value
    context.parameters[0] = type(params)(changed) if isinstance(params, tuple) else changed


def _setting_literal(guc: str, value: Any) -> str:
    # Values are validated knobs (numbers, or one of three fixed words): safe to inline.
    return str(value) if isinstance(value, (int, float)) else f"'{value}'"


def _normalised_definition(definition: str, index: Any) -> str:
    body = definition[definition.find(" USING ") :]
    if index.vector_options.lists is None:  # left to the row count when built
        body = re.sub(r"\s*WITH \(lists='?\d+'?\)", "", body)
    return body


def _index_expression(index: Any, preparer: Any) -> str:
    col = preparer.quote(index.vector_column.name)
    precision, kind, dim = index.vector_options.precision, index.vector_type.kind, index.dim
    if precision == "binary":
        return f"(binary_quantize({col})::bit({dim}))"
    if precision == "halfvec" and kind is not Kind.FLOAT16:
        return f"({col}::halfvec({dim}))"
    return str(col)


def _fence(select: Any) -> Any:
    """``OFFSET 0``: PostgreSQL then plans the subquery on its own instead of pulling it up."""
    return select.offset(literal_column("0"))


class PostgreSQLSearch:
    """Index DDL, KNN candidates, search knobs and EXPLAIN for PostgreSQL + pgvector."""

    def inspect(self, connection: Connection) -> Any:  # provided by PostgreSQLSupport
        raise NotImplementedError

    def set_connection_defaults(self, engine: Any, settings: dict[str, Any]) -> None:
        """``SET`` the knobs (session level) on each new connection, committed there and then;
        ``exact_below`` is kept on the engine's dialect for :func:`_choose_exact`."""
        if "exact_below" in settings:
            engine.dialect._vk_exact_below = settings["exact_below"]
        statements = [f"SET {guc} = {_setting_literal(guc, value)}" for guc, value in _gucs(settings)]
        if not statements:
            return

        def on_connect(dbapi_conn: Any, record: Any) -> None:
            cur = dbapi_conn.cursor()
            try:
                for sql in statements:
                    cur.execute(sql)
            finally:
                cur.close()
            dbapi_conn.commit()

        event.listen(engine, "connect", on_connect)

    def before_statement(self, conn: Connection, execution_options: Any, context: Any = None) -> bool:
        """Apply ``execution_options(vector_search={...})`` with ``SET LOCAL`` before the statement,
        and pick exact or index search for each filtered search in it (:func:`_choose_exact`).

        Under autocommit there is no transaction for ``SET LOCAL`` to live in, so one is opened
        here; returning True has it committed right after the statement (``after_statement``).
        """
        from ..query import statement_settings

        settings = statement_settings(execution_options)
        choices = getattr(getattr(context, "compiled", None), "_vk_exact_choices", None)
        if choices and _choose_exact(conn, context, choices, settings.get("exact_below")):
            # Only exact searches run: the index knobs vk.nearest asked for are not needed.
            settings = statement_settings({"vector_search": execution_options.get("vector_search")})
        if not any(knob in SEARCH_GUCS for knob in settings):
            return False
        opened = bool(getattr(conn.connection.dbapi_connection, "autocommit", False))
        if opened:
            conn.exec_driver_sql("BEGIN")
        self.apply_search_settings(conn, settings)
        return opened

    def after_statement(self, conn: Connection) -> None:
        conn.exec_driver_sql("COMMIT")

    def check_vector_index(self, index: Any) -> None:
        opts = index.vector_options
        kind, distance, dim = index.storage_kind, opts.index_distance, index.dim
        col = index.vector_column
        where = f"VectorIndex '{index.name}' on '{col.table.name}.{col.name}'"
        methods = ["hnsw"] if opts.method == "auto" else [opts.method]
        for method in methods:
            name, pgtype = _METHOD_NAME[method], kind.value
            entry = INDEX_SUPPORT.get((method, kind))
            if entry is None:
                raise InvalidIndexError(f"{where} cannot be built: pgvector has no {name} index for {pgtype} columns.")
            metrics, max_dims = entry
            if distance not in metrics:
                allowed = ", ".join(sorted(m.value for m in metrics))
                raise InvalidIndexError(
                    f"{where} cannot use {distance.value} distance: pgvector's {name} indexes on {pgtype} support {allowed}."
                )
            if max_dims is not None and dim is not None and dim > max_dims:
                hint = (
                    "; index precision='halfvec' (up to 4,000) or 'binary' (up to 64,000) instead"
                    if kind is Kind.FLOAT32
                    else ""
                )
                raise InvalidIndexError(
                    f"{where} has {dim} dimensions, over the {max_dims:,} pgvector allows in {name} indexes on {pgtype}{hint}."
                )

    def before_create_vector_index(self, index: Any, connection: Connection) -> None:
        from ..index import AUTO_IVFFLAT_ROWS

        opts = index.vector_options
        resolved: dict[str, Any] = {"method": "hnsw" if opts.method == "auto" else opts.method, "lists": opts.lists}
        if opts.method == "auto" or (opts.method == "ivfflat" and opts.lists is None):
            table = index.vector_column.table
            rows = int(connection.execute(sa_select(func.count()).select_from(table)).scalar_one())
            if (
                opts.method == "auto"
                and rows >= AUTO_IVFFLAT_ROWS
                and _supported("ivfflat", index.storage_kind, opts.index_distance)
            ):
                resolved["method"] = "ivfflat"
            if resolved["method"] == "ivfflat" and opts.lists is None:
                resolved["lists"] = ivfflat_lists(rows)
            resolved["rows"] = rows
        index.resolved = resolved

    def render_create_vector_index(self, compiler: Any, create: Any, **kw: Any) -> str:
        index = create.element
        opts = index.vector_options
        preparer = compiler.preparer
        method = index.resolved.get("method") or ("hnsw" if opts.method == "auto" else opts.method)
        params: list[tuple[str, Any]] = []
        if method == "hnsw":
            params = [(k, v) for k, v in (("m", opts.m), ("ef_construction", opts.hnsw_ef_construction)) if v is not None]
        else:
            lists = index.resolved.get("lists", opts.lists)
            params = [("lists", lists)] if lists is not None else []
        sql = "CREATE INDEX "
        if opts.concurrently:
            sql += "CONCURRENTLY "
        if getattr(create, "if_not_exists", False):
            sql += "IF NOT EXISTS "
        sql += (
            f"{compiler._prepared_index_name(index, include_schema=False)} ON {preparer.format_table(index.table)} "
            f"USING {method} ({_index_expression(index, preparer)} {opclass(index.storage_kind, opts.index_distance)})"
        )
        if params:
            sql += " WITH (" + ", ".join(f"{k} = {int(v)}" for k, v in params) + ")"
        if opts.where is not None:
            sql += " WHERE " + compiler.sql_compiler.process(opts.where, include_table=False, literal_binds=True)
        return sql

    def render_drop_vector_index(self, compiler: Any, drop: Any, **kw: Any) -> str:
        return str(compiler.visit_drop_index(drop, **kw))

    def after_create_vector_index(self, index: Any, connection: Connection) -> None:
        return None

    def vector_index_follow_up(self, index: Any, preparer: Any) -> list[str]:
        return []  # the CREATE INDEX is the whole index

    def drop_vector_index_sql(self, name: str, preparer: Any) -> list[str]:
        return [f"DROP INDEX IF EXISTS {preparer.quote(name)}"]

    def after_drop_vector_index(self, index: Any, connection: Connection) -> None:
        return None

    # ---- migrations (used by alembic_ext)

    offline_index_ddl = True

    def vector_index_preamble(self, index: Any, preparer: Any) -> list[str]:
        return []  # a clash with an existing index should fail, not be replaced

    def extension_sql(self, create: bool, schema: str | None, preparer: Any) -> list[str]:
        if not create:
            return ["DROP EXTENSION IF EXISTS vector"]
        return [f"CREATE EXTENSION IF NOT EXISTS vector{f' SCHEMA {preparer.quote(schema)}' if schema else ''}"]

    def reindex_sql(self, name: str, schema: str | None, concurrently: bool, preparer: Any) -> list[str] | None:
        qualified = f"{preparer.quote(schema)}.{preparer.quote(name)}" if schema else preparer.quote(name)
        return [f"REINDEX INDEX {'CONCURRENTLY ' if concurrently else ''}{qualified}"]

    def alter_vector_column_sql(
        self, table: str, column: str, new: Any, using: str | None, schema: str | None, preparer: Any
    ) -> list[str] | None:
        spec = self.col_spec(new)  # type: ignore[attr-defined]
        col = preparer.quote(column)
        qualified = f"{preparer.quote(schema)}.{preparer.quote(table)}" if schema else preparer.quote(table)
        return [f"ALTER TABLE {qualified} ALTER COLUMN {col} TYPE {spec} USING {using if using is not None else f'{col}::{spec}'}"]

    def retarget_index_definition(self, definition: str, old: Any, new: Any) -> str:
        """An index definition from pg_get_indexdef, moved to the column's new dimension / type."""
        if old is not None and old.dim is not None and new.dim is not None:
            definition = re.sub(rf"::(halfvec|bit)\({old.dim}\)", rf"::\g<1>({new.dim})", definition)
        if old is not None and old.kind is not new.kind:
            definition = re.sub(rf"\b{old.kind.value}_(\w+)_ops\b", rf"{new.kind.value}_\g<1>_ops", definition)
        return definition

    def vector_index_matches(self, connection: Connection, index: Any, info: Any) -> bool:
        """Whether the live index is what the model declares, compared in the server's own form.

        The model's index is built on an empty ``CREATE TEMP TABLE ... (LIKE table)`` inside a
        SAVEPOINT that is rolled back, and the two ``pg_get_indexdef`` texts are compared.
        """
        return _normalised_definition(self._model_definition(connection, index, info), index) == _normalised_definition(
            info.definition or "", index
        )

    def _model_definition(self, connection: Connection, index: Any, info: Any) -> str:
        import uuid

        from sqlalchemy import Column, MetaData, Table
        from sqlalchemy.schema import CreateIndex

        from ..index import VectorIndex

        table = index.vector_column.table
        preparer = connection.dialect.identifier_preparer
        tmp = f"vk_cmp_{uuid.uuid4().hex[:10]}"
        copy = Table(tmp, MetaData(), *[Column(c.name, c.type) for c in table.columns])
        opts = index.vector_options
        probe = VectorIndex(
            f"{tmp}_ix",
            copy.c[index.vector_column.name],
            distance=opts.distance,
            method=info.method if opts.method == "auto" else opts.method,
            m=opts.m,
            ef_construction=opts.ef_construction,
            lists=opts.lists,
            precision=opts.precision,
            where=opts.where,
        )
        savepoint = connection.begin_nested()
        try:
            connection.exec_driver_sql(f"CREATE TEMP TABLE {preparer.quote(tmp)} (LIKE {preparer.format_table(table)})")
            connection.execute(CreateIndex(probe))
            return str(connection.execute(text("SELECT pg_get_indexdef(CAST(:n AS regclass))"), {"n": probe.name}).scalar())
        finally:
            savepoint.rollback()

    def knn_select(self, element: Any) -> tuple[Any, Any]:
        """The candidates query, (id, distance) of the k nearest using exactly the indexed
        expression, and None; or, filtered, that query and an exact search of the qualifying rows
        in a ``UNION ALL``, with the Boolean parameter that switches between them (``_choose_exact``
        sets it when the statement runs: true runs the exact branch, false the index scan)."""

        if element.index is None:
            return exact_knn_select(element, fence=_fence), None
        approx = self._index_knn_select(element)
        if element.where is None:
            return approx, None
        flag = bindparam("vk_exact", False, type_=Boolean, unique=True)
        exact_select = exact_knn_select(element, fence=_fence, extra=[flag], unindexed=True)
        return union_all(exact_select, approx.where(not_(flag))), flag

    def _index_knn_select(self, element: Any) -> Any:
        from ..comparator import VectorDistance
        from ..types import BitVector, HalfVector

        col, q, index = element.column, element.query, element.index
        pk = element.key_column
        precision = index.vector_options.precision if index is not None else None
        if precision is None or (precision == "halfvec" and col.type.kind is Kind.FLOAT16):
            return index_knn_select(element)
        dim = col.type.dim
        if precision == "halfvec":
            approx = VectorDistance(cast(col, HalfVector(dim)), cast(q, HalfVector(dim)), element.operator)
        else:
            approx = VectorDistance(cast(func.binary_quantize(col), BitVector(dim)), func.binary_quantize(q), "hamming")
        inner = sa_select(pk, col)
        if element.where is not None:
            inner = inner.where(element.where)
        cand = inner.order_by(approx).limit(literal_column(str(element.candidates))).subquery("vk_candidates")
        exact = VectorDistance(cand.c[col.name], q, element.operator)
        # The candidates are re-ranked exactly: only rows with a vector (the planner may answer
        # the inner query without the index) and, under cosine, a direction.
        searchable = [cand.c[col.name].is_not(None)]
        if element.operator == "cosine":
            searchable.append(cosine_direction(cand.c[col.name]))
        return (
            sa_select(cand.c[pk.name].label("id"), exact.label("distance"))
            .where(*searchable)
            .order_by(exact)
            .limit(literal_column(str(element.k)))
        )

    def render_knn(self, compiler: Any, element: Any, **kw: Any) -> str:
        select, flag = self.knn_select(element)
        if flag is not None:
            choice = _ExactChoice(flag, element.column.table, element.where, element.column.type.dim)
            compiler.__dict__.setdefault("_vk_exact_choices", []).append(choice)
        return subquery_sql(compiler, select, **kw)

    def apply_search_settings(self, connection: Connection, settings: dict[str, Any]) -> None:
        """``set_config(..., is_local => true)`` for each knob: lasts until the transaction ends."""
        pairs = [(guc, str(value)) for guc, value in _gucs(settings)]
        if not pairs:
            return
        params = {}
        calls = []
        for i, (guc, v) in enumerate(pairs):
            params[f"n{i}"], params[f"v{i}"] = guc, v
            calls.append(f"set_config(:n{i}, :v{i}, true)")
        connection.execute(text("SELECT " + ", ".join(calls)), params)

    def current_settings(self, connection: Connection, knobs: list[str]) -> dict[str, str | None]:
        gucs = [g for k in knobs for g in SEARCH_GUCS.get(k, ())]
        if not gucs:
            return {}
        params = {f"n{i}": g for i, g in enumerate(gucs)}
        row = connection.execute(
            text("SELECT " + ", ".join(f"current_setting(:n{i}, true)" for i in range(len(gucs)))), params
        ).one()
        return dict(zip(gucs, row))

    def restore_settings(self, connection: Connection, previous: dict[str, str | None]) -> None:
        params = {}
        calls = []
        for i, (guc, v) in enumerate(previous.items()):
            params[f"n{i}"], params[f"v{i}"] = guc, v if v is not None else ""
            calls.append(f"set_config(:n{i}, :v{i}, true)")
        if calls:
            connection.execute(text("SELECT " + ", ".join(calls)), params)

    def render_explain(self, compiler: Any, element: Any, **kw: Any) -> str:
        return explain_sql("EXPLAIN", compiler, element.statement, **kw)

    def explain(self, connection: Connection, stmt: Any) -> tuple[str, list[str], list[str]]:
        from ..query import Explain

        plan = "\n".join(row[0] for row in connection.execute(Explain(stmt)))
        used = re.findall(r"(?:Index Scan|Index Only Scan|Bitmap Index Scan)(?: Backward)? (?:using|on) (\S+)", plan)
        vector_indexes = {i.name for i in self.inspect(connection).indexes}
        return plan, used, sorted(set(used) & vector_indexes)
