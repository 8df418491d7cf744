"""Session sync on every session backend: collect during flush, apply after commit, nothing on rollback.

``MemoryMirror`` is the oracle: after each commit its contents must equal the committed rows that
the test reads back on its own connection.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from .conftest import Recording, SyncEnv, assert_matches, memory_mirror, vec


def test_insert_update_delete_follow_commits(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror])

    def insert(s: Session) -> None:
        s.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in range(1, 21)])
        s.add(Doc(id=21, category="a", embedding=None))  # no vector: not mirrored
        s.commit()

    env.orm(insert)
    assert mirror.count() == 20
    assert_matches(env, mirror)

    def edit(s: Session) -> None:
        s.get(Doc, 3).embedding = vec(3, 1)
        s.get(Doc, 4).category = "z"
        s.get(Doc, 5).embedding = None  # losing its vector removes it from the mirror
        s.get(Doc, 21).embedding = vec(21)
        s.delete(s.get(Doc, 6))
        s.commit()

    env.orm(edit)
    assert_matches(env, mirror)
    assert 5 not in mirror.ids() and 6 not in mirror.ids() and 21 in mirror.ids()
    np.testing.assert_allclose(mirror.get([3])[3], vec(3, 1), atol=1e-6)

    def several_flushes(s: Session) -> None:
        s.add(Doc(id=30, embedding=vec(30)))
        s.flush()
        s.get(Doc, 30).embedding = vec(30, 2)
        s.flush()
        s.delete(s.get(Doc, 7))
        s.commit()

    mirror.reset()
    env.orm(several_flushes)
    assert_matches(env, mirror)
    assert mirror.written_ids() == {30, 7}


def test_server_generated_keys_are_recorded(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror])

    def go(s: Session) -> list[int]:
        docs = [Doc(category="a", embedding=vec(i)) for i in range(5)]
        s.add_all(docs)
        s.commit()
        return [d.id for d in docs]

    ids = env.orm(go)
    assert mirror.ids() == set(ids)
    assert_matches(env, mirror)


def test_only_vector_and_metadata_changes_write_to_the_mirror(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(10)
    mirror = memory_mirror(env)
    env.attach([mirror])

    def touch_note(s: Session) -> None:
        for i in range(1, 11):
            s.get(Doc, i).note = f"note {i}"
        s.get(Doc, 1).category = s.get(Doc, 1).category  # same value: no net change
        s.commit()

    env.orm(touch_note)
    assert mirror.writes == 0

    def touch_category(s: Session) -> None:
        s.get(Doc, 2).category = "c"
        s.commit()

    env.orm(touch_category)
    assert [(op, ids) for op, ids, _ in mirror.calls] == [("upsert", [2])]
    assert mirror.inner.metadata(2) == {"category": "c"}


def test_a_mirror_without_metadata_ignores_category_changes(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(3)
    plain = Recording(vk.MemoryMirror(Doc.embedding, name="plain"))
    with_md = memory_mirror(env)
    env.attach([plain, with_md])

    def go(s: Session) -> None:
        s.get(Doc, 1).category = "new"
        s.commit()

    env.orm(go)
    assert plain.writes == 0 and with_md.written_ids() == {1}


def test_rollback_applies_nothing(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(5)
    mirror = memory_mirror(env)
    env.attach([mirror])

    def rolled_back(s: Session) -> None:
        s.add(Doc(id=50, embedding=vec(50)))
        s.get(Doc, 1).embedding = vec(1, 9)
        s.delete(s.get(Doc, 2))
        s.flush()
        s.rollback()
        s.add(Doc(id=51, embedding=vec(51)))
        s.flush()
        s.close()  # closed without commit

    env.orm(rolled_back)
    assert mirror.writes == 0

    def failed_flush(s: Session) -> None:
        s.add(Doc(id=52, embedding=vec(52)))
        s.flush()
        s.add(Doc(id=1, embedding=vec(1, 3)))  # duplicate key: this flush fails
        with pytest.raises(sa.exc.IntegrityError):
            s.flush()
        s.rollback()
        s.add(Doc(id=53, embedding=vec(53)))
        s.commit()

    env.orm(failed_flush)
    assert mirror.written_ids() == {53}
    assert 52 not in env.committed()
    assert mirror.ids() == {53}


def _savepoint_body(Doc: type, s: Session) -> None:
    s.add(Doc(id=100, embedding=vec(100)))  # the outer transaction writes first (see the SQLite note)
    s.flush()
    sp = s.begin_nested()
    s.add(Doc(id=101, embedding=vec(101)))
    s.get(Doc, 1).embedding = vec(1, 5)
    s.flush()
    sp.rollback()  # 101 and the change to 1 are gone
    sp = s.begin_nested()
    s.add(Doc(id=102, embedding=vec(102)))
    inner = s.begin_nested()
    s.add(Doc(id=103, embedding=vec(103)))
    s.flush()
    inner.rollback()
    inner = s.begin_nested()
    s.delete(s.get(Doc, 2))
    inner.commit()
    sp.commit()  # 102 and the delete of 2 join the outer transaction
    s.commit()


def test_savepoint_rollback_discards_only_its_part(env: SyncEnv) -> None:
    env.seed(3)
    mirror = memory_mirror(env)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    mirror.reset()
    env.attach([mirror])
    env.orm(lambda s: _savepoint_body(env.Doc, s))
    rows = env.committed()
    assert set(rows) == {1, 3, 100, 102}
    np.testing.assert_allclose(rows[1][0], vec(1), atol=1e-6)  # the rolled back edit never happened
    assert mirror.written_ids() == {100, 102, 2}
    assert_matches(env, mirror)


def test_savepoint_as_first_statement_on_sqlite_needs_the_begin_recipe(sqlite_env: SyncEnv, tmp_path: object) -> None:
    """pysqlite sends no BEGIN before a SAVEPOINT, so RELEASE of a first-statement savepoint commits.

    With SQLAlchemy's documented recipe (driver autocommit + an explicit BEGIN) savepoints are
    real, and the mirror follows the database exactly. docs/mirrors.md says so.
    """
    engine = vk.create_engine(sqlite_env.backend.engine.url)

    @sa.event.listens_for(engine, "connect")
    def _no_driver_transactions(dbapi_connection: object, record: object) -> None:
        dbapi_connection.isolation_level = None  # type: ignore[attr-defined]

    @sa.event.listens_for(engine, "begin")
    def _begin(conn: sa.Connection) -> None:
        conn.exec_driver_sql("BEGIN")

    Doc = sqlite_env.Doc
    mirror = memory_mirror(sqlite_env)
    maker = sa.orm.sessionmaker(engine)
    attachment = vks.attach(maker, [mirror])
    try:
        with maker() as s:
            sp = s.begin_nested()  # the very first statement of the transaction
            s.add(Doc(id=7, embedding=vec(7)))
            sp.commit()
            s.rollback()
        assert 7 not in sqlite_env.committed() and mirror.writes == 0
        with maker() as s:
            sp = s.begin_nested()
            s.add(Doc(id=8, embedding=vec(8)))
            sp.commit()
            s.commit()
        assert_matches(sqlite_env, mirror)
        assert mirror.ids() == {8}
    finally:
        attachment.detach()
        engine.dispose()


def test_bulk_update_and_delete_are_captured(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(40)
    mirror = memory_mirror(env)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    mirror.reset()
    env.attach([mirror])

    def bulk(s: Session) -> None:
        s.execute(sa.update(Doc).where(Doc.id <= 10).values(embedding=vec(0, 7)))
        s.execute(sa.update(Doc).where(Doc.id.between(11, 15)).values(category="c"))
        s.execute(sa.delete(Doc).where(Doc.id > 35))
        s.execute(sa.update(Doc), [{"id": 20, "embedding": vec(20, 1)}, {"id": 21, "category": "d"}])
        s.commit()

    env.orm(bulk)
    assert_matches(env, mirror)
    assert mirror.written_ids() == set(range(1, 16)) | {20, 21} | set(range(36, 41))

    mirror.reset()

    def untracked(s: Session) -> None:
        s.execute(sa.update(Doc).where(Doc.id < 30).values(note="bulk note"))
        s.execute(sa.update(Doc), [{"id": 22, "note": "x"}])
        s.commit()

    env.orm(untracked)
    assert mirror.writes == 0


def test_bulk_inserts_are_captured(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror])

    def go(s: Session) -> None:
        # explicit keys far from the ones PostgreSQL's sequence hands out
        s.execute(sa.insert(Doc), [{"id": i, "category": "a", "embedding": vec(i)} for i in (1001, 1002, 1003)])
        result = s.execute(sa.insert(Doc), [{"category": "b", "embedding": vec(10 + i)} for i in range(3)])
        with pytest.raises(sa.exc.ResourceClosedError):
            result.all()  # like SQLAlchemy's own result for an INSERT without RETURNING
        returned = s.execute(sa.insert(Doc).returning(Doc.category), [{"category": "r", "embedding": vec(30)}]).all()
        assert returned == [("r",)]
        s.execute(sa.insert(Doc).values(category="v", embedding=vec(40)))
        s.execute(sa.insert(Doc).values(id=1050, category="w", embedding=vec(50)))
        s.execute(sa.insert(Doc).values([{"id": 1060, "embedding": vec(60)}, {"id": 1061, "embedding": vec(61)}]))
        s.commit()

    env.orm(go)
    rows = env.committed()
    assert len(rows) == 11
    assert_matches(env, mirror)


def test_bulk_statements_inside_a_rolled_back_savepoint_are_dropped(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(10)
    mirror = memory_mirror(env)
    env.attach([mirror])

    def go(s: Session) -> None:
        s.execute(sa.update(Doc).where(Doc.id == 1).values(embedding=vec(1, 1)))
        sp = s.begin_nested()
        s.execute(sa.delete(Doc).where(Doc.id > 5))
        sp.rollback()
        s.commit()

    env.orm(go)
    assert mirror.written_ids() == {1}
    assert len(env.committed()) == 10


def test_failing_mirror_raises_after_commit_and_others_still_apply(env: SyncEnv) -> None:
    Doc = env.Doc
    broken = Recording(vk.MemoryMirror(Doc.embedding, name="broken"), failing=True)
    healthy = memory_mirror(env)
    env.attach([broken, healthy], on_error="raise")

    def go(s: Session) -> None:
        s.add(Doc(id=1, category="a", embedding=vec(1)))
        with pytest.raises(vks.MirrorSyncError) as info:
            s.commit()
        assert set(info.value.failures) == {"broken"}
        assert "was committed" in str(info.value) and "vk.rebuild()" in str(info.value)
        assert isinstance(info.value, vk.VectorKnobsError) and isinstance(info.value, RuntimeError)
        # the session is usable afterwards
        s.add(Doc(id=2, category="b", embedding=vec(2)))
        broken.failing = False
        s.commit()

    env.orm(go)
    assert set(env.committed()) == {1, 2}
    assert_matches(env, healthy)
    assert broken.inner.ids() == {2}


def test_failing_mirror_is_logged_under_on_error_log(env: SyncEnv, caplog: pytest.LogCaptureFixture) -> None:
    Doc = env.Doc
    broken = Recording(vk.MemoryMirror(Doc.embedding, name="broken"), failing=True)
    env.attach([broken], on_error="log")
    with caplog.at_level(logging.ERROR, logger="sqlalchemy_vectorknobs.sync"):
        env.orm(lambda s: (s.add(Doc(id=1, embedding=vec(1))), s.commit()))
    assert set(env.committed()) == {1}
    assert any("'broken' could not be updated" in r.getMessage() for r in caplog.records)


def test_clock_versions_keep_a_slow_older_apply_from_winning(sqlite_env: SyncEnv) -> None:
    """Apply A re-reads v1, then B commits v2 and applies it, then A's write arrives: v2 must stay."""
    env = sqlite_env
    Doc = env.Doc
    env.seed(1)
    mirror = memory_mirror(env)
    env.attach([mirror])

    def commit_v2(op: str, ids: list[object]) -> None:
        env.orm(lambda s: (setattr(s.get(Doc, 1), "embedding", vec(1, 2)), s.commit()))

    mirror.before_write = commit_v2
    env.orm(lambda s: (setattr(s.get(Doc, 1), "embedding", vec(1, 1)), s.commit()))
    assert [op for op, _, _ in mirror.calls] == ["upsert", "upsert"]
    (_, _, older), (_, _, newer) = mirror.calls
    assert older is not None and newer is not None and newer[0] > older[0]
    np.testing.assert_allclose(mirror.get([1])[1], vec(1, 2), atol=1e-6)
    assert_matches(env, mirror)


