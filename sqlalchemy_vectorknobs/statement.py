"""``SearchSelect``: the statement the search functions return, on which ``.where()`` and
``.filter()`` filter *inside* the search.

``vk.nearest``, ``vk.near_text``, ``vk.text_search`` and ``vk.hybrid_search`` return a ``Select``
of the best ``k`` rows. On a plain ``Select``, a later ``.where()`` would keep whichever of those
``k`` rows pass: often fewer than ``k``, often none. Here a criterion on the searched table is
moved into the search itself, exactly like the function's ``where=`` argument, so the statement
returns the ``k`` best rows that satisfy it::

    stmt = vk.nearest(Doc.embedding, q, k=5).where(Doc.category == "billing")   # 5 billing rows

Criteria on the search's own result columns (``distance``, ``score``) stay on the outer query,
where they belong (``max_distance`` is one). A criterion the search cannot apply before it chooses
its rows -- on another table, or mixing another table with the one searched -- is refused when
``.where()`` is called, never applied afterwards to fewer rows.

How: the criteria are kept on the statement (``_vk_pushed``, part of its cache key, so each set
of criteria compiles once), and when the statement is compiled each search element inside it
(``VectorKnn``, ``TextSearch``, recognised by the ``vk_token`` they carry from construction)
renders as if its ``where=`` had included them (:func:`effective`). Building the filtered
statement costs one copy of the ``Select``, not a rebuild of its tree.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql import visitors
from sqlalchemy.sql.visitors import InternalTraversal

from .exc import IncompatibleOperatorError

__all__ = ["SearchParts", "SearchSelect", "effective", "new_token", "onto_table", "search_statement"]

_PUSHED = [("_vk_pushed", InternalTraversal.dp_clauseelement_tuple)]
_tokens = itertools.count(1)


def new_token() -> int:
    """A number naming one search element for its life (its copies keep it)."""
    return next(_tokens)


@dataclass(frozen=True)
class SearchParts:
    """What :meth:`SearchSelect.where` knows of the search inside a statement.

    ``what`` names it in errors; ``table`` is the table searched; ``aliases`` stand for that table
    in the outer statement (an aliased entity: their columns are put back on the table);
    ``tokens`` mark the search elements that take the criteria; ``settings(stmt, criteria)``
    returns the statement with the search knobs its filtered search needs; ``refuse``, if set,
    is the error for any criterion (a search that has chosen its rows already); ``entity`` is
    what ``filter_by()`` names attributes of. The search's own result columns (``distance``,
    ``score``) come from a FROM object over a search element (``vk_search_element = True``).
    """

    what: str
    table: Any
    aliases: tuple[Any, ...]
    tokens: tuple[int, ...]
    settings: Callable[[Any, Any], Any] | None = None
    refuse: str | None = None
    entity: Any = None


class SearchSelect(sa.Select[Any]):
    """A ``Select`` from one of the search functions: ``.where()`` / ``.filter()`` /
    ``.filter_by()`` criteria on the searched table filter inside the search (see the module)."""

    inherit_cache = True
    _traverse_internals = sa.Select._traverse_internals + _PUSHED
    if "_cache_key_traversal" in vars(sa.Select):  # SQLAlchemy 2.1 lists the cache key's own
        _cache_key_traversal = [*vars(sa.Select)["_cache_key_traversal"], *_PUSHED]
    #: criteria applied inside the search (see the module docstring)
    _vk_pushed: tuple[Any, ...] = ()

    def where(self, *whereclause: Any) -> Any:
        parts: SearchParts | None = self.__dict__.get("_vk_search")
        if parts is None or not whereclause:
            return super().where(*whereclause)
        outer: list[Any] = []
        pushed: list[Any] = []
        for criterion in whereclause:
            element = _element(criterion)
            if _on_results(element, parts):
                outer.append(element)
            else:
                pushed.append(onto_table(element, parts.table, parts.aliases))
        if parts.refuse is not None and pushed:
            raise IncompatibleOperatorError(parts.refuse)
        stmt: Any = self
        if pushed:
            criteria = (*self._vk_pushed, *pushed)
            stmt = self.execution_options()  # a copy
            if parts.settings is not None:
                stmt = parts.settings(stmt, sa.and_(*criteria))
            stmt._vk_pushed = criteria
        return sa.Select.where(stmt, *outer) if outer else stmt

    def filter_by(self, **kwargs: Any) -> Any:
        """``.where()`` of ``entity.<name> == value`` for each keyword, names taken from the
        searched entity (a plain Select would look for them among the search's own columns too)."""
        parts: SearchParts | None = self.__dict__.get("_vk_search")
        if parts is None or parts.entity is None:
            return super().filter_by(**kwargs)
        entity = parts.entity
        columns = entity.c if isinstance(entity, sa.FromClause) else None
        criteria = []
        for name, value in kwargs.items():
            try:
                attribute = columns[name] if columns is not None else getattr(entity, name)
            except (AttributeError, KeyError):
                raise IncompatibleOperatorError(
                    f"{parts.what}(...).filter_by() got {name}={value!r}, and '{parts.table.name}' has no such attribute."
                ) from None
            criteria.append(attribute == value)
        return self.where(*criteria)


@compiles(SearchSelect)
def _compile_search_select(element: SearchSelect, compiler: Any, **kw: Any) -> str:
    pushed = element._vk_pushed
    parts: SearchParts | None = element.__dict__.get("_vk_search")
    if not pushed or parts is None:
        return str(compiler.visit_select(element, **kw))
    extra: dict[int, tuple[Any, ...]] = compiler.__dict__.setdefault("_vk_pushed", {})
    before = {token: extra.get(token) for token in parts.tokens}
    for token in parts.tokens:
        extra[token] = (*(extra.get(token) or ()), *pushed)
    try:
        return str(compiler.visit_select(element, **kw))
    finally:
        for token, value in before.items():
            if value is None:
                extra.pop(token, None)
            else:
                extra[token] = value


def effective(compiler: Any, element: Any) -> Any:
    """``element`` (a search element being compiled) with the criteria its statement's
    ``.where()`` pushed into it added to its own ``where``; ``element`` itself when there are none."""
    pushed = compiler.__dict__.get("_vk_pushed", {}).get(getattr(element, "vk_token", None))
    if not pushed:
        return element
    new = element._clone()
    new.where = sa.and_(*((element.where,) if element.where is not None else ()), *pushed)
    return new


def search_statement(stmt: sa.Select[Any], parts: SearchParts) -> SearchSelect:
    """``stmt`` as a :class:`SearchSelect` that knows its search."""
    out = SearchSelect.__new__(SearchSelect)
    out.__dict__.update(stmt.__dict__)
    out.__dict__["_vk_search"] = parts
    return out


def _element(criterion: Any) -> Any:
    if isinstance(criterion, str):
        return sa.text(criterion)
    clause = getattr(criterion, "__clause_element__", None)
    return clause() if clause is not None else criterion


def _on_results(element: Any, parts: SearchParts) -> bool:
    """True for a criterion on the search's result columns only, False for one on the table
    searched (or on nothing, such as ``text()``); raises for one the search cannot apply."""
    froms = set(getattr(element, "_from_objects", ()))
    results = {f for f in froms if getattr(getattr(f, "element", None), "vk_search_element", False)}
    table = froms & {parts.table, *parts.aliases}
    others = froms - results - table
    if others or (results and table):
        names = ", ".join(sorted(repr(str(getattr(f, "name", None) or f)) for f in (others or results)))
        raise IncompatibleOperatorError(
            f"{parts.what}(...).where() got a criterion on {names}, which the search cannot apply before it "
            f"chooses its rows; filter on columns of '{parts.table.name}' (applied inside the search) or on "
            "the result's own columns (applied to the rows found), or filter a subquery of the statement."
        )
    return bool(results)


def onto_table(element: Any, table: Any, aliases: tuple[Any, ...]) -> Any:
    """``element`` with the columns of ``aliases`` (selectables standing for ``table``, such as an
    aliased entity's) put on ``table`` itself: a search reads the table, where an alias's columns
    would not exist."""
    if not aliases or not isinstance(element, sa.ColumnElement):
        return element
    wanted = set(aliases)

    def swap(e: Any, **kw: Any) -> Any:
        if isinstance(e, sa.ColumnElement) and getattr(e, "table", None) in wanted:
            return table.corresponding_column(e)
        return None

    options: dict[str, Any] = {}
    return visitors.replacement_traverse(element, options, swap)  # type: ignore[call-overload]
