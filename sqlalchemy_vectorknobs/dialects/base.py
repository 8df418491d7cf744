"""The interface every dialect module implements (``postgresql.py``, ``sqlite.py``)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.engine.interfaces import Dialect

if TYPE_CHECKING:
    from ..comparator import VectorBind, VectorDistance, VectorOutput
    from ..inspection import VectorInventory
    from ..types import VectorType


class DialectSupport(Protocol):
    """What the rest of the package may ask of a dialect."""

    name: str
    #: ``bulk_load`` writes a float32 vector column from the caller's arrays themselves (no matrix needed).
    bulk_binds_arrays: bool

    def col_spec(self, type_: VectorType) -> str:
        """DDL type for a vector column (raise UnsupportedDialectError if it cannot be stored)."""

    def bind_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], Any] | None:
        """Validate and encode Python values for the driver."""

    def result_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], Any] | None:
        """Decode driver values into numpy arrays."""

    def literal_processor(self, type_: VectorType, dialect: Dialect) -> Callable[[Any], str] | None:
        """Render a value as an inline SQL literal (offline SQL, literal_binds)."""

    def render_output(self, compiler: Any, element: VectorOutput, **kw: Any) -> str:
        """SQL for a selected vector column."""

    def render_bind(self, compiler: Any, element: VectorBind, **kw: Any) -> str:
        """SQL for a vector parameter (a cast where the driver would leave it untyped)."""

    def render_distance(self, compiler: Any, element: VectorDistance, **kw: Any) -> str:
        """SQL for a distance operator (raise UnsupportedDialectError if not evaluable)."""

    def render_cosine_direction(self, compiler: Any, element: Any, **kw: Any) -> str:
        """SQL true for a vector with a cosine direction (``comparator.CosineDirection``)."""

    def prepare_engine_kwargs(self, url: URL, kwargs: dict[str, Any]) -> None:
        """Adjust create_engine keyword arguments before the engine exists."""

    def setup_engine(self, engine: Engine) -> None:
        """Attach per-connection setup (extensions, codecs) and reflection to an engine."""

    def set_connection_defaults(self, engine: Engine, settings: dict[str, Any]) -> None:
        """Make every new connection start with these (validated) search knobs."""

    def before_create_table(self, table: Any, connection: Connection) -> None:
        """Run before CREATE TABLE of a table with vector columns."""

    def inspect(self, connection: Connection) -> VectorInventory:
        """Report extension version, vector columns and vector indexes."""

    def read_only_reason(self, connection: Connection) -> str | None:
        """Why the database cannot be written to ("a hot standby ..."), or None when it can."""

    # ---- vector indexes (index.py)

    def check_vector_index(self, index: Any) -> None:
        """Refuse, at declaration, an index this database could never build."""

    def before_create_vector_index(self, index: Any, connection: Connection) -> None:
        """Resolve create-time choices (method='auto', lists) or refuse before any DDL."""

    def render_create_vector_index(self, compiler: Any, create: Any, **kw: Any) -> str:
        """SQL of CreateIndex for a VectorIndex."""

    def after_create_vector_index(self, index: Any, connection: Connection) -> None:
        """Follow-up DDL after the index exists (SQLite: triggers and backfill)."""

    def vector_index_follow_up(self, index: Any, preparer: Any) -> list[str]:
        """SQL that must follow CREATE of the index (SQLite: triggers and backfill)."""

    def drop_vector_index_sql(self, name: str, preparer: Any) -> list[str]:
        """SQL that removes a vector index by name, with everything it created."""

    def render_drop_vector_index(self, compiler: Any, drop: Any, **kw: Any) -> str:
        """SQL of DropIndex for a VectorIndex."""

    def after_drop_vector_index(self, index: Any, connection: Connection) -> None:
        """Clean-up after the index (or its table) is dropped."""

    # ---- migrations (alembic_ext)

    #: whether vector index DDL can be written without a database (Alembic --sql)
    offline_index_ddl: bool

    def vector_index_preamble(self, index: Any, preparer: Any) -> list[str]:
        """SQL to run before creating the index in a migration (SQLite: clear leftovers)."""

    def extension_sql(self, create: bool, schema: str | None, preparer: Any) -> list[str]:
        """CREATE / DROP of the vector extension ([] where there is none to manage)."""

    def reindex_sql(self, name: str, schema: str | None, concurrently: bool, preparer: Any) -> list[str] | None:
        """SQL rebuilding an index by name, or None when it must be refilled from its definition."""

    def alter_vector_column_sql(
        self, table: str, column: str, new: Any, using: str | None, schema: str | None, preparer: Any
    ) -> list[str] | None:
        """In-place change of a column's vector type, or None when the table must be rebuilt."""

    def retarget_index_definition(self, definition: str, old: Any, new: Any) -> str:
        """A live index definition rewritten for the column's new type."""

    def vector_index_matches(self, connection: Connection, index: Any, info: Any) -> bool:
        """Whether a live vector index (``VectorIndexInfo``) is what ``index`` declares."""

    # ---- queries (query.py, bulk.py)

    def render_knn(self, compiler: Any, element: Any, **kw: Any) -> str:
        """The (id, distance) candidates subquery of vk.nearest, in parentheses."""

    def apply_search_settings(self, connection: Connection, settings: dict[str, Any]) -> None:
        """Apply validated query-time knobs to the current transaction."""

    def current_settings(self, connection: Connection, knobs: list[str]) -> dict[str, str | None]:
        """The current values of the settings behind ``knobs`` (to restore later)."""

    def restore_settings(self, connection: Connection, previous: dict[str, str | None]) -> None:
        """Put back what current_settings returned."""

    def render_explain(self, compiler: Any, element: Any, **kw: Any) -> str:
        """SQL of an Explain element."""

    def explain(self, connection: Connection, stmt: Any) -> tuple[str, list[str], list[str]]:
        """(plan text, indexes used, vector indexes used) for ``stmt``."""

    def bulk_load(
        self, connection: Connection, table: Any, names: list[str], columns: list[Any], *, rows: list[Any] | None = None
    ) -> int:
        """Write validated columns (one sequence, or float32 matrix, per name) the fastest way; return the count.

        ``rows``, when given, are the same values as the caller's tuples in ``names`` order, each
        vector a little-endian float32 1-D array (bindable as a buffer without encoding)."""

    def advance_key_sequence(self, connection: Connection, table: Any, column: Any) -> None:
        """After rows were written with explicit keys: make the column's generator continue past them."""

    def in_values(self, column: Any, values: Sequence[Any]) -> Any:
        """``column IN values`` for long lists of keys, in the form the driver handles best."""

    def insert_ids(
        self, connection: Connection, table: Any, names: Sequence[str], rows: Sequence[tuple[Any, ...]], constants: Mapping[str, Any], key: Sequence[str]
    ) -> list[int]:
        """INSERT ``rows`` (tuples of the ``names`` columns) plus ``constants`` (SQL expressions) into
        ``table``, whose integer ``id`` autoincrements; the new ids in the order of ``rows``. The
        ``key`` columns (a subset of ``names``) tell the rows apart."""

    def render_source_hash(self, compiler: Any, element: Any, **kw: Any) -> str:
        """SQL computing ``codec.source_hash`` of the element's columns (hex SHA-256 of the joined text)."""

    # ---- full-text search (fulltext.py, search.py)

    def check_fulltext_index(self, index: Any) -> None:
        """Refuse, at declaration, a FullTextIndex this database could never build."""

    def before_create_fulltext_index(self, index: Any, connection: Connection) -> None:
        """Refuse before any DDL a FullTextIndex this database cannot build."""

    def render_create_fulltext_index(self, compiler: Any, create: Any, **kw: Any) -> str:
        """SQL of CreateIndex for a FullTextIndex."""

    def render_drop_fulltext_index(self, compiler: Any, drop: Any, **kw: Any) -> str:
        """SQL of DropIndex for a FullTextIndex."""

    def fulltext_index_follow_up(self, index: Any, preparer: Any) -> list[str]:
        """SQL that must follow CREATE of the index (SQLite: triggers and backfill)."""

    def fulltext_index_clean_up(self, name: str, preparer: Any) -> list[str]:
        """SQL after the index (or its table) is dropped (SQLite: the FTS5 table and triggers)."""

    def drop_fulltext_index_sql(self, name: str, preparer: Any) -> list[str]:
        """SQL that removes a FullTextIndex by name, with everything it created."""

    def fulltext_index_preamble(self, index: Any, preparer: Any) -> list[str]:
        """SQL to run before creating the index in a migration (SQLite: clear leftovers)."""

    def fulltext_indexes(self, connection: Connection, table: str, schema: str | None) -> dict[str, dict[str, Any]]:
        """The live full-text indexes this package made on ``table``: {name: {columns, config, tokenize, definition}}."""

    def fulltext_index_matches(self, index: Any, info: dict[str, Any]) -> bool:
        """Whether a live full-text index (from ``fulltext_indexes``) is what ``index`` declares."""

    def fulltext_query_value(self, text: str, match: str, config: str) -> str:
        """The query text as the dialect's matcher reads it (``match``: 'websearch' or 'any')."""

    def render_text_search(self, compiler: Any, element: Any, **kw: Any) -> str:
        """The (id, score) full-text candidates subquery of a TextSearch, best first, in parentheses."""


