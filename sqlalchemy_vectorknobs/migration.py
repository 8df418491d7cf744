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

Into a mirror (Faiss, Chroma, Elasticsearch, memory, third-party) instead of a database::

    mirror = vk.FaissMirror(Doc.embedding, path="docs.vkfaiss", metadata_columns=["category"])
    report = vk.migrate("sqlite:///docs.db", target_mirror=mirror, batch_size=5000)
    print(report)   # docs -> mirror 'faiss:docs.embedding': 20000 row(s) copied in 4 batch(es); ...

The mirror's column names the source table. Rows are read in primary-key order the same way and
each batch goes through the mirror's own ``upsert`` (key, vector and the mirror's metadata
columns; a row whose vector is NULL is a ``delete``), is made durable (a Faiss mirror with a path
appends the batch to its fsynced journal, or is ``save()``-d when ``autosave=False``; Chroma's
embedded client commits it to its SQLite log), and only then is the resume marker written: one
small JSON *state file*, replaced atomically (temp file, fsync, rename), keyed by source, table,
column and mirror name. Its default place is beside the mirror's own files
(``<path>.vkmigrate.json`` for Faiss, ``vk_migrate.json`` in the directory of Chroma's
PersistentClient); mirrors without local files (memory, Elasticsearch, Chroma over HTTP,
third-party ones) keep a marker only when ``state=`` names a file. A crash between a batch and its
marker re-copies that one batch on the rerun, which upserts replace by key. Verification is
:func:`vk.verify <sqlalchemy_vectorknobs.verify>`: every source row's vector (and metadata, where
the mirror reports it) compared with the mirror's, plus missing and extra ids.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import codec, dialects
from ._files import replace_file
from ._progress import progress_bar
from .bulk import bulk_load
from .exc import MigrationError
from .types import VectorType

__all__ = ["PROGRESS_TABLE", "MigrateReport", "TableMigration", "default_state_path", "migrate", "vector_checksum"]

log = logging.getLogger("sqlalchemy_vectorknobs.migrate")

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
    #: The target mirror's name when the rows went into a mirror (``target_mirror=``).
    mirror: str | None = None
    #: For a mirror: the :class:`~sqlalchemy_vectorknobs.DriftReport` of the verification.
    drift: Any = None

    @property
    def verified(self) -> bool:
        return self.source_rows is not None

    @property
    def ok(self) -> bool:
        """True unless the verification ran and found a difference."""
        if not self.verified:
            return True
        if self.drift is not None and not self.drift.ok:
            return False
        return self.source_rows == self.target_rows and self.source_checksum == self.target_checksum

    def __str__(self) -> str:
        start = "" if self.resumed_after is None else f" (resumed after key {self.resumed_after!r})"
        into = "" if self.mirror is None else f" -> mirror '{self.mirror}'"
        text = f"{self.table}{into}: {self.copied} row(s) copied in {self.batches} batch(es){start}"
        if self.created:
            text += ", table created"
        if self.verified and self.mirror is not None:
            d = self.drift
            text += (
                f"; vectors {self.source_rows} source / {self.target_rows} mirror; {d.checked} row(s) checked: "
                f"{len(d.missing)} missing, {len(d.extra)} extra, {len(d.mismatched)} mismatched "
                f"({'in step' if self.ok else 'DIFFERENT'})"
            )
        elif self.verified:
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


