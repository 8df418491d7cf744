"""The outbox: rows written in the data's transaction, drained idempotently, retried, dead-lettered, crash-safe."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks
from sqlalchemy_vectorknobs.sync.outbox import version_of

from ..conftest import unique
from .conftest import Recording, SyncEnv, assert_matches, make_model, memory_mirror, vec

LATER = 10**10  # a `now` after every backoff


def test_outbox_rows_follow_the_transaction_and_drain_applies_them(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    other = Recording(vk.MemoryMirror(Doc.embedding, name="other"))
    env.attach([mirror, other], outbox=True, drain_after_commit=False)

    def rolled_back(s: Session) -> None:
        s.add(Doc(id=1, embedding=vec(1)))
        s.flush()
        s.rollback()

    env.orm(rolled_back)
    assert env.outbox_rows(mirror) == []

    def committed(s: Session) -> None:
        s.add_all([Doc(id=i, category="a", embedding=vec(i)) for i in range(1, 6)])
        s.flush()
        s.get(Doc, 2).embedding = vec(2, 1)
        s.delete(s.get(Doc, 3))
        s.execute(sa.update(Doc).where(Doc.id == 4).values(category="b"))
        s.commit()

    env.orm(committed)
    rows = env.outbox_rows(mirror)
    assert sorted((r.pk, r.op) for r in rows[:5]) == [(str(i), "upsert") for i in range(1, 6)]  # first flush
    assert sorted((r.pk, r.op) for r in rows[5:7]) == [("2", "upsert"), ("3", "delete")]  # autoflush
    assert [(r.pk, r.op) for r in rows[7:]] == [("4", "upsert")]  # the bulk UPDATE
    assert len(env.outbox_rows(other)) == len(rows) - 1  # the category change is not its business
    assert rows[0].table_name == env.table.name and rows[0].attempts == 0 and not rows[0].dead
    assert mirror.writes == 0  # nothing applied at commit: a worker drains

    report = env.drain([mirror, other])
    assert (report.applied, report.failed, report.remaining, report.dead) == (15, 0, 0, [])
    assert report.ok and "15 applied" in str(report)
    assert env.outbox_rows(mirror) == [] and env.outbox_rows(other) == []
    assert_matches(env, mirror)
    assert other.ids() == mirror.ids()
    # coalesced: one upsert call per mirror for the batch, each key once with its newest outbox id
    ((_, ids, versions),) = [c for c in mirror.calls if c[0] == "upsert"]
    assert sorted(ids) == [1, 2, 4, 5]
    newest = {int(r.pk): version_of(r.id) for r in rows}
    assert dict(zip(ids, versions or [])) == {pk: newest[pk] for pk in ids}


def test_after_commit_drain_applies_and_acknowledges(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True)

    def go(s: Session) -> None:
        s.add_all([Doc(id=i, category="a", embedding=vec(i)) for i in range(1, 11)])
        s.commit()
        s.delete(s.get(Doc, 1))
        s.execute(sa.update(Doc).where(Doc.id > 8).values(embedding=vec(0, 4)))
        s.commit()

    env.orm(go)
    assert env.outbox_rows(mirror) == []
    assert_matches(env, mirror)


def test_a_failed_apply_stays_in_the_outbox_until_a_later_drain(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    mirror.failing = True
    env.attach([mirror], outbox=True, on_error="raise")

    def go(s: Session) -> None:
        s.add(Doc(id=1, category="a", embedding=vec(1)))
        with pytest.raises(vks.MirrorSyncError, match="stay in the outbox") as info:
            s.commit()
        assert list(info.value.failures) == [mirror.name]

    before = time.time()
    env.orm(go)
    assert set(env.committed()) == {1}
    (row,) = env.outbox_rows(mirror)
    assert row.attempts == 1 and "offline" in row.last_error and row.available_at >= before + 0.5 and not row.dead

    mirror.failing = False
    early = env.drain([mirror], now=before)  # the retry is not due yet
    assert (early.applied, early.remaining) == (0, 1)
    report = env.drain([mirror], now=LATER)
    assert (report.applied, report.remaining) == (1, 0)
    assert_matches(env, mirror)


def test_log_mode_with_outbox_leaves_the_row_for_drain(env: SyncEnv, caplog: pytest.LogCaptureFixture) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    mirror.failing = True
    env.attach([mirror], outbox=True, on_error="log")
    env.orm(lambda s: (s.add(Doc(id=1, embedding=vec(1))), s.commit()))
    assert "stay in the outbox" in caplog.text
    mirror.failing = False
    assert env.drain([mirror], now=LATER).applied == 1
    assert_matches(env, mirror)


def test_dead_letter_after_max_attempts(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    mirror.failing = True
    env.attach([mirror], outbox=True, drain_after_commit=False)
    env.orm(lambda s: (s.add_all([Doc(id=1, embedding=vec(1)), Doc(id=2, embedding=vec(2))]), s.commit()))
    for attempt in (1, 2):
        report = env.drain([mirror], max_attempts=3, now=LATER + attempt)
        assert (report.failed, report.dead, report.remaining) == (2, [], 2)
        assert "offline" in str(report.errors[mirror.name])
    report = env.drain([mirror], max_attempts=3, now=LATER + 3)
    assert report.failed == 2 and report.remaining == 0
    assert sorted(d.pk for d in report.dead) == ["1", "2"]
    assert all(d.attempts == 3 and "offline" in d.last_error and d.mirror == mirror.name for d in report.dead)
    assert all(r.dead for r in env.outbox_rows(mirror))  # kept, for a human to look at
    mirror.failing = False
    mirror.reset()
    assert env.drain([mirror], now=LATER + 4).applied == 0 and mirror.writes == 0  # dead rows are not retried


def test_out_of_order_drains_keep_the_newest_vector(sync_env: SyncEnv) -> None:
    """Drain A re-reads v1; meanwhile v2 commits and its drain B applies; then A's write arrives late."""
    env = sync_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True, drain_after_commit=False)
    env.orm(lambda s: (s.add(Doc(id=1, category="a", embedding=vec(1, 1))), s.commit()))
    (first,) = env.outbox_rows(mirror)

    def newer_change_overtakes(op: str, ids: list[Any]) -> None:
        env.orm(lambda s: (setattr(s.get(Doc, 1), "embedding", vec(1, 2)), s.commit()))
        (second,) = [r for r in env.outbox_rows(mirror) if r.id != first.id]
        assert env.drain([mirror], ids=[second.id]).applied == 1

    mirror.before_write = newer_change_overtakes
    report = env.drain([mirror], ids=[first.id])
    assert report.applied == 1 and env.outbox_rows(mirror) == []
    (late, early) = [c for c in mirror.calls]
    assert late[2] == [version_of(first.id)] and early[2] is not None and early[2][0] > version_of(first.id)
    np.testing.assert_allclose(mirror.get([1])[1], vec(1, 2), atol=1e-6)  # the late v1 was ignored
    assert_matches(env, mirror)


