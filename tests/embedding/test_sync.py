"""Embedding sync on real databases, through Session (SQLite, psycopg 3) and AsyncSession (asyncpg, aiosqlite).

Vectors are checked against the embedder run here on the text read back from the database, never
against what the plugin reports.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique
from .conftest import DIM, Counting, drift, make_model, reference, stale_ids


def _seed(env: Backend, Doc: type, n: int, *, body: bool = True) -> None:
    def go(s: Session) -> None:
        s.add_all([Doc(id=i, title=f"title {i}", body=f"body of {i}" if body and i % 3 else None) for i in range(n)])
        s.commit()

    env.orm(go)


def test_one_flush_of_1000_rows_calls_the_embedder_once_per_batch(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb, batch_size=64)
    env.create(Doc.metadata)
    _seed(env, Doc, 1000)
    assert emb.calls == math.ceil(1000 / 64)
    assert sorted(len(b) for b in emb.batches) == [1000 - 64 * 15] + [64] * 15
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_only_changed_source_fields_are_embedded(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb)
    env.create(Doc.metadata)
    _seed(env, Doc, 50)
    emb.reset()

    def edit_title(s: Session) -> None:
        s.get(Doc, 7).title = "a new title"
        s.commit()

    env.orm(edit_title)
    assert emb.batches == [["a new title\nbody of 7"]]
    emb.reset()

    def edit_other(s: Session) -> None:
        s.get(Doc, 8).other = 42
        s.commit()

    env.orm(edit_other)
    assert emb.calls == 0

    def same_value_and_expired(s: Session) -> None:
        d = s.get(Doc, 10)
        d.title = "title 10"  # same value on a loaded attribute
        s.flush()
        s.expire(d)
        d.body = "body of 10"  # same value on an expired attribute: the hash decides
        s.commit()

    env.orm(same_value_and_expired)
    assert emb.calls == 0
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_null_and_empty_sources_store_no_vector_and_are_not_stale(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb)
    env.create(Doc.metadata)

    def go(s: Session) -> None:
        s.add_all([Doc(id=1, title=None, body=None), Doc(id=2, title="", body=None), Doc(id=3, title="x", body=None)])
        s.commit()
        s.get(Doc, 3).title = None
        s.commit()

    env.orm(go)
    assert emb.texts == ["x"]
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())
    rows = env.orm(lambda s: s.execute(sa.select(Doc.id, Doc.embedding).order_by(Doc.id)).all())
    assert [r.embedding for r in rows] == [None, None, None]


def test_template_and_companion_columns(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb, template="Title: {title}\n\n{body}")
    env.create(Doc.metadata)

    def go(s: Session) -> tuple[str, str, object]:
        s.add(Doc(id=1, title="Cats", body=None))
        s.commit()
        row = s.execute(sa.select(Doc.embedding_model, Doc.embedding_hash, Doc.embedding)).one()
        return row

    model, digest, vector = env.orm(go)
    assert emb.texts == ["Title: Cats\n\n"]
    assert model.startswith(f"{emb.name}@{emb.version}#t")
    import hashlib

    assert digest == hashlib.sha256(b"Cats").hexdigest()
    assert np.allclose(vector, vk.HashingEmbedder(16).embed(["Title: Cats\n\n"])[0])


@pytest.mark.parametrize("mode", ["inline", "deferred"])
def test_bulk_update_of_100_rows_never_leaves_silent_drift(env: Backend, mode: str) -> None:
    emb = Counting()
    Doc = make_model(emb, mode=mode)
    env.create(Doc.metadata)
    _seed(env, Doc, 300)
    if mode == "deferred":
        env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())
    emb.reset()

    def bulk(s: Session) -> None:
        s.execute(sa.update(Doc).where(Doc.id < 100).values(title=Doc.title + " (edited)"))
        s.execute(sa.update(Doc), [{"id": 200 + i, "body": f"by key {i}"} for i in range(5)])
        s.commit()

    env.orm(bulk)
    wrong, listed = env.orm(lambda s: drift(s, Doc, emb))
    assert wrong <= listed  # every disagreeing row is listed as stale
    if mode == "inline":
        assert listed == set()
        assert len(emb.texts) == 105 and all(len(b) <= 256 for b in emb.batches)
    else:
        assert emb.calls == 0
        assert listed == wrong == set(range(100)) | set(range(200, 205))
    report = env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    assert report.ok
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_bulk_insert_statements_embed_or_stay_stale(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb, batch_size=10)
    env.create(Doc.metadata)

    def go(s: Session) -> None:
        s.execute(sa.insert(Doc), [{"id": i, "title": f"bulk {i}"} for i in range(25)])
        s.execute(sa.insert(Doc).values(id=100, title="one row", body="values()"))
        s.execute(sa.insert(Doc).values(id=101, title=sa.func.upper("sql expression")))
        s.commit()

    env.orm(go)
    assert emb.calls == 3 + 1
    wrong, listed = env.orm(lambda s: drift(s, Doc, emb))
    assert wrong == listed == {101}
    env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_raw_sql_updates_are_found_by_stale(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb)
    env.create(Doc.metadata)
    _seed(env, Doc, 20)
    table = Doc.__table__.name
    env.run(lambda c: c.exec_driver_sql(f"UPDATE {table} SET body = 'changed behind the ORM' WHERE id IN (4, 5)"))
    assert env.orm(lambda s: drift(s, Doc, emb)) == ({4, 5}, {4, 5})
    # stale() for one primary key: the sync check
    assert env.orm(lambda s: s.scalars(vk.stale(Doc).where(Doc.id == 4)).all())[0].id == 4


def test_version_bump_lists_every_row_and_interrupted_backfill_resumes(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb, batch_size=25)
    env.create(Doc.metadata)
    _seed(env, Doc, 200)
    emb._version = "2"  # the model was upgraded
    assert env.orm(lambda s: stale_ids(s, Doc)) == set(range(200))

    emb.reset()
    emb.fail_on = lambda texts: emb.calls == 4  # the fifth batch dies

    class Interrupted(BaseException):
        pass

    def interrupt(texts: list[str]) -> bool:
        if emb.calls == 4:
            raise Interrupted()
        return False

    emb.fail_on = interrupt
    with pytest.raises(Interrupted):
        env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    finished = set(emb.texts)
    assert len(finished) == 100
    assert env.orm(lambda s: stale_ids(s, Doc)) == set(range(100, 200))

    emb.fail_on = None
    emb.reset()
    report = env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    assert report.embedded == 100 and report.batches == 4 and report.ok
    assert not finished & set(emb.texts)  # no finished batch was embedded again
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())
    models = env.orm(lambda s: set(s.scalars(sa.select(Doc.embedding_model))))
    assert models == {f"{emb.name}@2"}


def test_backfill_reports_a_failing_batch_and_continues(env: Backend) -> None:
    emb = Counting(fail_on=lambda texts: any(t.startswith("title 30\n") or t == "title 30" for t in texts))
    Doc = make_model(emb, batch_size=20, mode="deferred")
    env.create(Doc.metadata)
    _seed(env, Doc, 100)
    assert emb.calls == 0
    report = env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    assert [(f.first_key, f.last_key, f.rows) for f in report.failures] == [(20, 39, 20)]
    assert "model server unavailable" in report.failures[0].error
    assert report.embedded == 80
    assert env.orm(lambda s: stale_ids(s, Doc)) == set(range(20, 40))


def test_embedder_failure_under_raise_writes_nothing(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb)
    env.create(Doc.metadata)
    _seed(env, Doc, 10)
    before = env.orm(lambda s: s.execute(sa.select(Doc.id, Doc.title, Doc.embedding_hash).order_by(Doc.id)).all())
    emb.fail_on = lambda texts: True

    def go(s: Session) -> None:
        s.get(Doc, 1).title = "edited"
        s.add(Doc(id=99, title="new"))
        with pytest.raises(vk.EmbeddingError, match="model server unavailable"):
            s.commit()
        s.rollback()

    env.orm(go)
    after = env.orm(lambda s: s.execute(sa.select(Doc.id, Doc.title, Doc.embedding_hash).order_by(Doc.id)).all())
    assert after == before


def test_embedder_failure_under_mark_stale_commits_the_text(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb, on_error="mark_stale")
    env.create(Doc.metadata)
    _seed(env, Doc, 10)
    emb.fail_on = lambda texts: True

    def go(s: Session) -> None:
        s.get(Doc, 1).title = "edited"
        s.add(Doc(id=99, title="new"))
        s.commit()
        s.execute(sa.update(Doc).where(Doc.id == 2).values(title="bulk edited"))
        s.commit()

    env.orm(go)
    titles = env.orm(lambda s: dict(s.execute(sa.select(Doc.id, Doc.title)).all()))
    assert titles[99] == "new" and titles[1] == "edited" and titles[2] == "bulk edited"
    wrong, listed = env.orm(lambda s: drift(s, Doc, emb))
    assert wrong == listed == {1, 2, 99}
    emb.fail_on = None
    env.orm(lambda s: vk.backfill(s, Doc, progress=False))
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_hand_set_vectors_are_kept_but_listed_until_labelled(env: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb)
    env.create(Doc.metadata)
    mine = np.linspace(-1, 1, 16, dtype=np.float32)

    def go(s: Session) -> None:
        s.add(Doc(id=1, title="given", embedding=mine))
        s.commit()

    env.orm(go)
    assert emb.calls == 0
    got = env.orm(lambda s: s.scalar(sa.select(Doc.embedding)))
    assert np.array_equal(got, mine)
    assert env.orm(lambda s: stale_ids(s, Doc)) == {1}


def test_deferred_mode_and_vectorizer(env: Backend) -> None:
    emb = Counting(fail_on=lambda texts: "poison" in "".join(texts))
    Doc = make_model(emb, mode="deferred", batch_size=16)
    env.create(Doc.metadata)
    _seed(env, Doc, 60)

    def poison(s: Session) -> None:
        s.add(Doc(id=500, title="poison pill"))
        s.commit()

    env.orm(poison)
    assert emb.calls == 0
    assert env.orm(lambda s: stale_ids(s, Doc)) == set(range(60)) | {500}
    if env.is_async:
        return  # the Vectorizer is a thread with its own sync sessions; the sync backends cover it
    factory = lambda: Session(env.engine)
    worker = vk.Vectorizer(factory, Doc, max_attempts=2, backoff=0.0)
    worker.run(until_idle=True)
    worker.run(until_idle=True)
    assert worker.embedded == 60
    assert list(worker.errors) == [500] and "model server unavailable" in worker.errors[500]
    wrong, listed = env.orm(lambda s: drift(s, Doc, emb))
    assert wrong == listed == {500}


def test_vectorizer_thread_follows_new_rows(sqlite_backend: Backend) -> None:
    emb = Counting()
    Doc = make_model(emb, mode="deferred")
    sqlite_backend.create(Doc.metadata)
    worker = vk.Vectorizer(lambda: Session(sqlite_backend.engine), Doc, poll_interval=0.05).start()
    try:
        with Session(sqlite_backend.engine) as s:
            s.add_all([Doc(id=i, title=f"late {i}") for i in range(30)])
            s.commit()
        import time

        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and sqlite_backend.orm(lambda s: stale_ids(s, Doc)):
            time.sleep(0.05)
    finally:
        worker.stop(timeout=10)
    assert sqlite_backend.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_reembed_swaps_in_one_transaction_and_can_be_restored(env: Backend) -> None:
    old = Counting(seed=0)
    Doc = make_model(old)
    env.create(Doc.metadata)
    _seed(env, Doc, 40)
    new = Counting(seed=7)

    job = env.orm(lambda s: vk.reembed(s, Doc, new, progress=False, swap=False))
    # Before the swap, queries still see the old model's vectors.
    assert env.orm(lambda s: drift(s, Doc, old)) == (set(), set())
    env.orm(lambda s: _edit(s, Doc, 3, "edited during the switch"))
    job.session = None  # the job's session was closed; hand it a new one for each step

    def swap(s: Session) -> None:
        job.session = s
        job.swap()

    env.orm(swap)
    assert Doc.embedding.property.columns[0].info["vectorknobs.embedding"].embedder is new
    assert env.orm(lambda s: drift(s, Doc, new)) == (set(), set())

    def restore(s: Session) -> None:
        job.session = s
        job.restore()

    env.orm(restore)
    assert env.orm(lambda s: drift(s, Doc, old)) == (set(), set())
    env.orm(swap)

    def finish(s: Session) -> None:
        job.session = s
        job.finish()

    env.orm(finish)
    cols = env.run(lambda c: {col["name"] for col in sa.inspect(c).get_columns(Doc.__table__.name)})
    assert not any("__shadow" in c for c in cols)
    assert env.orm(lambda s: drift(s, Doc, new)) == (set(), set())


def _edit(s: Session, Doc: type, pk: int, title: str) -> None:
    s.get(Doc, pk).title = title  # type: ignore[union-attr]
    s.commit()


def test_reembed_refuses_another_dimension(env: Backend) -> None:
    Doc = make_model(Counting())
    env.create(Doc.metadata)
    with pytest.raises(vk.DimensionMismatchError, match="needs a new column"):
        env.orm(lambda s: vk.reembed(s, Doc, vk.HashingEmbedder(32), progress=False))


def test_async_embedder_is_awaited_on_async_sessions(env: Backend) -> None:
    seen: list[str] = []
    ref = vk.HashingEmbedder(16)

    def sync(texts: list[str]) -> np.ndarray:
        seen.append("sync")
        return ref.embed(texts)

    async def asynchronous(texts: list[str]) -> np.ndarray:
        seen.append("async")
        return ref.embed(texts)

    emb = vk.CallableEmbedder(sync, 16, name=ref.name, version=ref.version, afn=asynchronous)
    Doc = make_model(emb)
    env.create(Doc.metadata)
    _seed(env, Doc, 5)
    assert seen == (["async"] if env.is_async else ["sync"])
    assert env.orm(lambda s: drift(s, Doc, ref)) == (set(), set())


def test_native_async_session_flow(async_backend: Backend) -> None:
    env = async_backend
    emb = Counting()
    Doc = make_model(emb, batch_size=7)
    env.create(Doc.metadata)

    async def go(s: object) -> int:
        s.add_all([Doc(id=i, title=f"async {i}") for i in range(20)])  # type: ignore[attr-defined]
        await s.commit()  # type: ignore[attr-defined]
        await s.execute(sa.update(Doc).where(Doc.id < 3).values(body="bulk"))  # type: ignore[attr-defined]
        await s.commit()  # type: ignore[attr-defined]
        emb._version = "3"
        report = await vk.abackfill(s, Doc, progress=False)
        return report.embedded

    assert env.aio(go) == 20
    assert emb.calls == 3 + 1 + 3
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())


def test_backfill_shows_a_progress_bar(sqlite_backend: Backend, capsys: pytest.CaptureFixture[str]) -> None:
    emb = Counting()
    Doc = make_model(emb, mode="deferred")
    sqlite_backend.create(Doc.metadata)
    _seed(sqlite_backend, Doc, 30)
    report = sqlite_backend.orm(lambda s: vk.backfill(s, Doc, batch_size=10, progress=True))
    err = capsys.readouterr().err
    assert report.embedded == 30 and report.batches == 3
    assert f"backfill {Doc.__table__.name}.embedding" in err and "30/30" in err


def test_bulk_statements_on_columns_named_apart_from_their_attributes(env: Backend) -> None:
    """Every bulk path, on a model whose attribute keys are not its column keys; Core statements
    through the session are embedded, Core on a connection of its own leaves its row stale."""
    emb = Counting()

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = unique("eapart")
        id: Mapped[int] = mapped_column("doc_id", sa.Integer, primary_key=True, autoincrement=False)
        title: Mapped[str | None] = mapped_column("title_col", sa.String(200))
        body: Mapped[str | None] = mapped_column("body_col", sa.Text)
        embedding = vk.embedded_column(vk.Vector(DIM), source=("title_col", "body_col"), embedder=emb, name="vec_col")

    env.create(Doc.metadata)
    t = Doc.__table__

    def go(s: Session) -> list[tuple[int, np.ndarray | None]]:
        s.execute(sa.insert(Doc), [{"id": i, "title": f"bulk {i}"} for i in range(10)])
        s.execute(sa.insert(Doc), {"id": 10, "title": "one dict", "body": "b"})
        s.execute(sa.insert(Doc).values(id=11, title="values()"))
        s.execute(t.insert(), [{"doc_id": 12, "title_col": "Core insert"}, {"doc_id": 13, "title_col": "Core insert 2"}])
        s.commit()
        held = [s.get(Doc, 2), s.get(Doc, 7)]
        assert all(d is not None and d.embedding is not None for d in held)
        s.execute(sa.update(Doc).where(Doc.id < 4).values(title=Doc.title + " (edited)"))
        s.execute(sa.update(Doc), [{"id": 7, "body": "by key"}, {"id": 8, "body": "by key too"}])
        s.execute(t.update().where(t.c.doc_id == 12).values(body_col="Core update"))
        # Objects held by the session see the re-embedded vectors (their vector attributes expired).
        seen = [(d.id, d.embedding) for d in held]
        s.commit()
        return seen

    seen = env.orm(go)
    env.run(lambda c: c.execute(t.update().where(t.c.doc_id == 13).values(body_col="Core, no session")))

    def read(s: Session) -> tuple[dict[int, tuple[str | None, str | None, np.ndarray | None]], set[int]]:
        rows = {r.doc_id: (r.title_col, r.body_col, r.vec_col) for r in s.execute(sa.select(t))}
        listed = {r[0] for r in s.execute(sa.select(t.c.doc_id).where(vk.stale_condition(Doc)))}
        return rows, listed

    rows, listed = env.orm(read)
    assert rows[3][0] == "bulk 3 (edited)" and rows[7][1] == "by key" and rows[12][1] == "Core update"
    wrong = set()
    for pk, (title, body, got) in rows.items():
        want = reference(emb, title, body)
        if got is None or want is None or not np.allclose(got, want, atol=1e-6):
            wrong.add(pk)
    assert wrong == listed == {13}
    for pk, vector in seen:
        assert vector is not None and np.allclose(vector, reference(emb, *rows[pk][:2]), atol=1e-6)


def test_bulk_update_re_embeds_a_row_committed_between_its_select_and_its_update(request: pytest.FixtureRequest) -> None:
    """PostgreSQL, READ COMMITTED: a row another transaction commits after the keys were selected
    is still changed by the UPDATE, and must be re-embedded too."""
    from ..conftest import _get_backend

    env = _get_backend(request, "pg-psycopg")
    emb = Counting()
    Doc = make_model(emb)
    env.create(Doc.metadata)
    _seed(env, Doc, 6)
    table = Doc.__table__.name
    injected: list[int] = []

    def commit_a_row_first(conn: sa.Connection, cursor: object, statement: str, *args: object) -> None:
        if statement.startswith(f"UPDATE {table} SET title") and not injected:
            injected.append(1)
            with Session(env.engine) as other:  # another transaction, committed before the UPDATE runs
                other.add(Doc(id=6, title="inserted meanwhile"))
                other.commit()

    def go(s: Session) -> None:
        sa.event.listen(s.connection(), "before_cursor_execute", commit_a_row_first)
        s.execute(sa.update(Doc).where(Doc.id >= 4).values(title="bulk title"))
        s.commit()

    env.orm(go)
    assert injected
    rows = env.orm(lambda s: {d.id: d.title for d in s.scalars(sa.select(Doc))})
    assert rows[6] == rows[5] == "bulk title"  # the UPDATE changed the row committed in between
    assert env.orm(lambda s: drift(s, Doc, emb)) == (set(), set())