def _counted_pages(
    conn: Connection, table: sa.Table, columns: Sequence[sa.Column[Any]], pk: sa.Column[Any], after: Any, size: int,
    entry: TableMigration, progress: bool, desc: str,
) -> Iterator[list[Any]]:
    """:func:`_pages` of the rows after ``after``, each counted into ``entry`` and the progress bar
    once the caller has stored it; the source transaction ends when the pages do."""
    count = sa.select(sa.func.count()).select_from(table)
    remaining = conn.execute(count if after is None else count.where(pk > after)).scalar_one()
    bar = progress_bar(int(remaining), progress, desc)
    try:
        for rows in _pages(conn, columns, pk, after, size):
            yield rows
            entry.copied += len(rows)
            entry.batches += 1
            bar.update(len(rows))
    finally:
        bar.close()
    conn.rollback()


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
    target: Engine | str | sa.URL | None = None,
    tables: Sequence[str] | None = None,
    *,
    target_mirror: Any = None,
    state: str | os.PathLike[str] | None = None,
    batch_size: int = 5000,
    progress: bool = True,
    resume: bool = True,
    verify: bool = True,
    create: bool = True,
) -> MigrateReport:
    """Copy ``tables`` (default: every table with a vector column) from ``source`` to ``target``,
    or the table of ``target_mirror``'s column into that mirror.

    ``source`` and ``target`` are URLs or Engines (URLs get a ``vk.create_engine`` engine). Each
    batch commits on the target together with its resume marker; ``resume=True`` continues an
    interrupted or earlier run after its last copied key, ``resume=False`` refuses to touch a
    table a previous run started. ``verify`` compares row counts and vector checksums (see
    :func:`vector_checksum`) and the report's :attr:`MigrateReport.ok` says whether they match.
    Raises :class:`vk.MigrationError` for what cannot be copied, before writing that table.

    ``target_mirror`` (instead of ``target``) is a mirror whose column belongs to a table of
    ``source``; its rows are upserted batch by batch, a resume marker is kept in the JSON file
    ``state`` (default: :func:`default_state_path`), ``resume=False`` ignores the marker and
    copies every row again (upserts replace by key), and ``verify`` runs ``vk.verify`` (its
    :class:`~sqlalchemy_vectorknobs.DriftReport` is ``TableMigration.drift``). See the module
    docstring.
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise MigrationError(f"vk.migrate batch_size {batch_size!r} is not a positive whole number.")
    if (target is None) == (target_mirror is None):
        raise MigrationError("vk.migrate needs exactly one of target= (a database) or target_mirror= (a mirror).")
    if target_mirror is not None:
        return _migrate_into_mirror(
            source, target_mirror, tables, state, batch_size=batch_size, progress=progress, resume=resume, verify=verify
        )
    if state is not None:
        raise MigrationError("vk.migrate state= is for target_mirror=; a database target keeps its marker in vk_migrate_progress.")
    assert target is not None
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
    for rows in _counted_pages(sconn, src, columns, pk, after, batch_size, entry, progress, f"migrate {src.name}"):
        with tconn.begin():
            bulk_load(tconn, target, rows, columns=names)
            copied += len(rows)
            _save_progress(tconn, source_id, src.name, rows[-1][key_at], copied)
    if isinstance(target.c[pk.name].type, sa.Integer):
        with tconn.begin():  # inserts that let the database pick the key continue after the copied ones
            dialects.for_dialect(tconn.dialect).advance_key_sequence(tconn, target, target.c[pk.name])
    return entry


# ------------------------------------------------------------------------------ into a mirror

#: Version of the state file's layout.
STATE_FORMAT = 1


def default_state_path(mirror: Any) -> Path | None:
    """Where :func:`migrate` keeps the resume marker of ``target_mirror=mirror`` by default.

    Beside the mirror's own files: ``<path>.vkmigrate.json`` for a mirror with a file ``path``
    (Faiss), ``vk_migrate.json`` in the directory of an embedded Chroma PersistentClient; None for
    a mirror without local files (pass ``state=`` to keep a marker for it).
    """
    path = getattr(mirror, "path", None)
    if isinstance(path, Path):
        return path.with_name(path.name + ".vkmigrate.json")
    get_settings = getattr(getattr(mirror, "client", None), "get_settings", None)
    if callable(get_settings):
        settings = get_settings()
        directory = getattr(settings, "persist_directory", None)
        if getattr(settings, "is_persistent", False) and directory:
            return Path(directory) / "vk_migrate.json"
    return None


def _read_state(path: Path) -> dict[str, Any]:
    """The state file's runs by key (none when the file does not exist)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise MigrationError(f"The migrate state file '{path}' cannot be read ({err}); delete it to start over.") from err
    runs = data.get("runs") if isinstance(data, dict) and data.get("format") == STATE_FORMAT else None
    if not isinstance(runs, dict):
        raise MigrationError(f"The file '{path}' is not a vk.migrate state file; pass another state= or delete it.")
    return runs