def install_statement_hook(
    engine: Engine, before: Callable[[Connection, Any, Any], bool], after: Callable[[Connection], None]
) -> None:
    """Call ``before(connection, execution_options, context)`` ahead of every statement that carries
    ``vector_search`` knobs, and ``after(connection)`` once it ran when ``before`` returned True.
    ``context`` is the statement's execution context: its compiled form and its parameters, which
    ``before`` may still change.

    This subclasses the engine's execution context (``pre_exec`` / ``post_exec``, the hooks
    dialects themselves use) instead of listening to ``before_execute``: an engine with execute
    listeners pays for SQLAlchemy's event path on every statement, vector or not, while this
    costs one dictionary lookup. Statements the hook itself runs are not hooked again.
    """
    dialect = engine.dialect
    base_cls: Any = dialect.execution_ctx_cls

    def pre_exec(self: Any) -> None:
        base_cls.pre_exec(self)
        opts = self.execution_options
        if "vector_search" not in opts and "vector_search_defaults" not in opts:
            return
        conn = self.root_connection
        if conn.info.get("vk_in_hook"):
            return
        conn.info["vk_in_hook"] = True
        try:
            self._vk_after = before(conn, opts, self)
        finally:
            conn.info.pop("vk_in_hook", None)

    def post_exec(self: Any) -> None:
        base_cls.post_exec(self)
        if self._vk_after:
            self._vk_after = False
            conn = self.root_connection
            conn.info["vk_in_hook"] = True
            try:
                after(conn)
            finally:
                conn.info.pop("vk_in_hook", None)

    name = f"VectorKnobs{base_cls.__name__}"
    # ``_vk_after`` as a class attribute: an instance lookup that misses costs an AttributeError
    # inside ``getattr`` on every statement.
    dialect.execution_ctx_cls = type(name, (base_cls,), {"pre_exec": pre_exec, "post_exec": post_exec, "_vk_after": False})


