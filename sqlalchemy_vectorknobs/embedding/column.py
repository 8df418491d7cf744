"""``embedded_column``: a vector column whose value follows its source text columns.

Declaring one is all that is needed; the flush listener (``listener.py``) is installed on first
use and keeps the vector in step::

    class Doc(Base):
        __tablename__ = "doc"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str]
        body: Mapped[str | None]
        embedding = vk.embedded_column(vk.Vector(384), source=("title", "body"), embedder="minilm")

Two more columns are added to the table next to the vector, named after it:

* ``<column>_model`` (``String(255)``) — the fingerprint ``"<embedder name>@<version>"`` (plus
  ``#t<digest>`` when a template is used) of the model that made the vector;
* ``<column>_hash`` (``String(64)``) — hex SHA-256 of the source values joined by newlines
  (NULLs skipped), the same value the database computes in SQL for ``vk.stale()``.

Both are ordinary mapped, indexable columns; ``model_column=`` / ``hash_column=`` rename them.
They are added once per table, however the table is built or copied (``Table.to_metadata``,
Alembic's table copies): a copy receives the copies of the companions, and any that did not come
are added when the copied table is complete. Nothing of the declaration is kept in ``Table.info``
(which Alembic writes into migration files): the table's embedded columns are found by
:func:`specs_of`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import string
from collections.abc import Sequence
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import MappedColumn, mapped_column
from sqlalchemy.sql.functions import FunctionElement

from .. import codec, dialects
from ..codec import Kind
from ..exc import DimensionMismatchError, VectorKnobsError
from ..types import VectorType
from .embedders import resolve_embedder

__all__ = ["INFO_KEY", "EmbeddedColumn", "SourceHash", "embedded_column", "register_spec", "specs_of"]

INFO_KEY = "vectorknobs.embedding"
#: where a Table keeps its embedded columns: an attribute of the Table object, so neither
#: ``Table.info`` (rendered into migration files) nor copies of the table carry them
_SPECS_ATTR = "_vk_embedded_columns"
ON_ERROR = ("raise", "mark_stale")
MODES = ("inline", "deferred")


class EmbeddingConfigError(VectorKnobsError, ValueError):
    """An ``embedded_column`` declaration is invalid."""


class SourceHash(FunctionElement[str]):
    """``codec.source_hash`` of some columns, computed by the database (dialect-specific SQL)."""

    name = "vk_source_hash"
    type = sa.String(64)
    inherit_cache = True


@compiles(SourceHash)
def _compile_source_hash(element: SourceHash, compiler: Any, **kw: Any) -> str:
    return dialects.for_dialect(compiler.dialect).render_source_hash(compiler, element, **kw)


class EmbeddedColumn:
    """What one ``embedded_column`` declares; bound to its table column when the table is built.

    ``embedder`` may be replaced at run time (``vk.reembed`` does so after a model switch); the
    fingerprint written with each vector follows it.
    """

    def __init__(
        self,
        type_: VectorType,
        source: tuple[str, ...],
        embedder: Any,
        template: str | None,
        batch_size: int,
        on_error: str,
        mode: str,
        model_column: str | None,
        hash_column: str | None,
    ) -> None:
        self.type = type_
        self.source = source
        self.embedder = embedder
        self.template = template
        self.batch_size = batch_size
        self.on_error = on_error
        self.mode = mode
        self._model_column = model_column
        self._hash_column = hash_column
        self.column: sa.Column[Any] | None = None

    def __repr__(self) -> str:
        where = self.qualified_name if self.column is not None else "unbound"
        return f"<embedded column {where} from {', '.join(self.source)} by {self.fingerprint}>"

    # ------------------------------------------------------------------ identity

    @property
    def qualified_name(self) -> str:
        col = self.bound_column
        return f"{col.table.name}.{col.name}"

    @property
    def bound_column(self) -> sa.Column[Any]:
        if self.column is None or getattr(self.column, "table", None) is None:
            raise EmbeddingConfigError("This embedded_column is not part of a table yet; declare it on a mapped class.")
        return self.column

    @property
    def table(self) -> sa.Table:
        return self.bound_column.table

    @property
    def model_column_name(self) -> str:
        return self._model_column or f"{self.bound_column.name}_model"

    @property
    def hash_column_name(self) -> str:
        return self._hash_column or f"{self.bound_column.name}_hash"

    @property
    def model_column(self) -> sa.Column[Any]:
        return self.table.c[self.model_column_name]

    @property
    def hash_column(self) -> sa.Column[Any]:
        return self.table.c[self.hash_column_name]

    @property
    def source_columns(self) -> list[sa.Column[Any]]:
        table = self.table
        missing = [name for name in self.source if name not in table.c]
        if missing:
            raise EmbeddingConfigError(
                f"Embedded column '{self.qualified_name}' names source {missing[0]!r}, which is not a column of table '{table.name}'."
            )
        return [table.c[name] for name in self.source]

    @property
    def primary_key(self) -> sa.Column[Any]:
        pks = list(self.table.primary_key.columns)
        if len(pks) != 1:
            raise EmbeddingConfigError(
                f"Table '{self.table.name}' has {len(pks)} primary key columns; embedded columns need exactly one."
            )
        return pks[0]

    @property
    def dim(self) -> int | None:
        return self.type.dim

    @property
    def fingerprint(self) -> str:
        """``"<name>@<version>"`` of the embedder, plus a template digest: stored in ``<column>_model``."""
        return fingerprint(self.embedder, self.template)

    # ------------------------------------------------------------------ text

    def text(self, values: Sequence[Any]) -> str:
        """The text embedded for one row's source values ('' when there is nothing to embed)."""
        if self.template is None:
            return codec.source_text(values)
        if all(v is None or v == "" for v in values):
            return ""
        return self.template.format(**{k: ("" if v is None else v) for k, v in zip(self.source, values)})

    def text_and_hash(self, values: Sequence[Any]) -> tuple[str, str]:
        """(text to embed, stored hash) for one row's source values, joining them only once."""
        joined = codec.source_text(values)
        digest = hashlib.sha256(joined.encode("utf-8")).hexdigest()
        if self.template is None or joined == "":
            return joined, digest
        return self.text(values), digest

    def source_hash_sql(self, columns: Sequence[Any] | None = None) -> SourceHash:
        """The SQL expression computing the stored hash from the row's current source values."""
        return SourceHash(*(columns if columns is not None else self.source_columns))

    def check(self) -> None:
        """Validate the parts that need the whole table: sources exist and are text columns."""
        for col in self.source_columns:
            if not isinstance(col.type, sa.String) or isinstance(col.type, sa.Enum):
                raise EmbeddingConfigError(
                    f"Source column '{self.table.name}.{col.name}' of embedded column '{self.qualified_name}' is "
                    f"{col.type!r}; sources must be text columns (String, Text, Unicode)."
                )
        self.model_column, self.hash_column, self.primary_key  # noqa: B018 - raise early if missing


