"""Which rows of mirrored tables a flush or an ORM bulk statement changed: primary keys and an op, never objects.

A :class:`Collector` knows one attachment's mirrors and answers, for each mirror (by its index
in the attachment), ``{pk: "upsert" | "delete"}``:

* from a flush (called in ``after_flush``, when the session still shows its pre-flush state and
  new rows already have their keys): new rows; updated rows whose vector or one of the mirror's
  metadata columns changed according to attribute history (a changed primary key counts as a
  delete of the old key and an upsert of the new); deleted rows, keyed by their identity;
* from an ORM statement (``do_orm_execute``), which it runs itself: ``update()``/``delete()``
  with criteria report their keys through ``RETURNING`` (added with ``return_defaults``, so the
  caller's result keeps its ``rowcount``; an UPDATE counts only if it sets a watched column); a
  statement that already returns columns, or a database without UPDATE/DELETE ... RETURNING, has
  its keys selected in the same transaction just before it runs instead; bulk UPDATE by primary
  key and INSERT with parameters
  take the keys from the parameters; an INSERT that does not give its keys gets ``RETURNING`` of
  the key added, and the caller still receives the result it asked for.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import ORMExecuteState, Session
from sqlalchemy.orm.attributes import instance_state
from sqlalchemy.sql.elements import BindParameter

from ..codec import Kind
from ..embedding.column import INFO_KEY as EMBEDDED_INFO_KEY
from ..types import VectorType

__all__ = ["Changes", "Collector", "Known"]

#: Per mirror index, ``{pk: "upsert" | "delete"}`` (the last op of a key wins).
Changes = dict[int, dict[Any, str]]
#: Per mirror index, ``{pk: (vector, metadata)}`` for upserted rows whose flushed values are exactly
#: what the database stores (so applying them needs no re-read); vector None means "no vector".
Known = dict[int, dict[Any, tuple[np.ndarray | None, dict[str, Any]]]]

try:  # the result SQLAlchemy returns for an INSERT without RETURNING
    from sqlalchemy.engine.cursor import _NO_RESULT_METADATA as _NO_ROWS
except ImportError:  # pragma: no cover
    _NO_ROWS = sa.engine.result.SimpleResultMetaData([])  # type: ignore[assignment]


def _no_rows() -> Any:
    return sa.engine.IteratorResult(_NO_ROWS, iter([]))


def _names(key: Any) -> set[str]:
    """The names a statement's value key may go by (attribute key, column key, column name)."""
    if isinstance(key, str):
        return {key}
    return {n for n in (getattr(key, "key", None), getattr(key, "name", None)) if isinstance(n, str)}


@dataclass(frozen=True)
class _Track:
    """One mirror as seen from one mapper: which attribute keys to watch."""

    index: int
    pk_key: str
    pk_position: int | None  # position of the key in the mapper's identity, if it is there
    watched: tuple[str, ...]  # the vector and metadata attribute keys
    # (metadata column name, attribute key, Python type the database gives back); None when a
    # flushed value may differ from the stored one (half vectors, other column types)
    known: tuple[tuple[str, str, type], ...] | None


def _round_trip_type(column: sa.Column[Any]) -> type | None:
    """The Python type a value of ``column`` keeps unchanged through the database, if there is one."""
    t = column.type
    if isinstance(t, (sa.TypeDecorator, sa.Enum, sa.CHAR, sa.NCHAR)):
        return None
    if isinstance(t, sa.Boolean):
        return bool
    if isinstance(t, sa.Integer):
        return int
    if isinstance(t, sa.String):
        return str
    return None


def _known_spec(table: sa.Table, mirror: Any, key: Callable[[sa.Column[Any]], str]) -> tuple[tuple[str, str, type], ...] | None:
    vector_type = mirror.column.type
    if not isinstance(vector_type, VectorType) or vector_type.kind is not Kind.FLOAT32:
        return None  # half vectors are rounded by the database: read them back
    spec = []
    for name in mirror.metadata_columns:
        py = _round_trip_type(table.c[name])
        if py is None:
            return None
        spec.append((name, key(table.c[name]), py))
    return tuple(spec)


