"""Nearest-neighbour queries: ``nearest``, query-time knobs (``vector_search``, ``search_settings``)
and ``explain``.

``vk.nearest(Doc.embedding, q, k=10)`` is an ordinary ``Select`` of ``(Doc, distance)``, nearest
first. Its candidates come from a subquery that each dialect writes its own way:

* PostgreSQL: ``ORDER BY <indexed expression> <op> q LIMIT k`` (the halfvec cast or
  ``binary_quantize`` when the index uses them, then an exact re-rank), so the planner can use
  the HNSW / IVFFlat index; with a filter, iterative index scans keep k rows coming.
* SQLite: the ``vec0`` index table's ``MATCH ? AND k = ?`` KNN search (filters on its metadata
  columns are pushed into it); exact search when there is no index, when a filter touches other
  columns (filter first, then exact distances: always k rows when k rows qualify), or when
  k exceeds sqlite-vec's 4,096.
"""

from __future__ import annotations

import contextlib
import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import ClauseElement, Executable, operators
from sqlalchemy.sql.elements import BinaryExpression
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.sql.visitors import InternalTraversal

from . import dialects
from .codec import cosine_searchable, to_dense
from .comparator import _BY_METRIC
from .distance import Distance
from .exc import IncompatibleOperatorError, InvalidSearchSettingError, InvalidVectorError
from .index import VectorIndex
from .statement import SearchParts, SearchSelect, effective, new_token, onto_table, search_statement

__all__ = [
    "SEARCH_SETTINGS",
    "SQLITE_MAX_K",
    "ExplainResult",
    "VectorKnn",
    "explain",
    "nearest",
    "search_settings",
    "validate_search_settings",
]

#: sqlite-vec refuses KNN queries with k above this; larger k falls back to exact search.
SQLITE_MAX_K = 4096


class VectorKnn(FunctionElement[Any]):
    """The k nearest (id, distance) of one vector column; the dialect writes the SQL."""

    name = "vk_knn"
    inherit_cache = True
    #: its rows are a search's results: ``.where()`` on them stays outside (statement.py)
    vk_search_element = True
    _traverse_internals = FunctionElement._traverse_internals + [
        ("column", InternalTraversal.dp_clauseelement),
        ("query", InternalTraversal.dp_clauseelement),
        ("where", InternalTraversal.dp_clauseelement),
        ("k", InternalTraversal.dp_plain_obj),
        ("candidates", InternalTraversal.dp_plain_obj),
        ("operator", InternalTraversal.dp_string),
        ("index_name", InternalTraversal.dp_string),
    ]

    def __init__(
        self,
        column: Any,
        query: Any,
        k: int,
        *,
        operator: str,
        where: Any = None,
        index: VectorIndex | None = None,
        candidates: int,
    ) -> None:
        self.column = column
        self.query = query
        self.k = k
        self.candidates = candidates
        self.operator = operator
        self.where = where
        self.index_name = index.name if index is not None else ""
        self.vk_token = new_token()
        super().__init__()

    @property
    def index(self) -> VectorIndex | None:
        for index in self.column.table.indexes:
            if isinstance(index, VectorIndex) and index.name == self.index_name:
                return index
        return None

    @property
    def key_column(self) -> Any:
        return _primary_key(self.column.table)


@compiles(VectorKnn)
def _compile_knn(element: VectorKnn, compiler: Any, **kw: Any) -> str:
    key = getattr(element.query, "key", None)
    if isinstance(key, str) and key.startswith(_TEMPLATE_PREFIX):
        seen = compiler.__dict__.setdefault("_vk_nearest_queries", set())
        if key in seen:
            raise sa.exc.CompileError(
                "Two vk.nearest() searches with the same column, k and options cannot be combined in one "
                "statement (they share one query parameter); pass each query vector as "
                "sa.bindparam('q1', vector, type_=<the column's type>) with distinct names."
            )
        seen.add(key)
    return dialects.for_dialect(compiler.dialect).render_knn(compiler, effective(compiler, element), **kw)