def test_older_outbox_row_drained_last_cannot_resurrect_a_deleted_row(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True, drain_after_commit=False)
    env.orm(lambda s: (s.add(Doc(id=1, embedding=vec(1))), s.commit()))
    env.orm(lambda s: (s.delete(s.get(Doc, 1)), s.commit()))
    old, new = env.outbox_rows(mirror)
    assert env.drain([mirror], ids=[new.id]).applied == 1
    assert env.drain([mirror], ids=[old.id]).applied == 1  # re-reads: the row is gone, version too old
    assert mirror.ids() == set()
    mirror.inner.upsert([1], [vec(1)], versions=[version_of(old.id)])  # a stale upsert arriving even later
    assert mirror.ids() == set()


def test_a_mirror_synced_without_the_outbox_can_switch_to_it(sqlite_env: SyncEnv) -> None:
    env = sqlite_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    plain = env.attach([mirror])
    env.orm(lambda s: (s.add(Doc(id=1, embedding=vec(1))), s.commit()))  # a clock version
    plain.detach()
    env.attach([mirror], outbox=True)
    env.orm(lambda s: (setattr(s.get(Doc, 1), "embedding", vec(1, 1)), s.commit()))
    assert_matches(env, mirror)  # the outbox version sorts above the clock version


def _faiss_ids(path: Path, Doc: Any) -> dict[int, np.ndarray]:
    with vk.FaissMirror(Doc.embedding, path=path, metadata_columns=["category"]) as m:
        return m.get(m.ids())


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_crash_between_commit_and_apply_loses_nothing(database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
    else:
        url = request.getfixturevalue("pg_url").set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    table = unique("crash")
    faiss_path = tmp_path / "doc.vkfaiss"
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("crash_writer.py")), url, str(faiss_path), table],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 17, proc.stdout + proc.stderr
    assert "first commit applied: 20 vectors" in proc.stdout and "not reached" not in proc.stdout

    Doc = make_model(table)
    engine = vk.create_engine(url)
    try:
        with engine.connect() as c:
            sql = {r.id: r.embedding for r in c.execute(sa.select(Doc.id, Doc.embedding))}
        assert set(sql) == set(range(1, 26)) - {6, 7, 8}  # the second commit is durable
        assert set(_faiss_ids(faiss_path, Doc)) == set(range(1, 21))  # ... and the mirror never heard of it

        with vk.FaissMirror(Doc.embedding, path=faiss_path, metadata_columns=["category"]) as mirror:
            with Session(engine) as s:
                assert not vks.verify(s, mirror).ok
            report = vks.drain(engine, [mirror])
            assert report.applied == 13 and report.remaining == 0, report  # 5 updates, 3 deletes, 5 inserts
            with Session(engine) as s:
                assert vks.verify(s, mirror).ok
        stored = _faiss_ids(faiss_path, Doc)  # reopened from the file
        assert set(stored) == set(sql)
        for pk, v in sql.items():
            np.testing.assert_allclose(stored[pk], v, atol=1e-6)
    finally:
        Doc.metadata.drop_all(engine)
        engine.dispose()


