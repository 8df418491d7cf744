"""Rendering of vector types and ``alembic_ext`` operations into migration scripts, with imports."""

from __future__ import annotations

from typing import Any

from alembic.autogenerate import renderers

from sqlalchemy_vectorknobs.types import VectorType

from .ops import (
    INDEX_KNOBS,
    AlterVectorColumnOp,
    CreateFullTextIndexOp,
    CreateVectorExtensionOp,
    CreateVectorIndexOp,
    DropFullTextIndexOp,
    DropVectorExtensionOp,
    DropVectorIndexOp,
    ReindexVectorIndexOp,
)

IMPORTS = ("import alembic_ext  # noqa: F401  (registers the vector operations)", "import sqlalchemy_vectorknobs")


def _imports(autogen_context: Any) -> None:
    for line in IMPORTS:
        autogen_context.imports.add(line)


def render_type(type_: Any, autogen_context: Any) -> str | bool:
    """``render_item`` for types: vector types as ``sqlalchemy_vectorknobs.Vector(384)``."""
    if isinstance(type_, VectorType):
        _imports(autogen_context)
        return f"sqlalchemy_vectorknobs.{type_!r}"
    return False


def _where(where: Any, autogen_context: Any) -> str:
    if isinstance(where, str):
        return where
    dialect = autogen_context.dialect
    return str(where.compile(dialect=dialect, compile_kwargs={"literal_binds": True, "include_table": False}))


def _args(op: Any, autogen_context: Any) -> str:
    parts = []
    if op.schema:
        parts.append(f"schema={op.schema!r}")
    if op.column_type is not None:
        parts.append(f"column_type={render_type(op.column_type, autogen_context)}")
    for key, default in INDEX_KNOBS.items():
        value = op.knobs.get(key, default)
        if hasattr(value, "value") and not isinstance(value, (str, int)):
            value = value.value  # Distance enum
        if key == "where" and value is not None:
            value = _where(value, autogen_context)
        if key == "metadata_columns":
            value = list(value)
            default = list(default)
        if value != default and not (key == "distance" and str(value) == str(default)):
            parts.append(f"{key}={value!r}")
    return ", ".join(parts)


@renderers.dispatch_for(CreateVectorIndexOp)
def _render_create_index(autogen_context: Any, op: CreateVectorIndexOp) -> list[str]:
    _imports(autogen_context)
    extra = _args(op, autogen_context)
    call = f"op.create_vector_index({op.index_name!r}, {op.table_name!r}, {op.column_name!r}" + (f", {extra}" if extra else "") + ")"
    if not op.assumed:
        return [call]
    return [f"# {', '.join(op.assumed)}: from the model's declaration (not recorded by this database)", call]


@renderers.dispatch_for(DropVectorIndexOp)
def _render_drop_index(autogen_context: Any, op: DropVectorIndexOp) -> str:
    _imports(autogen_context)
    schema = f", schema={op.schema!r}" if op.schema else ""
    return f"op.drop_vector_index({op.index_name!r}, {op.table_name!r}{schema})"


@renderers.dispatch_for(ReindexVectorIndexOp)
def _render_reindex(autogen_context: Any, op: ReindexVectorIndexOp) -> str:
    _imports(autogen_context)
    schema = f", schema={op.schema!r}" if op.schema else ""
    return f"op.reindex_vector_index({op.index_name!r}{schema}, concurrently={op.concurrently!r})"


@renderers.dispatch_for(AlterVectorColumnOp)
def _render_alter_column(autogen_context: Any, op: AlterVectorColumnOp) -> str:
    _imports(autogen_context)
    parts = [repr(op.table_name), repr(op.column_name)]
    if op.type_ is not None:
        parts.append(f"type_={render_type(op.type_, autogen_context)}")
    if op.dim is not None:
        parts.append(f"dim={op.dim!r}")
    if op.existing_type is not None:
        parts.append(f"existing_type={render_type(op.existing_type, autogen_context)}")
    if op.using is not None:
        parts.append(f"using={op.using!r}")
    if op.schema:
        parts.append(f"schema={op.schema!r}")
    return f"op.alter_vector_column({', '.join(parts)})"


@renderers.dispatch_for(CreateVectorExtensionOp)
def _render_create_extension(autogen_context: Any, op: CreateVectorExtensionOp) -> str:
    _imports(autogen_context)
    return "op.create_vector_extension()"


@renderers.dispatch_for(DropVectorExtensionOp)
def _render_drop_extension(autogen_context: Any, op: DropVectorExtensionOp) -> str:
    _imports(autogen_context)
    return "op.drop_vector_extension()"


@renderers.dispatch_for(CreateFullTextIndexOp)
def _render_create_fulltext_index(autogen_context: Any, op: CreateFullTextIndexOp) -> str:
    _imports(autogen_context)
    parts = [repr(op.index_name), repr(op.table_name), repr(op.columns)]
    if op.config != "english":
        parts.append(f"config={op.config!r}")
    if op.tokenize is not None:
        parts.append(f"tokenize={op.tokenize!r}")
    if op.schema:
        parts.append(f"schema={op.schema!r}")
    return f"op.create_fulltext_index({', '.join(parts)})"


@renderers.dispatch_for(DropFullTextIndexOp)
def _render_drop_fulltext_index(autogen_context: Any, op: DropFullTextIndexOp) -> str:
    _imports(autogen_context)
    schema = f", schema={op.schema!r}" if op.schema else ""
    return f"op.drop_fulltext_index({op.index_name!r}, {op.table_name!r}{schema})"