def _primary_key(table: Any) -> Any:
    pks = list(table.primary_key.columns)
    if len(pks) != 1:
        raise IncompatibleOperatorError(
            f"Table '{table.name}' has {len(pks)} primary key columns; vk.nearest needs exactly one to join results back."
        )
    return pks[0]


def _resolve(column: Any) -> tuple[Any, Any, Any]:
    """(table column, entity to select, primary key expression on that entity)."""
    if hasattr(column, "property") and hasattr(column, "parent"):  # ORM attribute, maybe aliased
        base = column.property.columns[0]
        parent = column.parent  # a Mapper, or the AliasedInsp of an aliased entity
        pk_prop = parent.mapper.get_property_by_column(_primary_key(base.table))
        return base, parent.entity, getattr(parent.entity, pk_prop.key)
    if isinstance(column, sa.Column) and column.table is not None:
        return column, column.table, _primary_key(column.table)
    raise IncompatibleOperatorError(
        f"vk.nearest needs a vector column or mapped attribute, got {type(column).__name__}."
    )


def _aliases(entity: Any) -> tuple[Any, ...]:
    """The selectable of an aliased entity (whose columns stand for its table's), else nothing."""
    insp = sa.inspect(entity, raiseerr=False)
    return (insp.selectable,) if getattr(insp, "is_aliased_class", False) else ()


def _on_table(where: Any, entity: Any, table: Any) -> Any:
    """``where`` written against an aliased entity, rewritten against ``table``: the candidates
    subquery selects from the table itself, and an alias's columns would not exist there."""
    return onto_table(where, table, _aliases(entity))


#: The largest ``k`` (a SQL ``LIMIT``) PostgreSQL and SQLite accept: a signed 64-bit integer.
MAX_LIMIT = 2**63 - 1