def test_a_missing_outbox_table_fails_the_flush(tmp_path: Path) -> None:
    engine = vk.create_engine(f"sqlite:///{tmp_path / 'no-outbox.db'}")
    Doc = make_model()
    Doc.metadata.create_all(engine)

    class Unbound(Session):  # no bind known at attach time: the table is checked at first flush
        pass

    with vks.attach(Unbound, [vk.MemoryMirror(Doc.embedding)], outbox=True), Unbound(engine) as s:
        s.add(Doc(id=1, embedding=vec(1)))
        with pytest.raises(vk.InvalidMirrorError, match="vk.create_outbox"):
            s.commit()
    with engine.connect() as c:
        assert c.execute(sa.select(sa.func.count()).select_from(Doc.__table__)).scalar_one() == 0
    vks.create_outbox(engine)
    vks.create_outbox(engine)  # idempotent
    assert sa.inspect(engine).has_table("vk_outbox")
    engine.dispose()


def test_drain_refuses_bad_arguments(sqlite_env: SyncEnv) -> None:
    mirror = vk.MemoryMirror(sqlite_env.Doc.embedding)
    engine = sqlite_env.backend.engine
    with pytest.raises(vk.InvalidMirrorError, match="batch_size=0 is not valid"):
        vks.drain(engine, [mirror], batch_size=0)
    with pytest.raises(vk.InvalidMirrorError, match="backoff=-1 is not valid"):
        vks.drain(engine, [mirror], backoff=-1)
    with pytest.raises(vk.InvalidMirrorError, match="needs an Engine"):
        vks.drain("sqlite://", [mirror])
    assert vks.drain(engine, []).applied == 0
    assert vks.drain(sa.orm.sessionmaker(engine), [mirror]).remaining == 0


@pytest.fixture(params=["sqlite", "pg-psycopg"])
def sync_backend(request: pytest.FixtureRequest) -> Any:
    from ..conftest import _get_backend

    return _get_backend(request, request.param)


