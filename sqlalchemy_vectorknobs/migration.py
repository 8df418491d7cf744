"""``vk.migrate``: copy tables with vectors from one database to another, resumably, then verify.

SQLite ⇄ PostgreSQL (or SQLite → SQLite, PostgreSQL → PostgreSQL)::

    report = vk.migrate("sqlite:///docs.db", "postgresql+psycopg://app@db/app", batch_size=5000)
    print(report)             # docs: 100000 row(s) copied; counts 100000 = 100000; checksum ... equal
    assert report.ok

How it works, per table:

1. the source table is reflected; a missing target table is created from it (vector columns keep
   their ``vk`` type, which renders for the target's dialect; other columns take their generic
   SQLAlchemy type: ``INTEGER``, ``TEXT``, ``VARCHAR(n)``, ...);
2. rows are read in primary-key order, ``batch_size`` at a time (``WHERE pk > :last ORDER BY pk
   LIMIT n``), and each batch is written with :func:`vk.bulk_load` (binary ``COPY`` on
   PostgreSQL/psycopg) in one target transaction that also records the batch's last key in
   ``vk_migrate_progress``: a batch is either fully there with its marker or not at all;
3. a rerun (after a crash, a kill, or to pick up rows added since) continues after the recorded
   key, so nothing is copied twice; a target table holding rows that no migrate from this source
   put there is refused rather than mixed with;
4. the row counts and an order-independent checksum of the vectors (a 64-bit sum of a BLAKE2b
   digest of each row's key and float32 vector bytes) are computed on both sides and compared.

Tables need a single-column primary key (the keyset). Vector and full-text indexes are not copied:
create them on the target once the rows are in (building an index once is faster than keeping it
up to date during the load).
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import codec, dialects
from ._progress import progress_bar
from .bulk import bulk_load
from .exc import MigrationError
from .types import VectorType

__all__ = ["PROGRESS_TABLE", "MigrateReport", "TableMigration", "migrate", "vector_checksum"]

#: The target's bookkeeping table: one row per (source, table) with the last copied key.
PROGRESS_TABLE = "vk_migrate_progress"

_progress_metadata = sa.MetaData()
progress_table = sa.Table(
    PROGRESS_TABLE,
    _progress_metadata,
    sa.Column("source", sa.String(512), primary_key=True),
    sa.Column("table_name", sa.String(255), primary_key=True),
    sa.Column("last_key", sa.Text(), nullable=False),
    sa.Column("copied", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.Double(), nullable=False),
)

_MASK = (1 << 64) - 1


@dataclass
class TableMigration:
    """What :func:`migrate` did to one table and what the verification found."""

    table: str
    created: bool = False
    resumed_after: Any = None
    copied: int = 0
    batches: int = 0
    source_rows: int | None = None
    target_rows: int | None = None
    source_checksum: str | None = None
    target_checksum: str | None = None

    @property
    def verified(self) -> bool:
        return self.source_rows is not None

    @property
    def ok(self) -> bool:
        """True unless the verification ran and found a difference."""
        if not self.verified:
            return True
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum

    def __str__(self) -> str:
        start = "" if self.resumed_after is None else f" (resumed after key {self.resumed_after!r})"
        text = f"{self.table}: {self.copied} row(s) copied in {self.batches} batch(es){start}"
        if self.created:
            text += ", table created"
        if self.verified:
            same = "equal" if self.source_checksum == self.target_checksum else "DIFFERENT"
            text += (
                f"; rows {self.source_rows} source / {self.target_rows} target; vector checksum "
                f"{self.source_checksum} / {self.target_checksum} {same}"
            )
        return text


@dataclass
class MigrateReport:
    """The report of :func:`migrate`: one :class:`TableMigration` per table."""

    tables: list[TableMigration] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every verified table has the source's row count and vector checksum."""
        return all(t.ok for t in self.tables)

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables)

    def __str__(self) -> str:
        return "\n".join(str(t) for t in self.tables) or "no table to migrate"


# ------------------------------------------------------------------------------------ helpers


def _engine(bind: Engine | str | sa.URL, role: str) -> tuple[Engine, bool]:
    if isinstance(bind, Engine):
        return bind, False
    from .engine import create_engine

    try:
        return create_engine(bind), True
    except sa.exc.ArgumentError as err:
        raise MigrationError(f"The {role} URL {str(bind)!r} is not a database URL ({err}).") from err