def check_k(name: str, value: Any) -> int:
    """``value`` as a row count for ``LIMIT``: a whole number from 1 to :data:`MAX_LIMIT`."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_LIMIT:
        raise InvalidSearchSettingError(f"{name}={value!r} is not a positive whole number up to {MAX_LIMIT:,} (a SQL LIMIT).")
    return value


def check_query(col: Any, query: Any, metric: Distance, what: str) -> Any:
    """The checked query vector of a search of ``col`` (the column's own bind-time checks); under
    cosine it must have a direction (``codec.cosine_searchable``), or every distance is NaN."""
    value = col.type.check(query)
    if metric is Distance.COSINE and not cosine_searchable(to_dense(col.type.kind, value)):
        raise InvalidVectorError(
            f"{what} query vector has no cosine direction (its float32 squared norm is 0 or overflows), so no row "
            "has a cosine distance to it; pass a vector with a non-zero value (all values below 1e19 in size), "
            "or search by l2 distance."
        )
    return value


def find_index(column: Any, distance: Distance | None) -> VectorIndex | None:
    """The VectorIndex on ``column`` for ``distance`` (any, if None): unquantized ones first, then
    the first declared (a table's indexes are a set: without an order, a column with an l2 and a
    cosine index would search by either)."""
    found = [
        ix
        for ix in column.table.indexes
        if isinstance(ix, VectorIndex)
        and ix.vector_column is column
        and (distance is None or ix.vector_options.distance is distance)
    ]
    found.sort(key=lambda ix: (ix.vector_options.precision is not None, ix.declared))
    return found[0] if found else None


def nearest(
    column: Any,
    query: Any,
    k: int = 10,
    *,
    distance: Distance | str | None = None,
    where: Any = None,
    max_distance: float | None = None,
    candidates: int | None = None,
    via: Any = None,
) -> sa.Select[Any]:
    """A ``Select`` of ``(entity, distance)``: the ``k`` rows nearest to ``query``, nearest first.

    ``distance`` defaults to the distance of the column's :class:`VectorIndex` (the first declared
    unquantized one when it has several; cosine if it has none); for inner product the distance is the negative dot product, as pgvector's ``<#>``.
    ``where`` filters rows (k rows come back whenever k rows qualify); ``max_distance`` drops
    results farther than that. ``candidates`` is how many rows a halfvec/binary-quantized index
    proposes for exact re-ranking (default ``max(10 * k, 100)``, and ``max(40 * k, 400)`` for a
    binary index: 1-bit codes rank coarsely; on 100k x 384 clustered vectors 100 candidates gave
    recall@10 0.58 and 400 gave 0.98). The HNSW scan is widened (``ef_search``) to match::

        stmt = vk.nearest(Doc.embedding, q, k=5, where=Doc.category == "news")
        stmt = vk.nearest(Doc.embedding, q, k=5).where(Doc.category == "news")  # the same
        for doc, distance in session.execute(stmt):
            ...

    The statement is a :class:`~.statement.SearchSelect`: ``.where()`` / ``.filter()`` /
    ``.filter_by()`` on columns of the table searched filter inside the search, like ``where=``.
    Rows whose vector is NULL, and under cosine rows whose vector has no direction (a zero
    vector; ``codec.cosine_searchable``), are never results; a cosine query vector without a
    direction is refused. ``k`` is 1 to 2**63 - 1.

    ``via=mirror`` asks a mirror (``vk.FaissMirror``, ...) for the ``k`` nearest keys instead of
    the database, when ``nearest`` is called, and the statement loads those entities in the
    mirror's order with the mirror's distances (rows deleted in SQL since drop out). ``where`` may
    then be a ``{column: value}`` filter on the mirror's metadata columns, or the same written in
    SQL (equality / ``IN`` on those columns); other SQL criteria are refused::

        stmt = vk.nearest(Doc.embedding, q, k=5, via=faiss_mirror, where={"category": "news"})
    """
    col, entity, pk = _resolve(column)
    k = check_k("vk.nearest k", k)
    if max_distance is not None and (
        isinstance(max_distance, bool) or not isinstance(max_distance, (int, float)) or max_distance != max_distance
    ):
        raise InvalidSearchSettingError(f"vk.nearest max_distance={max_distance!r} is not valid; it takes a number.")
    if via is not None:
        return _nearest_via(via, col, entity, pk, query, k, distance=distance, where=where, max_distance=max_distance)
    metric = Distance.parse(distance) if distance is not None else None
    index = find_index(col, metric)
    if metric is None:
        metric = index.vector_options.distance if index is not None else Distance.COSINE
    if metric not in col.type.metrics:
        allowed = ", ".join(sorted(m.value for m in col.type.metrics))
        raise IncompatibleOperatorError(
            f"{col.type.subject} is a {type(col.type).__name__}, which has no {metric.value} distance; its distances are {allowed}."
        )
    quantized = index is not None and index.vector_options.precision is not None
    if candidates is None:
        binary = quantized and index is not None and index.vector_options.precision == "binary"
        candidates = max(40 * k, 400) if binary else max(10 * k, 100)
    else:
        check_k("vk.nearest candidates", candidates)
    candidates = min(max(candidates, k), MAX_LIMIT)
    if where is None and _LIGHT_PARAMS and not isinstance(query, ClauseElement):
        value = check_query(col, query, metric, "vk.nearest")  # bad input fails here, with the column's own message
        template = _template(col, entity, pk, k, metric, index, candidates)
        stmt = template.stmt.params({template.key: value})
        dist = template.dist
    else:
        stmt, dist = _build(col, entity, pk, query, k, metric, _on_table(where, entity, col.table), index, candidates)
    if max_distance is not None:
        stmt = stmt.where(dist <= max_distance)
    return stmt


def _build(
    col: Any, entity: Any, pk: Any, query: Any, k: int, metric: Distance, where: Any, index: VectorIndex | None, candidates: int
) -> tuple[sa.Select[Any], Any]:
    """The ordered ``nearest`` statement (without ``max_distance``) and its distance column."""
    stmt, dist = knn_join(col, entity, pk, query, k, metric=metric, where=where, index=index, candidates=candidates)
    return stmt.order_by(dist), dist


#: SQLAlchemy 2.1's statement-level ``params()`` records values without copying the statement
#: (2.0's clones the whole tree, slower than building the statement anew).
_LIGHT_PARAMS = "_params" in vars(getattr(sa.sql.base, "ExecutableStatement", object))

#: The query parameter of a template: ``_compile_knn`` refuses two in one statement.
_TEMPLATE_PREFIX = "vk_nearest_query_"


@dataclass(frozen=True)
class _Template:
    stmt: sa.Select[Any]
    dist: Any
    key: str


#: ``nearest`` statements without ``where=``, by everything but the query vector (bounded).
_TEMPLATES: dict[tuple[Any, ...], _Template] = {}
_template_numbers = itertools.count()


def _template(col: Any, entity: Any, pk: Any, k: int, metric: Distance, index: VectorIndex | None, candidates: int) -> _Template:
    """The statement ``nearest`` returns for these arguments, with the query vector as a bind
    parameter that each call fills with ``params()``.

    Building the ``Select`` (a table-valued KNN element joined back to the entity, ordered) and
    generating its cache key cost ~90 us a call, a few percent of an HNSW query on SQLAlchemy's
    side; ``params()`` on a built statement and its cache key cost ~13 us. The price is that
    every statement from one template shares the parameter's name, so two of them cannot be
    combined in one statement (a ``UNION`` of two searches would run both with one vector):
    ``_compile_knn`` refuses that with an error instead of returning wrong rows.
    """
    cache_key = (col, entity, k, metric, index, candidates)  # the entity and column decide the key column
    found = _TEMPLATES.get(cache_key)
    if found is None:
        if len(_TEMPLATES) >= 1024:
            _TEMPLATES.clear()
        name = f"{_TEMPLATE_PREFIX}{next(_template_numbers)}"
        stmt, dist = _build(col, entity, pk, sa.bindparam(name, type_=col.type), k, metric, None, index, candidates)
        found = _TEMPLATES[cache_key] = _Template(stmt, dist, name)
    return found


def knn_join(
    col: Any,
    entity: Any,
    pk: Any,
    query: Any,
    k: int,
    *,
    metric: Distance,
    where: Any,
    index: VectorIndex | None,
    candidates: int,
    settings: dict[str, Any] | None = None,
    what: str = "vk.nearest",
) -> tuple[SearchSelect, Any]:
    """``SELECT entity, distance`` joined to the candidates of a :class:`VectorKnn` (unordered), and
    the candidates' distance column: what :func:`nearest` and ``rerank_query`` share.

    The statement carries the search knobs its candidates need (plus ``settings``), and takes
    ``.where()`` criteria on the table into its search (:class:`~.statement.SearchSelect`)."""
    q = query if isinstance(query, ClauseElement) else sa.literal(check_query(col, query, metric, what), col.type)
    if isinstance(where, str):
        where = sa.text(where)
    knn = VectorKnn(col, q, k, operator=_BY_METRIC[metric], where=where, index=index, candidates=candidates)
    cand = knn.table_valued(sa.column("id", _primary_key(col.table).type), sa.column("distance", sa.Float))
    quantized = index is not None and index.vector_options.precision is not None

    def with_settings(stmt: Any, pushed: Any) -> Any:
        filtered = where if pushed is None else pushed if where is None else sa.and_(where, pushed)
        needs = {**(settings or {}), **_needed_settings(candidates if quantized else k, filtered, index)}
        if settings and "ef_search" in settings and "ef_search" in needs:
            needs["ef_search"] = max(settings["ef_search"], needs["ef_search"])
        return stmt.execution_options(vector_search_defaults=needs) if needs else stmt

    stmt = with_settings(sa.select(entity, cand.c.distance.label("distance")).join(cand, pk == cand.c.id), None)
    parts = SearchParts(what, col.table, _aliases(entity), (knn.vk_token,), with_settings, entity=entity)
    return search_statement(stmt, parts), cand.c.distance


def _nearest_via(
    mirror: Any,
    col: Any,
    entity: Any,
    pk: Any,
    query: Any,
    k: int,
    *,
    distance: Distance | str | None,
    where: Any,
    max_distance: float | None,
) -> sa.Select[Any]:
    """``nearest(..., via=mirror)``: the mirror finds the ``k`` nearest keys, SQL loads the entities.

    The mirror is searched when ``nearest`` is called (not when the statement runs); the statement
    selects ``(entity, distance)`` for those keys with ``pk IN (...)``, the mirror's distance and
    rank attached by ``CASE pk WHEN ... THEN ...``, ordered by the mirror's rank. Rows deleted in
    SQL since the mirror last heard of them simply drop out. ``where`` is a ``{column: value}``
    (or ``{column: [values]}``) filter on the mirror's metadata columns, passed to its search, or
    the same written in SQL (``Doc.category == "news"``, ``Doc.category.in_([...])``, joined by
    AND); any other SQL criterion is refused, as is ``.where()`` on the statement: the mirror
    chooses the rows, and filtering them afterwards would return fewer than ``k``. In async code build the statement with ``await asyncio.to_thread(vk.nearest,
    ...)`` if the mirror is slow to search.
    """
    table = col.table
    if getattr(mirror, "column", None) is not col or not callable(getattr(mirror, "search", None)):
        what = getattr(getattr(mirror, "column", None), "table", None)
        mirrored = f"'{what.name}.{mirror.column.name}'" if what is not None else f"a {type(mirror).__name__}"
        raise IncompatibleOperatorError(
            f"vk.nearest via= got a mirror of {mirrored}; pass a mirror of '{col.table.name}.{col.name}'."
        )
    if distance is not None and Distance.parse(distance) is not mirror.distance:
        raise IncompatibleOperatorError(
            f"vk.nearest via= mirror '{mirror.name}' ranks by {mirror.distance.value} distance, "
            f"not {Distance.parse(distance).value}; drop distance= or build the mirror with that distance."
        )
    if isinstance(query, ClauseElement):
        raise IncompatibleOperatorError("vk.nearest via= needs the query vector as a value, not a SQL expression.")
    mirror_where = where if where is None or isinstance(where, dict) else _mirror_filter(mirror, col, entity, where)
    hits = mirror.search(query, k, where=mirror_where)
    if max_distance is not None:
        hits = [(key, d) for key, d in hits if d <= max_distance]
    if not hits:
        stmt = sa.select(entity, sa.null().label("distance")).where(sa.false())
    else:
        values: dict[str, Any] = {}
        for i, (key, d) in enumerate(hits):
            values[f"vk_via_key{i}"] = key
            values[f"vk_via_distance{i}"] = float(d)
        stmt = _via_template(entity, pk, len(hits)).params(values)

    refuse = (
        f"vk.nearest(via=...) chose its rows in mirror '{mirror.name}' when it was called, so .where() on its "
        "statement could only drop some of them; pass the filter as vk.nearest(..., via=mirror, where=...) "
        "instead (equality or IN on the mirror's metadata columns), or max_distance= for a distance limit."
    )
    return search_statement(stmt, SearchParts("vk.nearest(via=...)", table, _aliases(entity), (), refuse=refuse, entity=entity))


def _mirror_filter(mirror: Any, col: Any, entity: Any, where: Any) -> dict[str, Any]:
    """A SQL ``where`` for ``nearest(via=mirror)`` as the mirror's ``{column: value(s)}`` filter:
    equality and ``IN`` on its metadata columns, joined by AND. Anything else is refused: the
    mirror chooses the rows, and a filter applied to them afterwards would return fewer than k."""
    filters: dict[str, Any] = {}

    def refuse() -> IncompatibleOperatorError:
        columns = ", ".join(mirror.metadata_columns) or "none"
        return IncompatibleOperatorError(
            f"vk.nearest via= mirror '{mirror.name}' can only filter by equality or IN on its metadata columns "
            f"({columns}), joined by AND, got {where}; add the column to the mirror's metadata_columns, "
            "or search the database (drop via=)."
        )

    def add(clause: Any) -> None:
        if isinstance(clause, sa.BooleanClauseList) and clause.operator is operators.and_:
            for part in clause.clauses:
                add(part)
            return
        if not isinstance(clause, BinaryExpression) or clause.operator not in (operators.eq, operators.in_op):
            raise refuse()
        left, right = clause.left, clause.right
        if not isinstance(left, sa.ColumnClause) or left.table not in (col.table, *_aliases(entity)):
            raise refuse()
        name = str(left.name)
        if name not in mirror.metadata_columns:
            raise refuse()
        if not isinstance(right, sa.BindParameter) or callable(right.callable):
            raise refuse()
        values: list[Any] = list(right.value or ()) if clause.operator is operators.in_op else [right.value]
        previous = filters.get(name)
        filters[name] = values if previous is None else [v for v in previous if v in values]

    add(onto_table(sa.text(where) if isinstance(where, str) else getattr(where, "__clause_element__", lambda: where)(), col.table, ()))
    return {name: values[0] if len(values) == 1 else values for name, values in filters.items()}


#: ``nearest(via=)`` statement templates by (entity, primary key column, number of hits).
_VIA_TEMPLATES: dict[tuple[Any, Any, int], sa.Select[Any]] = {}


def _via_template(entity: Any, pk: Any, n: int) -> sa.Select[Any]:
    """``SELECT entity, CASE pk WHEN :key0 THEN :distance0 ... WHERE pk IN (:key0, ...) ORDER BY rank``.

    Built once per shape and filled with ``.params()`` per call: building the ``CASE`` expressions
    anew cost ~170 us a call, several times an HNSW search; filling the template costs ~3 us. The
    bind names (``vk_via_key<i>``, ``vk_via_distance<i>``) are fixed, so two ``via=`` statements of
    the same shape cannot be combined in one ``UNION``; run them separately.
    """
    cache_key = (entity, pk, n)
    template = _VIA_TEMPLATES.get(cache_key)
    if template is None:
        keys = [sa.bindparam(f"vk_via_key{i}", type_=pk.type) for i in range(n)]
        dists = [sa.bindparam(f"vk_via_distance{i}", type_=sa.Float) for i in range(n)]
        dist = sa.case(dict(zip(keys, dists)), value=pk)
        rank = sa.case({key: i for i, key in enumerate(keys)}, value=pk)
        template = sa.select(entity, sa.type_coerce(dist, sa.Float).label("distance"))
        template = template.where(pk.in_(keys)).order_by(rank)
        if len(_VIA_TEMPLATES) > 1024:
            _VIA_TEMPLATES.clear()
        _VIA_TEMPLATES[cache_key] = template
    return template


#: pgvector's default hnsw.ef_search: an HNSW scan returns at most this many rows.
DEFAULT_EF_SEARCH = 40
#: ef_search for filtered queries (which pay for one set_config round trip anyway).
FILTERED_EF_SEARCH = 100
#: Knobs every connection of a vectorknobs engine starts with (``create_engine(vector_search=)``).
#: On 100k x 384 clustered vectors pgvector's ef_search of 40 measured recall@10 0.93-0.98 and
#: 100 measured 0.97-0.997 (by data set and HNSW build), ~0.1-0.2 ms slower per query
#: (docs/guide.md, "Query-time knobs"; benchmarks/bench_search.py).
ENGINE_SEARCH_DEFAULTS: dict[str, Any] = {"ef_search": 100}


def _needed_settings(k: int, where: Any, index: VectorIndex | None) -> dict[str, Any]:
    """Knobs without which an approximate index could return fewer than k rows, or poor ones.

    ``k`` is how many rows the index scan must yield: the candidates of a quantized index
    (re-ranked exactly afterwards), else the k asked for.

    Applied under any ``vector_search`` the caller sets (key by key), and only where needed, so a
    plain top-k query costs no extra round trip. Iterative scans use ``relaxed_order``: the
    outer query re-sorts the candidates, and on 100k x 384 clustered vectors it measured recall@10
    0.91 against strict_order's 0.80 at 1 % filter selectivity (docs/guide.md, "Filtering").
    """
    needs: dict[str, Any] = {}
    method = index.vector_options.method if index is not None else None
    if where is not None or k > SEARCH_SETTINGS["ef_search"][2] or method in ("ivfflat", "auto"):
        needs["iterative_scan"] = "relaxed_order"
    if where is not None:
        needs["ef_search"] = max(min(k, 1000), FILTERED_EF_SEARCH)
    elif k > DEFAULT_EF_SEARCH:
        needs["ef_search"] = min(k, int(SEARCH_SETTINGS["ef_search"][2]))
    return needs


# --------------------------------------------------------------------------- knobs

_ITERATIVE = ("off", "relaxed_order", "strict_order")
#: knob -> (type, low, high) ; iterative_scan takes one of _ITERATIVE
SEARCH_SETTINGS: dict[str, tuple[type, float, float]] = {
    "ef_search": (int, 1, 1000),
    "probes": (int, 1, 32768),
    "max_probes": (int, 1, 32768),
    "max_scan_tuples": (int, 1, 2**31 - 1),
    "scan_mem_multiplier": (float, 1, 1000),
    "exact_below": (int, 0, 2**31 - 1),
}
#: Knobs the plugin itself acts on (no database setting): kept per connection by ``search_settings``.
CLIENT_SETTINGS = frozenset({"exact_below"})
#: ``exact_below`` when no knob sets it: a filtered search expected to keep at most
#: ``min(EXACT_BELOW_ROWS, EXACT_BELOW_VALUES // dimensions)`` rows runs exactly, filter first (4,000
#: rows of up to 384 dimensions, 976 of 1,536). On 200k x 384 rows with a B-tree on the filter
#: column, exact search over the qualifying rows measured 1.2 ms at 2,000 rows and 4.6 ms at 6,000;
#: pgvector's iterative HNSW scan 11.6 ms and 4.3 ms (docs/indexes.md, "Filtering").
EXACT_BELOW_ROWS = 4_000
EXACT_BELOW_VALUES = 1_500_000


def exact_below_default(dim: int) -> int:
    """The ``exact_below`` row count for vectors of ``dim`` dimensions when no knob sets it."""
    return min(EXACT_BELOW_ROWS, EXACT_BELOW_VALUES // max(dim, 1))


def validate_search_settings(settings: Any) -> dict[str, Any]:
    """Check ``vector_search`` knobs; returns them normalised or raises one clear error."""
    if not isinstance(settings, dict):
        raise InvalidSearchSettingError(
            f"vector_search must be a dict of knobs, got {type(settings).__name__}; "
            "for example {'ef_search': 100}."
        )
    out: dict[str, Any] = {}
    for name, value in settings.items():
        if name == "iterative_scan":
            if value not in _ITERATIVE:
                raise InvalidSearchSettingError(
                    f"vector_search iterative_scan={value!r} is not valid; use 'off', 'relaxed_order' or 'strict_order'."
                )
            out[name] = value
            continue
        spec = SEARCH_SETTINGS.get(name)
        if spec is None:
            known = ", ".join(["iterative_scan", *SEARCH_SETTINGS])
            raise InvalidSearchSettingError(f"vector_search knob {name!r} is not known; the knobs are {known}.")
        kind, low, high = spec
        ok_type = isinstance(value, (int, float)) if kind is float else isinstance(value, int)
        if isinstance(value, bool) or not ok_type or not low <= value <= high:
            what = "a whole number" if kind is int else "a number"
            raise InvalidSearchSettingError(
                f"vector_search {name}={value!r} is not valid; it takes {what} from {low:g} to {high:g}."
            )
        out[name] = value
    return out


def statement_settings(execution_options: Any) -> dict[str, Any]:
    """The validated knobs for one execution: ``vector_search`` over ``nearest``'s own needs."""
    defaults = execution_options.get("vector_search_defaults") or {}
    knobs = execution_options.get("vector_search")
    if knobs is not None and not isinstance(knobs, dict):
        return validate_search_settings(knobs)  # raises the clear error
    merged = {**defaults, **(knobs or {})}
    return validate_search_settings(merged) if merged else {}