def subquery_sql(compiler: Any, select: Any, **kw: Any) -> str:
    """Render ``select`` in parentheses inside the statement being compiled (a FROM item)."""
    for key in ("asfrom", "from_linter", "lateral", "enclosing_alias", "within_columns_clause"):
        kw.pop(key, None)
    return f"({compiler.process(select, **kw)})"


def cosine_direction(column: Any) -> Any:
    """SQL true when ``column`` holds a vector with a cosine direction (``codec.cosine_searchable``);
    each dialect renders it (``render_cosine_direction``)."""
    from ..comparator import CosineDirection

    return CosineDirection(column)


def index_knn_select(element: Any) -> Any:
    """(id, distance) of the k nearest, ordered by the column's own distance expression, so the
    planner answers it from an HNSW/IVFFlat index on the plain column (PostgreSQL).

    The index holds no NULL vectors, but the planner may answer a small table by sorting it, and
    NULL distances sort last, inside ``LIMIT k`` when fewer rows have a vector: so NULLs are
    filtered. Under cosine the index may hold vectors whose squares underflow (pgvector
    normalises them in double precision), whose distance is then 0, 2 or NaN: the filter drops
    them from the rows the index scan returns, a check on those rows only.
    """
    from sqlalchemy import literal_column, select

    from ..comparator import VectorDistance

    distance = VectorDistance(element.column, element.query, element.operator)
    stmt = select(element.key_column.label("id"), distance.label("distance")).where(element.column.is_not(None))
    if element.where is not None:
        stmt = stmt.where(element.where)
    if element.operator == "cosine":
        stmt = stmt.where(cosine_direction(element.column))
    return stmt.order_by(distance).limit(literal_column(str(element.k)))