def test_detach_stops_syncing_and_targets_resolve(sqlite_env: SyncEnv) -> None:
    env = sqlite_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    attachment = env.attach([mirror])
    assert attachment.active and "memory:" in repr(attachment)
    attachment.detach()
    env.orm(lambda s: (s.add(Doc(id=1, embedding=vec(1))), s.commit()))
    assert mirror.writes == 0 and not attachment.active

    # one Session instance
    with Session(env.backend.engine) as s, vks.attach(s, [mirror]):
        s.add(Doc(id=2, embedding=vec(2)))
        s.commit()
    assert mirror.ids() == {2}

    # a Session subclass: every session of that class
    class MySession(Session):
        pass

    with vks.attach(MySession, [mirror]):
        with MySession(env.backend.engine) as s:
            s.add(Doc(id=3, embedding=vec(3)))
            s.commit()
        with Session(env.backend.engine) as s:  # another class: not attached
            s.add(Doc(id=4, embedding=vec(4)))
            s.commit()
    assert mirror.ids() == {2, 3}


def test_attach_refuses_bad_arguments(sqlite_env: SyncEnv) -> None:
    Doc = sqlite_env.Doc
    mirror = vk.MemoryMirror(Doc.embedding)
    with pytest.raises(vk.InvalidMirrorError, match="on_error='ignore' is not valid"):
        vks.attach(sqlite_env.maker, [mirror], on_error="ignore")
    with pytest.raises(vk.InvalidMirrorError, match="two mirrors named"):
        vks.attach(sqlite_env.maker, [mirror, vk.MemoryMirror(Doc.embedding)])
    with pytest.raises(vk.InvalidMirrorError, match="is not a mirror"):
        vks.attach(sqlite_env.maker, [object()])
    with pytest.raises(vk.InvalidMirrorError, match="needs at least one mirror"):
        vks.attach(sqlite_env.maker, [])
    with pytest.raises(vk.InvalidMirrorError, match="needs a Session class"):
        vks.attach(sqlite_env.backend.engine, [mirror])
    with pytest.raises(vk.InvalidMirrorError, match="needs outbox=True"):
        vks.attach(sqlite_env.maker, [mirror], drain_after_commit=False)