@contextlib.contextmanager
def search_settings(session: Any, **settings: Any) -> Iterator[None]:
    """Apply query-time knobs to the session's current transaction for the ``with`` block::

        with vk.search_settings(session, ef_search=200, iterative_scan="strict_order"):
            rows = session.execute(vk.nearest(Doc.embedding, q, k=50)).all()

    On PostgreSQL the knobs are ``SET LOCAL`` (via ``set_config(..., true)``) and restored on exit;
    on SQLite they are validated and have no effect (sqlite-vec's vec0 search is exact).
    """
    checked = validate_search_settings(settings)
    conn = session.connection() if hasattr(session, "connection") and callable(session.connection) else session
    support = dialects.for_dialect(conn.dialect)
    local = {f"vk_{name}": checked.pop(name) for name in CLIENT_SETTINGS & set(checked)}
    kept = {key: conn.info[key] for key in local if key in conn.info}
    previous = support.current_settings(conn, list(checked))
    support.apply_search_settings(conn, checked)
    conn.info.update(local)
    try:
        yield
    finally:
        for key in local:
            conn.info.pop(key, None)
        conn.info.update(kept)
        support.restore_settings(conn, previous)


# --------------------------------------------------------------------------- explain


class Explain(Executable, ClauseElement):
    """``EXPLAIN`` (PostgreSQL) / ``EXPLAIN QUERY PLAN`` (SQLite) of a statement."""

    inherit_cache = False

    def __init__(self, statement: Any) -> None:
        self.statement = statement
        options = getattr(statement, "_execution_options", None)
        if options:  # the statement's knobs: planned the way it would run
            self._execution_options = self._execution_options.union(options)


@compiles(Explain)
def _compile_explain(element: Explain, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_explain(compiler, element, **kw)


@dataclass(frozen=True)
class ExplainResult:
    """The plan of a statement and the vector indexes it uses."""

    plan: str
    indexes_used: list[str]
    vector_indexes_used: list[str]

    @property
    def uses_vector_index(self) -> bool:
        return bool(self.vector_indexes_used)

    def __str__(self) -> str:
        return self.plan


def explain(session: Any, stmt: Any) -> ExplainResult:
    """Plan ``stmt`` on the session's (or connection's) database and say which indexes it uses::

        result = vk.explain(session, vk.nearest(Doc.embedding, q, k=10))
        assert result.uses_vector_index, result.plan
    """
    conn = session.connection() if hasattr(session, "connection") and callable(session.connection) else session
    support = dialects.for_dialect(conn.dialect)
    knobs = statement_settings(getattr(stmt, "_execution_options", {}))
    if knobs:
        support.apply_search_settings(conn, knobs)
    plan, used, vector_used = support.explain(conn, stmt)
    return ExplainResult(plan, used, vector_used)