def fingerprint(embedder: Any, template: str | None) -> str:
    """What ``<column>_model`` stores for vectors made by ``embedder`` through ``template``."""
    fp = f"{embedder.name}@{embedder.version}"
    if template is not None:
        fp += "#t" + hashlib.sha256(template.encode("utf-8")).hexdigest()[:8]
    return fp


def specs_of(table: Any) -> list[EmbeddedColumn]:
    """The embedded columns declared on ``table`` (an empty list for most tables)."""
    found = getattr(table, "__dict__", {}).get(_SPECS_ATTR) if table is not None else None
    return cast("list[EmbeddedColumn]", found) if found else []


def register_spec(table: sa.Table, spec: EmbeddedColumn) -> None:
    """Record ``spec`` (bound to a column of ``table``) as one of the table's embedded columns,
    replacing any earlier one of the same column name."""
    specs = table.__dict__.setdefault(_SPECS_ATTR, [])
    name = spec.bound_column.name
    specs[:] = [s for s in specs if s.column is not None and s.column.name != name] + [spec]


def embedded_column(
    type_: VectorType,
    source: str | Sequence[str],
    embedder: Any = "minilm",
    *,
    template: str | None = None,
    batch_size: int = 256,
    on_error: str = "raise",
    mode: str = "inline",
    model_column: str | None = None,
    hash_column: str | None = None,
    **kw: Any,
) -> MappedColumn[Any]:
    """A nullable vector column kept equal to ``embedder(text of source columns)`` on every flush.

    :param type_: ``vk.Vector(dim)`` or ``vk.HalfVector(dim)``.
    :param source: the text column(s) the vector is computed from.
    :param embedder: a :class:`vk.Embedder`, or ``"minilm"`` (the offline all-MiniLM-L6-v2).
    :param template: a ``str.format`` template over the source names, e.g. ``"{title}\\n\\n{body}"``;
        without one the non-NULL source values are joined by a newline.
    :param batch_size: texts per embedder call (flush, bulk statements, backfill).
    :param on_error: ``"raise"`` aborts the flush with :class:`vk.EmbeddingError` and writes
        nothing; ``"mark_stale"`` writes the text and leaves the row listed by ``vk.stale()``.
    :param mode: ``"inline"`` embeds during flush; ``"deferred"`` only records the text (the row
        is stale) and leaves embedding to ``vk.backfill`` or a ``vk.Vectorizer``.
    :param model_column, hash_column: names of the companion columns (default
        ``<name>_model`` and ``<name>_hash``).
    Other keyword arguments go to :func:`sqlalchemy.orm.mapped_column`.
    """
    if isinstance(type_, type) and issubclass(type_, VectorType):
        raise EmbeddingConfigError(f"embedded_column needs a sized type such as {type_.__name__}(384), not the class.")
    if not isinstance(type_, VectorType) or type_.kind not in (Kind.FLOAT32, Kind.FLOAT16):
        raise EmbeddingConfigError(
            f"embedded_column needs vk.Vector(dim) or vk.HalfVector(dim), got {type_!r}."
        )
    sources = (source,) if isinstance(source, str) else tuple(source)
    if not sources or not all(isinstance(s, str) and s for s in sources):
        raise EmbeddingConfigError("embedded_column source must name at least one text column.")
    if len(set(sources)) != len(sources):
        raise EmbeddingConfigError(f"embedded_column source {sources!r} names a column twice.")
    if template is not None:
        try:
            fields = {f for _, f, _, _ in string.Formatter().parse(template) if f is not None}
        except ValueError as err:
            raise EmbeddingConfigError(f"embedded_column template {template!r} is not a valid format string: {err}.") from None
        unknown = sorted(f for f in fields if f not in sources)
        if unknown:
            raise EmbeddingConfigError(
                f"embedded_column template field {{{unknown[0]}}} is not one of the sources {', '.join(sources)}."
            )
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise EmbeddingConfigError(f"embedded_column batch_size {batch_size!r} is not a positive whole number.")
    if on_error not in ON_ERROR:
        raise EmbeddingConfigError(f"embedded_column on_error {on_error!r} is not one of 'raise', 'mark_stale'.")
    if mode not in MODES:
        raise EmbeddingConfigError(f"embedded_column mode {mode!r} is not one of 'inline', 'deferred'.")
    resolved = resolve_embedder(embedder)
    if resolved.dim is not None and type_.dim is not None and resolved.dim != type_.dim:
        raise DimensionMismatchError(
            f"Embedder '{resolved.name}' produces {resolved.dim} dimensions but the column type {type_!r} expects {type_.dim}."
        )
    spec = EmbeddedColumn(type_, sources, resolved, template, batch_size, on_error, mode, model_column, hash_column)
    info = dict(kw.pop("info", None) or {})
    info[INFO_KEY] = spec
    kw.setdefault("nullable", True)
    mc: MappedColumn[Any] = mapped_column(type_, info=info, **kw)
    event.listen(mc.column, "after_parent_attach", _on_attach, propagate=True)
    from .listener import install

    install()
    return mc


