"""Alembic support for sqlalchemy-vectorknobs: vector operations and autogenerate.

Importing ``alembic_ext`` registers the operations (``op.create_vector_index`` and friends);
generated migrations import it. Autogenerate is one line in ``env.py``::

    import alembic_ext

    context.configure(connection=connection, target_metadata=target_metadata,
                      **alembic_ext.autogenerate_options())

``autogenerate_options`` works on every supported Alembic: on 1.18+ through the ``alembic_ext``
plugin (published under the ``alembic.plugins`` entry point), before that through Alembic's
global comparator registry. Your own ``render_item``, ``include_object``, ``compare_type`` and
``autogenerate_plugins`` are passed in and kept.

Importing it also makes SQLite batch migrations keep vector and full-text indexes in step with
the tables Alembic copies (:mod:`alembic_ext.batch`).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Any


def _alembic_is_loading() -> bool:
    """True while Alembic itself is importing and loading its ``alembic.plugins`` entry points."""
    mod = sys.modules.get("alembic")
    return mod is not None and not hasattr(mod, "op")


#: Set while this package was imported by Alembic's plugin loading, before Alembic was ready:
#: then nothing below can import Alembic, and alembic_ext.plugin discards this half-made package
#: so that the next ``import alembic_ext`` (env.py, a migration) runs in full.
DEFERRED = _alembic_is_loading()

if not DEFERRED:
    import alembic

    from sqlalchemy_vectorknobs.migration import PROGRESS_TABLE as _PROGRESS_TABLE
    from sqlalchemy_vectorknobs.sync.outbox import OUTBOX_TABLE as _OUTBOX_TABLE

    from . import batch as _batch
    from . import impl as _impl  # noqa: F401  (registers the operation implementations)
    from . import render as _render
    from .ops import (
        AlterVectorColumnOp,
        CreateFullTextIndexOp,
        CreateVectorExtensionOp,
        CreateVectorIndexOp,
        DropFullTextIndexOp,
        DropVectorExtensionOp,
        DropVectorIndexOp,
        ReindexVectorIndexOp,
    )

    _batch.install()

    #: Tables sqlalchemy-vectorknobs itself creates in your database: the mirror outbox
    #: (``vk.attach(..., outbox=True)``, ``vk.create_outbox``) and the resume markers of
    #: ``vk.migrate`` / ``vectorknobs migrate``. Autogenerate leaves them alone unless your
    #: metadata declares them.
    PACKAGE_TABLES = frozenset({_OUTBOX_TABLE, _PROGRESS_TABLE})

__all__ = [
    "PACKAGE_TABLES",
    "AlterVectorColumnOp",
    "CreateFullTextIndexOp",
    "CreateVectorExtensionOp",
    "CreateVectorIndexOp",
    "DropFullTextIndexOp",
    "DropVectorExtensionOp",
    "DropVectorIndexOp",
    "ReindexVectorIndexOp",
    "autogenerate_options",
]

_DEFAULT_PLUGINS = ["alembic.autogenerate.*"]


def _has_plugin_system() -> bool:
    major, minor = (int(p) for p in alembic.__version__.split(".")[:2])
    return (major, minor) >= (1, 18)


def _register_comparator() -> list[str]:
    """Make the vector comparator part of autogenerate; returns the plugin names to enable."""
    from .compare import compare_vectors
    from .plugin import PLUGIN_NAME

    if _has_plugin_system():
        from alembic.runtime import plugins

        if PLUGIN_NAME not in plugins._all_plugins:  # not installed through the entry point
            from . import plugin as plugin_module

            plugins.Plugin.setup_plugin_from_module(plugin_module, PLUGIN_NAME)
        return [PLUGIN_NAME]
    from alembic.autogenerate import comparators

    if not getattr(_register_comparator, "_done", False):
        comparators.dispatch_for("table")(compare_vectors)
        _register_comparator._done = True  # type: ignore[attr-defined]
    return []


def _is_vector_index(obj: Any, reflected: bool) -> bool:
    """A vector or full-text index (which alembic_ext compares), declared or reflected."""
    from sqlalchemy_vectorknobs import VectorIndex
    from sqlalchemy_vectorknobs.fulltext import FullTextIndex

    if isinstance(obj, (VectorIndex, FullTextIndex)):
        return True
    if reflected:
        using = obj.dialect_options["postgresql"].get("using") if "postgresql" in obj.dialect_options else None
        if using == "gin" and any("to_tsvector(" in str(e) for e in getattr(obj, "expressions", ())):
            return True
        return using in ("hnsw", "ivfflat")
    return False


def _creates_vector_columns(ops: Any) -> bool:
    from alembic.operations import ops as alembic_ops

    from sqlalchemy_vectorknobs.types import VectorType

    for op in getattr(ops, "ops", []):
        if isinstance(op, alembic_ops.CreateTableOp):
            if any(isinstance(getattr(c, "type", None), VectorType) for c in op.columns):
                return True
        elif isinstance(op, alembic_ops.AddColumnOp) and isinstance(op.column.type, VectorType) or _creates_vector_columns(op):
            return True
    return False


def _outside_batches(container: Any) -> None:
    """Take the vector and full-text index operations out of each table's group of operations:
    drops before it, type changes and creates after it.

    With ``render_as_batch`` a table's group becomes one ``with op.batch_alter_table(...)``
    block, which SQLite runs at the end of the block (one table copy); the index operations run
    where they stand. So an index on a column the block adds is created after the block, and a
    drop of an index on a column the block removes runs before it.
    """
    from alembic.operations import ops as alembic_ops

    before_types = (DropVectorIndexOp, DropFullTextIndexOp)
    after_types = (AlterVectorColumnOp, CreateVectorIndexOp, CreateFullTextIndexOp, ReindexVectorIndexOp)
    arranged: list[Any] = []
    for op in container.ops:
        if not isinstance(op, alembic_ops.ModifyTableOps):
            arranged.append(op)
            continue
        before = [o for o in op.ops if isinstance(o, before_types)]
        after = [o for o in op.ops if isinstance(o, after_types)]
        op.ops = [o for o in op.ops if not isinstance(o, before_types + after_types)]
        arranged += [*before, *([op] if op.ops else []), *after]
    container.ops = arranged


def _ensure_extension(context: Any, script: Any) -> None:
    """Put ``create_vector_extension`` first when a migration needs pgvector and it is missing."""
    if context.bind is None:
        return
    upgrade, downgrade = script.upgrade_ops_list[-1], script.downgrade_ops_list[-1]
    if not _creates_vector_columns(upgrade):
        return
    import sqlalchemy_vectorknobs as vk

    if vk.inspect_vectors(context.bind).extension_version is not None:
        return  # installed already (always so for sqlite-vec, which the engine loads)
    upgrade.ops.insert(0, CreateVectorExtensionOp())
    downgrade.ops.append(DropVectorExtensionOp())


def autogenerate_options(
    *,
    render_item: Callable[..., Any] | None = None,
    include_object: Callable[..., bool] | None = None,
    compare_type: Callable[..., Any] | None = None,
    process_revision_directives: Callable[..., Any] | None = None,
    autogenerate_plugins: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Keyword arguments for ``context.configure`` that make autogenerate vector-aware.

    - vector types render as ``sqlalchemy_vectorknobs.Vector(384)`` with their imports;
    - ``VectorIndex`` objects become ``op.create_vector_index`` / ``op.drop_vector_index`` with
      every parameter compared against the live catalog (Alembic's own index comparison skips
      them, so opclasses and parameters are never lost or proposed forever);
    - dimension and type changes become ``op.alter_vector_column``;
    - vec0 tables (SQLite) never appear (a vectorknobs engine hides them from reflection), nor
      do the package's own tables (:data:`PACKAGE_TABLES`) unless your metadata declares them;
    - a plain ``Index(..., postgresql_using="hnsw", ...)`` on a vector column that builds what
      is live produces nothing (pgvector-python projects keep theirs as they are);
    - a migration that creates the first vector columns starts with ``op.create_vector_extension()``
      when the PostgreSQL database does not have pgvector yet;
    - vector and full-text index operations are placed outside ``batch_alter_table`` blocks.

    Pass your own hooks (including ``process_revision_directives``) here instead of to
    ``configure``: they run after these.
    """

    def _render_item(type_: str, obj: Any, autogen_context: Any) -> Any:
        if type_ == "type":
            rendered = _render.render_type(obj, autogen_context)
            if rendered is not False:
                return rendered
        return render_item(type_, obj, autogen_context) if render_item else False

    def _include_object(obj: Any, name: Any, type_: str, reflected: bool, compare_to: Any) -> bool:
        if type_ == "table" and reflected and compare_to is None and name in PACKAGE_TABLES:
            return False  # the package's own table, not declared in the metadata
        if type_ == "index":
            from .compare import is_plain_vector_index

            if _is_vector_index(obj, reflected) or _is_vector_index(compare_to, False):
                return False  # compared by alembic_ext, with operator classes and parameters
            if not reflected and compare_to is not None and is_plain_vector_index(obj):
                return False  # a pgvector-python Index found different: alembic_ext compares it exactly
        return include_object(obj, name, type_, reflected, compare_to) if include_object else True

    def _compare_type(context: Any, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any) -> Any:
        from sqlalchemy_vectorknobs.types import VectorType

        if isinstance(metadata_type, VectorType):
            return False  # alembic_ext emits alter_vector_column, which also rebuilds the indexes
        if compare_type is not None:
            return compare_type(context, inspected, metadata, inspected_type, metadata_type)
        return None

    def _process_revision_directives(context: Any, revision: Any, directives: list[Any]) -> None:
        if directives:
            _ensure_extension(context, directives[0])
            for ops_list in (directives[0].upgrade_ops_list, directives[0].downgrade_ops_list):
                for container in ops_list:
                    _outside_batches(container)
        if process_revision_directives is not None:
            process_revision_directives(context, revision, directives)

    options: dict[str, Any] = {
        "render_item": _render_item,
        "include_object": _include_object,
        "compare_type": _compare_type,
        "process_revision_directives": _process_revision_directives,
    }
    extra = _register_comparator()
    if _has_plugin_system():
        options["autogenerate_plugins"] = list(autogenerate_plugins or _DEFAULT_PLUGINS) + extra
    return options