@pytest.mark.parametrize("key_kind", ["text", "uuid"])
def test_outbox_with_text_and_uuid_keys(sync_backend: Any, key_kind: str) -> None:
    """Outbox rows are inserted in one statement per flush and read back / acked by key lists
    (PostgreSQL: one array parameter); text and UUID primary keys must survive the round trip."""
    import uuid

    from sqlalchemy.orm import DeclarativeBase, mapped_column, sessionmaker

    class Base(DeclarativeBase):
        pass

    key_type: Any = sa.String(40) if key_kind == "text" else sa.Uuid()

    class Item(Base):
        __tablename__ = unique("outbox_keys")
        key = mapped_column(key_type, primary_key=True)
        category = mapped_column(sa.String(8))
        embedding = mapped_column(vk.Vector(8))

    engine = sync_backend.engine
    Base.metadata.create_all(engine)
    vks.create_outbox(engine)
    mirror = vk.MemoryMirror(Item.embedding, metadata_columns=["category"])
    maker = sessionmaker(engine, expire_on_commit=False)
    keys: list[Any] = [f"k-{i}" if key_kind == "text" else uuid.UUID(int=i + 1) for i in range(1_200)]
    try:
        with vks.attach(maker, [mirror], outbox=True):
            with maker() as s:
                s.add_all([Item(key=k, category="ab"[i % 2], embedding=vec(i)) for i, k in enumerate(keys)])
                s.commit()
            with maker() as s:
                for i, k in enumerate(keys[:700]):
                    s.get(Item, k).embedding = vec(i, 1)
                s.delete(s.get(Item, keys[-1]))
                s.commit()
        with engine.connect() as conn:
            rows = {r.key: r for r in conn.execute(sa.select(Item.__table__))}
            t = vks.outbox_table
            left = conn.execute(sa.select(sa.func.count()).select_from(t).where(t.c.mirror == mirror.name)).scalar_one()
        assert left == 0
        assert mirror.ids() == set(rows) == set(keys[:-1])
        stored = mirror.get(list(rows))
        for k, row in rows.items():
            np.testing.assert_allclose(stored[k], row.embedding, atol=1e-6)
        with Session(engine) as session:
            assert vk.verify(session, mirror).ok
    finally:
        Base.metadata.drop_all(engine)


def test_after_commit_drain_of_a_large_transaction_runs_in_batches(env: SyncEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past COMMITTED_BATCH rows the after-commit drain takes several transactions; a key changed
    in two flushes has an older row in an earlier batch than its newest, and must end up newest."""
    from sqlalchemy_vectorknobs.sync import outbox as outbox_module

    monkeypatch.setattr(outbox_module, "COMMITTED_BATCH", 4)
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True)

    def go(s: Session) -> None:
        s.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in range(1, 11)])
        s.flush()  # ten outbox rows
        for i in (2, 9):
            s.get(Doc, i).embedding = vec(i, 1)
        s.get(Doc, 5).category = "z"
        s.delete(s.get(Doc, 7))
        s.commit()  # four more: fourteen rows, four batches

    env.orm(go)
    assert env.outbox_rows(mirror) == []
    assert mirror.writes >= 4  # one write per batch at least (the deleted key is a delete call)
    assert_matches(env, mirror)
    np.testing.assert_allclose(mirror.get([9])[9], vec(9, 1), atol=1e-6)


def test_after_commit_drain_of_a_session_joined_to_an_outer_transaction(sync_env: SyncEnv) -> None:
    """The outbox rows of a transaction the session does not own are invisible to the after-commit
    drain: it applies nothing. They are applied once the outer transaction commits, and vanish
    with it when it rolls back."""
    env = sync_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    for outcome in ("rollback", "commit"):
        with env.backend.engine.connect() as conn:
            outer = conn.begin()
            session = Session(bind=conn)
            with vks.attach(session, [mirror], outbox=True):
                session.add(Doc(id=1, category="a", embedding=vec(1)))
                session.commit()  # commits nothing: the outer transaction is still open
                assert mirror.writes == 0
            session.close()
            getattr(outer, outcome)()
        report = env.drain([mirror])
        assert report.applied == (1 if outcome == "commit" else 0) and report.remaining == 0
    assert env.outbox_rows(mirror) == []
    assert_matches(env, mirror)


def test_after_commit_drain_leaves_rows_another_drainer_holds(pg_sync_env: SyncEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL: when a concurrent drainer has locked the newest row of a key, the after-commit
    drain skips that row (SKIP LOCKED), applies the rows it did claim by reading them back, and
    leaves the locked one; a later drain applies it."""
    from sqlalchemy_vectorknobs.sync import outbox as outbox_module

    env = pg_sync_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True)
    env.orm(lambda s: (s.add_all([Doc(id=i, category="a", embedding=vec(i)) for i in range(1, 6)]), s.commit()))
    mirror.reset()
    real = outbox_module.drain_committed
    t = vks.outbox_table

    def with_a_locked_row(*args: Any, **kw: Any) -> Any:
        with env.backend.engine.connect() as other:
            other.begin()
            newest = other.execute(
                sa.select(t.c.id).where(t.c.mirror == mirror.name, t.c.pk == "3").order_by(t.c.id.desc()).limit(1).with_for_update()
            ).scalar_one()
            result = real(*args, **kw)
            other.rollback()
        assert [r.id for r in env.outbox_rows(mirror)] == [newest]
        return result

    monkeypatch.setattr(outbox_module, "drain_committed", with_a_locked_row)

    def go(s: Session) -> None:
        for i in (1, 3, 4):
            s.get(Doc, i).embedding = vec(i, 1)
        s.delete(s.get(Doc, 5))
        s.commit()

    env.orm(go)
    assert mirror.written_ids() == {1, 4, 5}
    assert sorted(r.pk for r in env.outbox_rows(mirror)) == ["3"]
    monkeypatch.setattr(outbox_module, "drain_committed", real)
    assert env.drain([mirror]).applied == 1
    assert_matches(env, mirror)