def test_nearest_via_mirror_returns_entities_in_mirror_order(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(30)
    mirror = memory_mirror(env)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    q = vec(5, 3)
    expected = mirror.search(q, k=5)
    env.run(lambda c: c.execute(sa.delete(env.table).where(env.table.c.id == expected[1][0])))  # gone in SQL

    def go(s: Session) -> list[tuple[int, float]]:
        return [(d.id, dist) for d, dist in s.execute(vk.nearest(Doc.embedding, q, k=5, via=mirror))]

    got = env.orm(go)
    assert [pk for pk, _ in got] == [pk for pk, _ in expected if pk != expected[1][0]]
    for (_, d_got), (_, d_want) in zip(got, [e for e in expected if e[0] != expected[1][0]]):
        assert abs(d_got - d_want) < 1e-6

    filtered = env.orm(lambda s: [d.category for d, _ in s.execute(vk.nearest(Doc.embedding, q, k=4, via=mirror, where={"category": "a"}))])
    assert filtered == ["a"] * 4
    # the same filter written in SQL is passed to the mirror: k qualifying rows, never fewer
    in_sql = env.orm(lambda s: [d.category for d, _ in s.execute(vk.nearest(Doc.embedding, q, k=4, via=mirror, where=Doc.category == "a"))])
    assert in_sql == filtered
    both = env.orm(
        lambda s: [(d.id, d.category) for d, _ in s.execute(vk.nearest(Doc.embedding, q, k=6, via=mirror, where=Doc.category.in_(["a", "b"])))]
    )
    gone = expected[1][0]
    assert [pk for pk, _ in both] == [pk for pk, _ in mirror.search(q, k=6, where={"category": ["a", "b"]}) if pk != gone]
    # other SQL cannot be passed to the mirror, and filtering its k rows afterwards would return fewer
    with pytest.raises(vk.IncompatibleOperatorError, match="can only filter by equality or IN on its metadata columns"):
        vk.nearest(Doc.embedding, q, k=5, via=mirror, where=Doc.id > 100)
    with pytest.raises(vk.IncompatibleOperatorError, match=r"chose its rows in mirror .* when it was called"):
        vk.nearest(Doc.embedding, q, k=5, via=mirror).where(Doc.category == "a")
    far = env.orm(lambda s: s.execute(vk.nearest(Doc.embedding, q, k=5, via=mirror, max_distance=-1.0)).all())
    assert far == []
    with pytest.raises(vk.IncompatibleOperatorError, match="ranks by cosine distance, not l2"):
        vk.nearest(Doc.embedding, q, k=5, via=mirror, distance="l2")


def test_nearest_via_reuses_its_statement_shape_without_leaking_values(env: SyncEnv) -> None:
    """Statements of the same shape share one template; each carries its own keys and distances."""
    Doc = env.Doc
    env.seed(40)
    mirror = memory_mirror(env)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    queries = [vec(100 + i, 3) for i in range(6)]
    statements = [vk.nearest(Doc.embedding, q, k=7, via=mirror) for q in queries]  # built before any runs
    for q, stmt in zip(queries, statements):
        got = env.orm(lambda s, stmt=stmt: [(d.id, dist) for d, dist in s.execute(stmt)])
        want = mirror.search(q, k=7)
        assert [pk for pk, _ in got] == [pk for pk, _ in want]
        assert np.allclose([d for _, d in got], [d for _, d in want], atol=1e-6)
    assert len({tuple(pk for pk, _ in mirror.search(q, k=7)) for q in queries}) > 1  # the queries differ


def test_nearest_via_with_string_keys(sqlite_env: SyncEnv) -> None:
    class Base(DeclarativeBase):
        pass

    class Tag(Base):
        __tablename__ = "via_tags"
        slug: Mapped[str] = mapped_column(sa.String(40), primary_key=True)
        embedding = mapped_column(vk.Vector(8))

    engine = sqlite_env.backend.engine
    Base.metadata.create_all(engine)
    try:
        rng = np.random.default_rng(3)
        rows = {f"tag-{i:03d}'x": rng.standard_normal(8).astype(np.float32) for i in range(25)}
        mirror = vk.MemoryMirror(Tag.embedding)
        with Session(engine) as s:
            s.add_all(Tag(slug=k, embedding=v) for k, v in rows.items())
            s.commit()
            vks.rebuild(s, mirror, progress=False)
            q = rng.standard_normal(8).astype(np.float32)
            got = [(t.slug, d) for t, d in s.execute(vk.nearest(Tag.embedding, q, k=6, via=mirror))]
        keys = list(rows)
        matrix = np.stack([rows[k] for k in keys])
        cos = 1 - matrix @ q / (np.linalg.norm(matrix, axis=1) * np.linalg.norm(q))
        order = np.argsort(cos)[:6]
        assert [slug for slug, _ in got] == [keys[i] for i in order]
        assert np.allclose([d for _, d in got], cos[order], atol=1e-5)
    finally:
        Base.metadata.drop_all(engine)


def test_bulk_update_with_bound_parameters_in_its_criteria(env: SyncEnv) -> None:
    Doc = env.Doc
    env.seed(5)
    mirror = memory_mirror(env)
    env.attach([mirror])
    stmt = sa.update(Doc).where(Doc.id == sa.bindparam("target")).values(embedding=vec(0, 8))
    env.orm(lambda s: (s.execute(stmt, {"target": 4}), s.commit()))
    assert mirror.written_ids() == {4}
    np.testing.assert_allclose(mirror.get([4])[4], vec(0, 8), atol=1e-6)


def test_session_joined_to_an_outer_transaction(sync_env: SyncEnv) -> None:
    """Session(bind=connection) inside a transaction it does not own (the test-fixture pattern)."""
    env = sync_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    with env.backend.engine.connect() as conn:
        outer = conn.begin()
        session = Session(bind=conn)  # joins the outer transaction without owning it
        with vks.attach(session, [mirror]):
            session.add(Doc(id=1, embedding=vec(1)))
            session.commit()  # commits nothing: the outer transaction is still open
            assert mirror.ids() == {1}  # read on that connection, where the row is visible
        session.close()
        outer.rollback()
    assert env.committed() == {}
    report = env.orm(lambda s: vks.verify(s, mirror, repair=True))  # documented: verify repairs it
    assert report.extra == [1] and mirror.ids() == set()


def test_faiss_writes_in_the_worker_thread_keep_the_callers_openmp_threads(sqlite_env: SyncEnv) -> None:
    """vk.attach runs mirror writes in a worker thread (for its timeout); Faiss's OpenMP thread
    count there must be the committing thread's, not the process default a new thread starts at."""
    faiss = pytest.importorskip("faiss")
    import threading

    Doc = sqlite_env.Doc
    mirror = vk.FaissMirror(Doc.embedding, kind="hnsw", metadata_columns=["category"])
    seen: list[tuple[str, int]] = []
    real = mirror.upsert

    def upsert(*args: object, **kwargs: object) -> int:
        seen.append((threading.current_thread().name, faiss.omp_get_max_threads()))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    mirror.upsert = upsert  # type: ignore[method-assign]
    sqlite_env.attach([mirror])
    before = faiss.omp_get_max_threads()
    wanted = before + 1  # a count no new thread starts with by default
    try:
        faiss.omp_set_num_threads(wanted)

        def insert(s: Session) -> None:
            s.add_all([Doc(id=i, category="a", embedding=vec(i)) for i in range(1, 11)])
            s.commit()

        sqlite_env.orm(insert)
    finally:
        faiss.omp_set_num_threads(before)
    assert seen and all(name.startswith("vectorknobs-mirror-write") for name, _ in seen), seen
    assert [threads for _, threads in seen] == [wanted] * len(seen)
    assert mirror.ids() == set(range(1, 11))