def _identity(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _single_pk(table: sa.Table) -> sa.Column[Any]:
    pks = list(table.primary_key.columns)
    if len(pks) != 1:
        raise MigrationError(
            f"Table {table.name!r} has {len(pks)} primary key columns; vk.migrate copies tables with exactly one "
            "(it resumes by key)."
        )
    return pks[0]


def _target_type(type_: Any) -> Any:
    if isinstance(type_, VectorType):
        return type_
    try:
        return type_.as_generic()
    except NotImplementedError:
        return type_


def _create_table(conn: Connection, source: sa.Table) -> sa.Table:
    """A target table shaped like ``source``: same names, nullability and key; portable types."""
    pk = _single_pk(source)
    columns = [
        sa.Column(
            c.name,
            _target_type(c.type),
            primary_key=c.primary_key,
            nullable=c.nullable,
            autoincrement=c.autoincrement if c is pk else False,
        )
        for c in source.columns
    ]
    table = sa.Table(source.name, sa.MetaData(), *columns)
    try:
        table.create(conn)
    except sa.exc.DBAPIError as err:
        raise MigrationError(
            f"Creating table {source.name!r} on the target failed: {str(err.orig).strip().splitlines()[0]}."
        ) from err
    except sa.exc.CompileError as err:
        raise MigrationError(f"Table {source.name!r} has a column type the target cannot store ({err}).") from err
    return table


def _encode_key(value: Any) -> str:
    return json.dumps(value if isinstance(value, (int, float, str)) else str(value))


def _decode_key(text: str, column: sa.Column[Any]) -> Any:
    value = json.loads(text)
    try:
        kind = column.type.python_type
    except NotImplementedError:
        return value
    return value if isinstance(value, kind) else kind(value)


def _pages(conn: Connection, columns: Sequence[sa.Column[Any]], pk: sa.Column[Any], after: Any, size: int) -> Iterator[list[Any]]:
    last = after
    at = next(i for i, c in enumerate(columns) if c is pk)
    while True:
        q = sa.select(*columns).order_by(pk).limit(size)
        if last is not None:
            q = q.where(pk > last)
        rows = list(conn.execute(q).all())
        if not rows:
            return
        yield rows
        last = rows[-1][at]


def vector_checksum(bind: Engine | Connection, table: sa.Table, *, batch_size: int = 5000) -> tuple[int, str]:
    """(rows, checksum) of ``table``: an order-independent digest of every row's key and vectors.

    Each row hashes (BLAKE2b, 8 bytes) its primary key's text and each vector column's float32
    bytes (a marker for NULL); the 64-bit sum of those is the same on any database holding the
    same rows, whatever order they come back in.
    """
    if isinstance(bind, Engine):
        with bind.connect() as conn:
            return vector_checksum(conn, table, batch_size=batch_size)
    pk = _single_pk(table)
    vectors = [c for c in table.columns if isinstance(c.type, VectorType) and c is not pk]
    kinds = [c.type.kind for c in vectors if isinstance(c.type, VectorType)]
    total = rows = 0
    for page in _pages(bind, [pk, *vectors], pk, None, batch_size):
        for row in page:
            h = hashlib.blake2b(str(row[0]).encode("utf-8"), digest_size=8)
            for kind, value in zip(kinds, row[1:]):
                if value is None:
                    h.update(b"\x00null")
                else:
                    h.update(b"\x01" + np.ascontiguousarray(codec.to_dense(kind, value), dtype=np.float32).tobytes())
            total = (total + int.from_bytes(h.digest(), "little")) & _MASK
        rows += len(page)
    return rows, f"{total:016x}"


def _load_progress(conn: Connection, source_id: str, table: str) -> tuple[str, int] | None:
    if not sa.inspect(conn).has_table(PROGRESS_TABLE):
        return None
    t = progress_table
    row = conn.execute(sa.select(t.c.last_key, t.c.copied).where(t.c.source == source_id, t.c.table_name == table)).first()
    return None if row is None else (row[0], int(row[1]))


def _save_progress(conn: Connection, source_id: str, table: str, last_key: Any, copied: int) -> None:
    t = progress_table
    values = {"last_key": _encode_key(last_key), "copied": copied, "updated_at": time.time()}
    done = conn.execute(t.update().where(t.c.source == source_id, t.c.table_name == table).values(values))
    if done.rowcount == 0:
        conn.execute(t.insert().values(source=source_id, table_name=table, **values))


# ------------------------------------------------------------------------------------ migrate


def _source_tables(conn: Connection, names: Sequence[str] | None) -> list[sa.Table]:
    from .inspection import inspect_vectors

    if names is None:
        seen: list[str] = []
        for col in inspect_vectors(conn).columns:
            if col.schema in (None, "public") and col.table not in seen:
                seen.append(col.table)
        names = seen
    md = sa.MetaData()
    tables = []
    for name in names:
        try:
            tables.append(sa.Table(name, md, autoload_with=conn))
        except sa.exc.NoSuchTableError:
            raise MigrationError(f"Table {name!r} does not exist in the source database.") from None
    return tables


def _prepare_target(conn: Connection, source: sa.Table, create: bool) -> tuple[sa.Table, bool]:
    if not sa.inspect(conn).has_table(source.name):
        if not create:
            raise MigrationError(f"Table {source.name!r} does not exist in the target database (and create=False).")
        _create_table(conn, source)
        conn.commit()
        created = True
    else:
        created = False
    target = sa.Table(source.name, sa.MetaData(), autoload_with=conn)
    lacking = [c.name for c in source.columns if c.name not in target.c]
    if lacking:
        raise MigrationError(f"Target table {source.name!r} lacks column(s) {', '.join(map(repr, lacking))} of the source.")
    return target, created


def migrate(
    source: Engine | str | sa.URL,
    target: Engine | str | sa.URL,
    tables: Sequence[str] | None = None,
    *,
    batch_size: int = 5000,
    progress: bool = True,
    resume: bool = True,
    verify: bool = True,
    create: bool = True,
) -> MigrateReport:
    """Copy ``tables`` (default: every table with a vector column) from ``source`` to ``target``.

    ``source`` and ``target`` are URLs or Engines (URLs get a ``vk.create_engine`` engine). Each
    batch commits on the target together with its resume marker; ``resume=True`` continues an
    interrupted or earlier run after its last copied key, ``resume=False`` refuses to touch a
    table a previous run started. ``verify`` compares row counts and vector checksums (see
    :func:`vector_checksum`) and the report's :attr:`MigrateReport.ok` says whether they match.
    Raises :class:`vk.MigrationError` for what cannot be copied, before writing that table.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MigrationError(f"vk.migrate batch_size {batch_size!r} is not a positive whole number.")
    src_engine, own_src = _engine(source, "source")
    dst_engine, own_dst = _engine(target, "target")
    report = MigrateReport()
    try:
        source_id = _identity(src_engine)
        if source_id == _identity(dst_engine):
            raise MigrationError(f"The source and target are the same database ({source_id}); nothing to migrate.")
        with src_engine.connect() as sconn, dst_engine.connect() as tconn:
            src_tables = _source_tables(sconn, tables)
            for t in src_tables:
                _single_pk(t)
            _progress_metadata.create_all(tconn)
            tconn.commit()
            for src in src_tables:
                report.tables.append(
                    _migrate_table(sconn, tconn, src, source_id, batch_size=batch_size, progress=progress, resume=resume, create=create)
                )
                if verify:
                    entry = report.tables[-1]
                    tgt = sa.Table(src.name, sa.MetaData(), autoload_with=tconn)
                    entry.source_rows, entry.source_checksum = vector_checksum(sconn, src)
                    entry.target_rows, entry.target_checksum = vector_checksum(tconn, tgt)
                    tconn.rollback()
                    sconn.rollback()
    finally:
        if own_src:
            src_engine.dispose()
        if own_dst:
            dst_engine.dispose()
    return report


def _migrate_table(
    sconn: Connection, tconn: Connection, src: sa.Table, source_id: str, *, batch_size: int, progress: bool, resume: bool, create: bool
) -> TableMigration:
    entry = TableMigration(src.name)
    pk = _single_pk(src)
    target, entry.created = _prepare_target(tconn, src, create)
    saved = _load_progress(tconn, source_id, src.name)
    tconn.commit()
    after: Any = None
    copied = 0
    if saved is not None:
        if not resume:
            raise MigrationError(
                f"Table {src.name!r} was partly or fully migrated from this source before; rerun with resume "
                f"(the default) to continue, or clear the target table and its {PROGRESS_TABLE} row."
            )
        after, copied = _decode_key(saved[0], pk), saved[1]
        entry.resumed_after = after
    else:
        held = tconn.execute(sa.select(sa.func.count()).select_from(target)).scalar_one()
        tconn.commit()
        if held:
            raise MigrationError(
                f"Target table {src.name!r} already holds {held} row(s) that vk.migrate did not copy from this source; "
                "empty it or choose another target."
            )
    columns = list(src.columns)
    names = [c.name for c in columns]
    key_at = names.index(pk.name)
    remaining = sconn.execute(
        sa.select(sa.func.count()).select_from(src).where(pk > after) if after is not None else sa.select(sa.func.count()).select_from(src)
    ).scalar_one()
    bar = progress_bar(int(remaining), progress, f"migrate {src.name}")
    try:
        for rows in _pages(sconn, columns, pk, after, batch_size):
            last = rows[-1][key_at]
            with tconn.begin():
                bulk_load(tconn, target, rows, columns=names)
                copied += len(rows)
                _save_progress(tconn, source_id, src.name, last, copied)
            entry.copied += len(rows)
            entry.batches += 1
            bar.update(len(rows))
    finally:
        bar.close()
    sconn.rollback()
    if isinstance(target.c[pk.name].type, sa.Integer):
        with tconn.begin():  # inserts that let the database pick the key continue after the copied ones
            dialects.for_dialect(tconn.dialect).advance_key_sequence(tconn, target, target.c[pk.name])
    return entry