def _on_attach(column: sa.Column[Any], table: Any) -> None:
    if not isinstance(table, sa.Table):
        return
    spec: EmbeddedColumn = column.info[INFO_KEY]
    source = spec.column if spec.column is not None and spec.column is not column else None
    if source is not None:
        # The declaration was copied (a mixin used by several classes, Table.to_metadata, Alembic's
        # table copies): each table gets its own.
        spec = copy.copy(spec)
        column.info = {**column.info, INFO_KEY: spec}
    spec.column = column
    register_spec(table, spec)
    source_table = getattr(source, "table", None)
    if isinstance(source_table, sa.Table) and all(n in source_table.c for n in _companion_names(spec)):
        # A copy of a table that has its companions: their copies are attached after this column
        # (to_metadata and Alembic copy every column), so add only those still missing once the
        # table is complete.
        event.listen(table, "after_parent_attach", functools.partial(_add_companions, spec), once=True)
    else:
        _add_companions(spec, table)


def _companion_names(spec: EmbeddedColumn) -> tuple[str, str]:
    return spec.model_column_name, spec.hash_column_name


def _add_companions(spec: EmbeddedColumn, table: sa.Table, *parent: Any) -> None:
    for name, type_ in zip(_companion_names(spec), (sa.String(255), sa.String(64))):
        if name not in table.c:
            table.append_column(sa.Column(name, type_, nullable=True))