class Collector:
    """Finds the changed primary keys of the tables of ``mirrors`` (see the module docstring)."""

    def __init__(self, mirrors: Sequence[Any]) -> None:
        self.mirrors = tuple(mirrors)
        self.by_table: dict[sa.Table, list[int]] = {}
        for i, mirror in enumerate(self.mirrors):
            self.by_table.setdefault(mirror.table, []).append(i)
        self._tracks: dict[Any, tuple[_Track, ...]] = {}
        self._statement_names: dict[tuple[Any, int], frozenset[str]] = {}

    # ------------------------------------------------------------------ flush

    def _tracks_for(self, mapper: Any) -> tuple[_Track, ...]:
        tracks = self._tracks.get(mapper)
        if tracks is None:
            found = []

            def key(col: Any) -> str:
                return str(mapper.get_property_by_column(col).key)

            for table in mapper.tables:
                for i in self.by_table.get(table, ()):
                    mirror = self.mirrors[i]
                    pk_prop = mapper.get_property_by_column(mirror.pk_column)
                    position = next((n for n, col in enumerate(mapper.primary_key) if col in pk_prop.columns), None)
                    watched = (key(mirror.column), *(key(table.c[n]) for n in mirror.metadata_columns))
                    found.append(_Track(i, pk_prop.key, position, watched, _known_spec(table, mirror, key)))
            tracks = self._tracks[mapper] = tuple(found)
        return tracks

    @staticmethod
    def _identity_pk(state: Any, track: _Track) -> Any:
        identity = state.identity
        if identity is not None and track.pk_position is not None:
            return identity[track.pk_position]
        return state.dict.get(track.pk_key)

    @staticmethod
    def _values(state: Any, track: _Track, inserted: bool) -> tuple[np.ndarray | None, dict[str, Any]] | None:
        """The flushed (vector, metadata) of an upserted row, or None if they must be read back.

        An INSERT wrote every value the object holds. An UPDATE wrote only the changed ones: the
        others may be stale (another transaction may have committed new values since the object
        was loaded), so the values are known only when every watched attribute was written.
        """
        if track.known is None:
            return None
        if not inserted and not all(state.attrs[key].history.has_changes() for key in track.watched):
            return None
        d = state.dict
        vector_key = track.watched[0]
        if vector_key not in d:
            return None  # expired: a SQL expression or a server-side value
        raw = d[vector_key]
        if raw is None:
            vector = None
        elif isinstance(raw, np.ndarray) or type(raw) in (list, tuple):
            try:
                vector = np.asarray(raw, dtype=np.float32)
            except (TypeError, ValueError):
                return None
            if vector.ndim != 1:
                return None
        else:
            return None
        metadata: dict[str, Any] = {}
        for name, attr, py in track.known:
            if attr not in d:
                return None
            value = d[attr]
            if value is not None and type(value) is not py:
                return None  # e.g. an int given to a string column: the database's form differs
            metadata[name] = value
        return vector, metadata

    def flush(self, session: Session) -> list[tuple[Any, Changes, Known]]:
        """The changes of the flush in progress, grouped by a mapper of their table (for its bind).

        With each group come the values known for its upserted rows (see :data:`Known`).
        """
        changes: Changes = {}
        known: Known = {}
        mappers: dict[int, Any] = {}

        def record(track: _Track, pk: Any, op: str, mapper: Any, state: Any = None, inserted: bool = False) -> None:
            if pk is not None:
                changes.setdefault(track.index, {})[pk] = op
                mappers.setdefault(track.index, mapper)
                values = self._values(state, track, inserted) if state is not None else None
                if values is not None:
                    known.setdefault(track.index, {})[pk] = values
                else:
                    known.get(track.index, {}).pop(pk, None)

        for obj in session.new:
            state = instance_state(obj)
            for track in self._tracks_for(state.mapper):
                record(track, state.dict.get(track.pk_key), "upsert", state.mapper, state, inserted=True)
        for obj in session.dirty:
            state = instance_state(obj)
            if state.key is None:
                continue
            attrs = state.attrs
            for track in self._tracks_for(state.mapper):
                pk_history = attrs[track.pk_key].history
                if pk_history.deleted and pk_history.added:  # the primary key itself changed
                    record(track, pk_history.deleted[0], "delete", state.mapper)
                    record(track, pk_history.added[0], "upsert", state.mapper, state)
                elif any(attrs[key].history.has_changes() for key in track.watched):
                    record(track, self._identity_pk(state, track), "upsert", state.mapper, state)
        for obj in session.deleted:
            state = instance_state(obj)
            for track in self._tracks_for(state.mapper):
                record(track, self._identity_pk(state, track), "delete", state.mapper)
        by_mapper: dict[Any, tuple[Changes, Known]] = {}
        for index, per_pk in changes.items():
            group = by_mapper.setdefault(mappers[index], ({}, {}))
            group[0][index] = per_pk
            if known.get(index):
                group[1][index] = known[index]
        return [(mapper, c, k) for mapper, (c, k) in by_mapper.items()]

    # ------------------------------------------------------------------ bulk statements

    def _statement_names_for(self, mapper: Any, index: int) -> frozenset[str]:
        """Names under which a statement can set the mirror's vector, metadata or key columns."""
        names = self._statement_names.get((mapper, index))
        if names is None:
            mirror = self.mirrors[index]
            cols = [mirror.column, mirror.pk_column, *(mirror.table.c[n] for n in mirror.metadata_columns)]
            # An embedded column's vector is rewritten (by a Core UPDATE of the embedding listener)
            # when a statement sets one of its source columns: those count as setting the vector.
            spec = mirror.column.info.get(EMBEDDED_INFO_KEY)
            cols.extend(getattr(spec, "source_columns", None) or ())
            found = {n for col in cols for n in (col.key, col.name)}
            if mapper is not None:
                found.update(mapper.get_property_by_column(col).key for col in cols)
            names = self._statement_names[(mapper, index)] = frozenset(found)
        return names

    def statement(self, orm_state: ORMExecuteState) -> tuple[Any, Changes, sa.Connection] | None:
        """Run a DML statement on a mirrored table and return (result, changes, connection); None if not one."""
        stmt: Any = orm_state.statement
        if not stmt.is_dml:  # every SELECT passes here: keep this test cheap
            return None
        if not (orm_state.is_insert or orm_state.is_update or orm_state.is_delete):
            return None
        table = getattr(stmt, "table", None)
        indexes = self.by_table.get(table) if table is not None else None
        if not indexes:
            return None
        mapper = orm_state.bind_mapper
        params: Any = orm_state.parameters
        rows: list[dict[Any, Any]] = params if isinstance(params, list) else ([params] if params else [])
        pk_col = self.mirrors[indexes[0]].pk_column
        pk_names = {pk_col.key, pk_col.name}
        if mapper is not None:
            pk_names.add(mapper.get_property_by_column(pk_col).key)
        if orm_state.is_update:
            touched: set[str] = set()
            for key in dict(getattr(stmt, "_values", None) or {}):
                touched |= _names(key)
            for key, _ in getattr(stmt, "_ordered_values", None) or ():
                touched |= _names(key)
            by_key = set().union(*(_names(key) for row in rows for key in row)) if rows else set()
            touched |= by_key - pk_names  # in a bulk UPDATE by primary key the key selects the row
            indexes = [i for i in indexes if touched & self._statement_names_for(mapper, i)]
            if not indexes:
                return None
        conn = orm_state.session.connection(bind_arguments=orm_state.bind_arguments)

        def pk_of(row: dict[Any, Any]) -> Any:
            for key, value in row.items():
                if _names(key) & pk_names:
                    return value.value if isinstance(value, BindParameter) else value
            return None

        if orm_state.is_insert:
            result, pks = _insert(orm_state, stmt, rows, mapper, pk_col, pk_of)
            op = "upsert"
        else:
            where = getattr(stmt, "whereclause", None)
            returning = conn.dialect.update_returning if orm_state.is_update else conn.dialect.delete_returning
            if orm_state.is_executemany or (rows and where is None):  # by primary key, from the parameters
                pks = [pk for pk in map(pk_of, rows) if pk is not None]
                result = orm_state.invoke_statement()
            elif returning and not getattr(stmt, "_returning", ()) and not getattr(stmt, "_return_defaults", False):
                # The statement reports the rows it changed: exact even when other transactions
                # commit rows that match its criteria while it runs.
                pk_expr = getattr(mapper.class_, mapper.get_property_by_column(pk_col).key) if mapper is not None else pk_col
                result = orm_state.invoke_statement(statement=stmt.return_defaults(pk_expr))
                pks = [row[0] for row in getattr(result, "returned_defaults_rows", None) or ()]
            else:
                # Selected just before the statement runs, in the same transaction (a row another
                # transaction commits in between can be missed: vk.verify finds it).
                select = sa.select(pk_col) if where is None else sa.select(pk_col).where(where)
                pks = list(conn.execute(select, rows[0] if rows else None).scalars())
                result = orm_state.invoke_statement()
            op = "upsert" if orm_state.is_update else "delete"
        changes = {i: dict.fromkeys(pks, op) for i in indexes} if pks else {}
        return result, changes, conn