@pytest.mark.parametrize(("backend_id", "autocommit"), [("sqlite", False), ("sqlite", True), ("pg-psycopg", False)])
def test_insert_ids_gives_each_row_its_own_id_in_row_order(request: pytest.FixtureRequest, backend_id: str, autocommit: bool) -> None:
    """The dialect insert behind the outbox: ids come back in the order of the rows, checked
    against the rows as stored. SQLite takes the newest ids after one executemany inside a
    transaction and RETURNING in parameter order outside one (AUTOCOMMIT); PostgreSQL maps
    RETURNING rows back by key. Rows already in the table (ids below) must not be confused."""
    from sqlalchemy_vectorknobs import dialects
    from sqlalchemy_vectorknobs.sync.attach import _OUTBOX_COLUMNS, _OUTBOX_CONSTANTS

    from ..conftest import _get_backend

    engine = _get_backend(request, backend_id).engine
    if autocommit:
        engine = engine.execution_options(isolation_level="AUTOCOMMIT")
    vks.create_outbox(engine)
    t = vks.outbox_table
    name = unique("ids")
    # keys in an order unlike their text order, so a sort anywhere would show
    keys = [str((i * 7919) % 1000) for i in range(300)]
    rows = [(name, "docs", key, "upsert", 1.5) for key in keys]
    support = dialects.for_dialect(engine.dialect)
    try:
        with engine.begin() as conn:
            before = support.insert_ids(conn, t, _OUTBOX_COLUMNS, rows[:5], _OUTBOX_CONSTANTS, ("mirror", "pk"))
            ids = support.insert_ids(conn, t, _OUTBOX_COLUMNS, rows[5:], _OUTBOX_CONSTANTS, ("mirror", "pk"))
            assert support.insert_ids(conn, t, _OUTBOX_COLUMNS, [], _OUTBOX_CONSTANTS, ("mirror", "pk")) == []
        with engine.connect() as conn:
            stored = dict(conn.execute(sa.select(t.c.id, t.c.pk).where(t.c.mirror == name)).all())
            constants = conn.execute(sa.select(t.c.attempts, t.c.available_at, t.c.dead).where(t.c.mirror == name)).all()
        assert len(set(before + ids)) == 300
        assert [stored[i] for i in before + ids] == keys
        assert set(constants) == {(0, 0.0, 0)}
    finally:
        with engine.begin() as conn:
            conn.execute(t.delete().where(t.c.mirror == name))


def test_sqlite_in_values_one_json_parameter_for_integer_keys(sqlite_env: SyncEnv) -> None:
    """SQLite's key lists: integer keys go as one JSON parameter, anything else as an expanding
    IN (whose values pass their type's bind processing); both select exactly the listed rows."""
    from sqlalchemy_vectorknobs import dialects

    env = sqlite_env
    env.seed(30)
    t = env.table
    engine = env.backend.engine
    support = dialects.for_dialect(engine.dialect)
    wanted = [3, 17, 29, 99]
    integer = support.in_values(t.c.id, wanted)
    assert "json_each" in str(integer.compile(engine))
    as_text = support.in_values(t.c.category, ["a"])
    assert "json_each" not in str(as_text.compile(engine))
    mixed = support.in_values(t.c.id, [3, True])  # a bool is not an integer key here
    assert "json_each" not in str(mixed.compile(engine))
    with engine.connect() as conn:
        assert sorted(conn.execute(sa.select(t.c.id).where(integer)).scalars()) == [3, 17, 29]
        assert conn.execute(sa.select(sa.func.count()).where(as_text)).scalar_one() == 15
        assert conn.execute(sa.select(t.c.id).where(support.in_values(t.c.id, []))).all() == []
