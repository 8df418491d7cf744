"""Vector aggregates: ``vk.avg`` and ``vk.sum`` of Vector and HalfVector columns, on both dialects.

The element-wise average and sum of the vectors in a group, returned as the column's numpy
vector on every driver (NULL vectors are skipped; no rows give ``None``)::

    import sqlalchemy_vectorknobs as vk
    from sqlalchemy import select

    centroid = session.scalar(select(vk.avg(Doc.embedding)))
    per_topic = session.execute(select(Doc.topic, vk.sum(Doc.embedding)).group_by(Doc.topic)).all()

PostgreSQL runs pgvector's ``avg``/``sum``; SQLite runs the package's ``vk_avg``/``vk_sum``
aggregate functions, registered on every connection of a package engine
(:mod:`.dialects.sqlite_aggregates`).

SQLAlchemy's own ``func.sum(Doc.embedding)`` already takes its argument's type;
``func.avg`` has no type of its own, so importing this package registers ``avg`` as a
SQLAlchemy generic function that takes the type of a Vector or HalfVector argument (and is
exactly the plain ``Function`` it was before for any other argument). An ``avg`` someone else
registered first is left alone.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import functions
from sqlalchemy.sql.functions import Function, GenericFunction, ReturnTypeFromArgs

from .codec import Kind
from .exc import IncompatibleOperatorError
from .types import VectorType

__all__ = ["VectorAvg", "VectorSum", "avg", "sum"]

_AGGREGATED = (Kind.FLOAT32, Kind.FLOAT16)


def _vector_type(arg: Any) -> VectorType | None:
    """The Vector or HalfVector type of a column, ORM attribute or expression, else None."""
    expr = arg.__clause_element__() if hasattr(arg, "__clause_element__") else arg
    type_ = getattr(expr, "type", None)
    return type_ if isinstance(type_, VectorType) and type_.kind in _AGGREGATED else None


class VectorAvg(GenericFunction[Any]):
    """``avg`` of a Vector or HalfVector expression, typed as its argument.

    Also what ``sqlalchemy.func.avg(...)`` builds once the package is imported: for an argument
    that is not a Vector or HalfVector it builds the plain, untyped ``Function`` instead.
    """

    _register = False  # registered below, unless another package registered an ``avg``
    name = "avg"
    inherit_cache = True

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        if args and _vector_type(args[0]) is None:
            return Function("avg", *args, **kwargs)
        return super().__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        explicit = kwargs.get("type_") is not None
        super().__init__(*args, **kwargs)
        if not explicit and args:
            self.type = next(iter(self.clauses)).type


class VectorSum(ReturnTypeFromArgs[Any]):
    """``sum`` of a Vector or HalfVector expression, typed as its argument (what ``vk.sum`` builds)."""

    _register = False  # SQLAlchemy's own ``sum`` stays func.sum
    name = "sum"
    inherit_cache = True


@compiles(VectorAvg, "sqlite")
@compiles(VectorSum, "sqlite")
def _compile_sqlite(element: Any, compiler: Any, **kw: Any) -> str:
    from .dialects import sqlite_aggregates

    sql = sqlite_aggregates.render(compiler, element, **kw)
    return str(compiler.visit_function(element, **kw)) if sql is None else sql


def _checked(expr: Any, what: str) -> Any:
    if _vector_type(expr) is None:
        inner = expr.__clause_element__() if hasattr(expr, "__clause_element__") else expr
        type_ = getattr(inner, "type", None)
        got = f"{type_.subject} is a {type(type_).__name__}" if isinstance(type_, VectorType) else f"got {inner!r} of type {type_!r}"
        raise IncompatibleOperatorError(
            f"vk.{what} applies to Vector and HalfVector columns and expressions; {got}."
        )
    return expr


def avg(expr: Any) -> VectorAvg:
    """The element-wise average of a Vector or HalfVector column or expression (an aggregate).

    >>> import sqlalchemy as sa, sqlalchemy_vectorknobs as vk
    >>> t = sa.table("doc", sa.column("embedding", vk.Vector(3)))
    >>> print(vk.avg(t.c.embedding))
    avg(doc.embedding)
    """
    result: VectorAvg = VectorAvg(_checked(expr, "avg"))
    return result


def sum(expr: Any) -> VectorSum:  # (shadows the builtin: the SQL name, as pgvector-python spells it)
    """The element-wise sum of a Vector or HalfVector column or expression (an aggregate).

    >>> import sqlalchemy as sa, sqlalchemy_vectorknobs as vk
    >>> t = sa.table("doc", sa.column("embedding", vk.HalfVector(3)))
    >>> print(vk.sum(t.c.embedding))
    sum(doc.embedding)
    """
    return VectorSum(_checked(expr, "sum"))


if "avg" not in functions._registry["_default"]:
    functions.register_function("avg", VectorAvg)