def _insert(
    orm_state: ORMExecuteState,
    stmt: Any,
    rows: list[dict[Any, Any]],
    mapper: Any,
    pk_col: sa.Column[Any],
    pk_of: Callable[[dict[Any, Any]], Any],
) -> tuple[Any, list[Any]]:
    """Run an INSERT and return (its result, the primary keys it inserted)."""
    multi = getattr(stmt, "_multi_values", None)
    values = getattr(stmt, "_values", None)
    if rows:
        given = [pk_of(row) for row in rows]
    elif multi:
        given = [pk_of(row) for group in multi for row in group if isinstance(row, dict)] or [None]
    elif values and getattr(stmt, "select", None) is None:
        given = [pk_of(dict(values))]
        if given[0] is None:  # one row: the driver reports its key
            result = orm_state.invoke_statement()
            key = getattr(result, "inserted_primary_key", None)
            position = list(pk_col.table.primary_key.columns).index(pk_col)
            return result, [key[position]] if key is not None and key[position] is not None else []
    else:
        given = [None]  # INSERT ... FROM SELECT: only RETURNING can tell
    if all(pk is not None for pk in given):
        return orm_state.invoke_statement(), given
    # Keys generated by the database: ask for them with RETURNING, and hand the caller the
    # result it would have had (no rows, or exactly the columns it asked to return).
    pk_expr = getattr(mapper.class_, mapper.get_property_by_column(pk_col).key) if mapper is not None else pk_col
    asked = len(getattr(stmt, "_returning", ()) or ())
    result = orm_state.invoke_statement(statement=stmt.returning(pk_expr))
    if not asked:
        return _no_rows(), [pk for pk in result.scalars() if pk is not None]
    frozen = result.freeze()
    pks = [row[asked] for row in frozen.data]
    return frozen().columns(*range(asked)), pks