def _write_state(path: Path, runs: dict[str, Any]) -> None:
    """Replace the state file atomically and durably."""
    body = json.dumps({"format": STATE_FORMAT, "runs": runs}, indent=1).encode("utf-8")

    def write(f: BinaryIO) -> None:
        f.write(body)

    try:
        replace_file(path, write)
    except OSError as err:
        raise MigrationError(f"Writing the migrate state file '{path}' failed ({err}); the copied batches stay in the mirror.") from err


def _check_source_table(conn: Connection, mirror: Any, columns: Sequence[sa.Column[Any]]) -> None:
    table: sa.Table = mirror.table
    inspector = sa.inspect(conn)
    if not inspector.has_table(table.name, schema=table.schema):
        raise MigrationError(f"Table {table.fullname!r} of mirror '{mirror.name}' does not exist in the source database.")
    present = {c["name"] for c in inspector.get_columns(table.name, schema=table.schema)}
    lacking = [c.name for c in columns if c.name not in present]
    if lacking:
        raise MigrationError(
            f"Source table {table.fullname!r} lacks column(s) {', '.join(map(repr, lacking))} that mirror '{mirror.name}' copies."
        )


def _persist(mirror: Any) -> None:
    """Make the batch just written durable where the mirror does not on each write (Faiss autosave=False)."""
    save = getattr(mirror, "save", None)
    if callable(save) and getattr(mirror, "autosave", True) is False and getattr(mirror, "path", None) is not None:
        save()


def _migrate_into_mirror(
    source: Engine | str | sa.URL,
    mirror: Any,
    tables: Sequence[str] | None,
    state: str | os.PathLike[str] | None,
    *,
    batch_size: int,
    progress: bool,
    resume: bool,
    verify: bool,
) -> MigrateReport:
    from ._blocking import run_blocking
    from .sync._apply import check_mirrors, plan_writes, write
    from .sync.verify import verify as verify_mirror

    (mirror,) = check_mirrors([mirror], "vk.migrate target_mirror=")
    table: sa.Table = mirror.table
    if tables is not None and list(tables) != [table.name]:
        raise MigrationError(
            f"Mirror '{mirror.name}' mirrors table {table.name!r}; pass tables=None (or [{table.name!r}]) with target_mirror=."
        )
    pk: sa.Column[Any] = mirror.pk_column
    columns = [pk, mirror.column, *(table.c[n] for n in mirror.metadata_columns)]
    state_path = Path(state) if state is not None else default_state_path(mirror)
    src_engine, own_src = _engine(source, "source")
    entry = TableMigration(table.name, mirror=mirror.name)
    try:
        source_id = _identity(src_engine)
        key = json.dumps([source_id, table.fullname, mirror.column.name, mirror.name])
        runs = _read_state(state_path) if state_path is not None else {}
        with src_engine.connect() as conn:
            _check_source_table(conn, mirror, columns)
            after: Any = None
            copied = 0
            saved = runs.get(key)
            if resume and isinstance(saved, dict):
                if saved.get("copied") and run_blocking(mirror.count) == 0:
                    log.warning("mirror %s is empty but %s says %s row(s) were copied: copying from the first row",
                                mirror.name, state_path, saved.get("copied"))
                else:
                    after, copied = _decode_key(str(saved["last_key"]), pk), int(saved["copied"])
                    entry.resumed_after = after
            desc = f"migrate {table.name} -> {mirror.name}"
            for rows in _counted_pages(conn, table, columns, pk, after, batch_size, entry, progress, desc):
                pks = [row[0] for row in rows]
                write(mirror, plan_writes(mirror, pks, {row[0]: row._mapping for row in rows}))
                run_blocking(_persist, mirror)
                copied += len(rows)
                if state_path is not None:  # only after the batch is durable in the mirror
                    runs[key] = {
                        "source": source_id, "table": table.fullname, "column": mirror.column.name,
                        "mirror": mirror.name, "last_key": _encode_key(pks[-1]), "copied": copied,
                        "updated_at": time.time(),
                    }
                    _write_state(state_path, runs)
            if verify:
                with_vector = sa.select(sa.func.count()).select_from(table).where(mirror.column.is_not(None))
                entry.source_rows = int(conn.execute(with_vector).scalar_one())
                entry.drift = verify_mirror(conn, mirror, batch_size=batch_size, progress=progress)
                entry.target_rows = int(run_blocking(mirror.count))
                conn.rollback()
    finally:
        if own_src:
            src_engine.dispose()
    return MigrateReport([entry])