def exact_knn_select(element: Any, *, fence: Callable[[Any], Any], extra: Sequence[Any] = (), unindexed: bool = False) -> Any:
    """(id, distance) of the k nearest rows that have a vector (and, under cosine, a direction:
    see :func:`cosine_direction`), by exact search; every distance is computed once.

    ``fence`` keeps the database from merging the inner SELECT into the outer one (SQLite:
    ``LIMIT -1``, PostgreSQL: ``OFFSET 0``), which would compute the distance again for the
    filter. Under cosine a row without a direction can only give a distance of exactly 0, 1 or
    2, NaN/NULL or an infinity (the division by its zero or infinite norm), so only rows with
    such a distance pay for the check of their own vector. ``extra``: more conditions on the
    rows; ``unindexed``: order by an expression no index serves (PostgreSQL's exact branch).
    """
    from sqlalchemy import and_, literal_column, or_, select

    from ..comparator import VectorDistance

    col = element.column
    k: Any = literal_column(str(element.k))
    distance: Any = VectorDistance(col, element.query, element.operator)
    conditions = [col.is_not(None), *([element.where] if element.where is not None else []), *extra]
    if element.operator != "cosine":
        if unindexed:
            distance = distance + literal_column("0")
        return select(element.key_column.label("id"), distance.label("distance")).where(*conditions).order_by(distance).limit(k)
    inner = fence(select(element.key_column.label("id"), distance.label("distance"), col.label("vk_vector")).where(*conditions))
    rows = inner.subquery("vk_exact")
    d = rows.c.distance
    suspect = or_(*(d == literal_column(v) for v in ("0", "1", "2")))
    ok = and_(d > literal_column("-1"), d < literal_column("3"), or_(~suspect, cosine_direction(rows.c.vk_vector)))
    return select(rows.c.id, d).where(ok).order_by(d).limit(k)


def explain_sql(prefix: str, compiler: Any, statement: Any, **kw: Any) -> str:
    """``prefix`` + the statement, compiled as a nested statement.

    Nested, the statement does not set the result columns: the rows are the plan's, not its own.
    """
    compiler.stack.append({"correlate_froms": set(), "asfrom_froms": set(), "selectable": statement})
    try:
        body = compiler.process(statement, **kw)
        # A nested statement leaves its CTEs (hybrid_search's) for the top level to write.
        return f"{prefix} {compiler._render_cte_clause()}{body}"
    finally:
        compiler.stack.pop()
