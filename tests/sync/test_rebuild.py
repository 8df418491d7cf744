"""vk.rebuild builds a new generation from SQL, keeps versions and tombstones, replays the outbox and swaps.

During the build the live mirror keeps answering searches, and changes committed meanwhile reach
the new generation before the swap. Checked against memory, Faiss (flat and HNSW), Chroma and
Elasticsearch (the test-only stand-in, or ``VECTORKNOBS_ES_URL``) on SQLite and PostgreSQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks
from sqlalchemy_vectorknobs.exc import MirrorError

from ..mirrors.es_standin import StandinServer
from .conftest import SyncEnv, assert_matches, vec

KINDS = ["memory", "faiss-flat", "faiss-hnsw", "chroma", "elasticsearch"]


@pytest.fixture(scope="module")
def es_url() -> Iterator[str]:
    env = os.environ.get("VECTORKNOBS_ES_URL")
    if env:
        yield env
        return
    with StandinServer() as server:
        yield server.url


def _make(kind: str, env: SyncEnv, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    column = env.Doc.embedding
    if kind == "memory":
        return vk.MemoryMirror(column, metadata_columns=["category"])
    if kind == "chroma":
        return vk.ChromaMirror(column, path=tmp_path / "chroma", metadata_columns=["category"])
    if kind == "elasticsearch":
        return vk.ElasticsearchMirror(column, url=request.getfixturevalue("es_url"), metadata_columns=["category"])
    return vk.FaissMirror(column, path=tmp_path / "doc.vkfaiss", kind=kind.split("-")[1], m=8, metadata_columns=["category"])


@pytest.fixture(params=KINDS)
def mirror(request: pytest.FixtureRequest, sync_env: SyncEnv, tmp_path: Path) -> Iterator[Any]:
    m = _make(request.param, sync_env, tmp_path, request)
    yield m
    if not m.closed:
        if m.backend == "elasticsearch":
            m.clear()  # keep a real cluster tidy
        m.close()


def _seed(env: SyncEnv) -> None:
    """30 rows through the ORM, then row 8 deleted through the ORM (a tombstone in the mirror)."""
    Doc = env.Doc

    def go(s: Session) -> None:
        s.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in range(1, 31)])
        s.commit()
        s.delete(s.get(Doc, 8))
        s.commit()

    env.orm(go)


def _raw_sql_drift(env: SyncEnv) -> None:
    t = env.table

    def go(c: sa.Connection) -> None:
        c.execute(t.update().where(t.c.id == 5).values(embedding=vec(5, 9)))
        c.execute(t.delete().where(t.c.id == 6))
        c.execute(t.insert(), [{"id": 40, "category": "a", "embedding": vec(40)}])

    env.run(go)


def test_rebuild_swaps_in_a_new_generation_while_the_old_one_serves(
    sync_env: SyncEnv, mirror: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = sync_env
    env.attach([mirror], outbox=True)
    _seed(env)
    tombstone = mirror.recorded_versions([8])
    assert set(tombstone) == {8} and 8 not in mirror.ids()
    _raw_sql_drift(env)
    assert not env.orm(lambda s: vks.verify(s, mirror)).ok

    seen: dict[str, Any] = {}
    begin = mirror.begin_generation

    def watched_begin() -> Any:
        generation = begin()
        write = generation.write_generation

        def first_write(upserts: Any, deletes: Any) -> None:
            if not seen:  # half-way: the live mirror still answers, and a commit arrives
                seen["count"] = mirror.count()
                seen["search"] = mirror.search(vec(1), k=3)
                seen["generation"] = generation

                def change(s: Session) -> None:
                    s.get(env.Doc, 7).embedding = vec(7, 3)
                    s.get(env.Doc, 9).category = "c"
                    s.commit()

                env.orm(change)
            write(upserts, deletes)

        monkeypatch.setattr(generation, "write_generation", first_write)
        return generation

    monkeypatch.setattr(mirror, "begin_generation", watched_begin)
    loaded = env.orm(lambda s: vks.rebuild(s, mirror, batch_size=8, progress=False))
    assert loaded == 29  # 30 - 8 (ORM delete) - 6 (raw delete) + 40 (raw insert)
    assert seen["count"] == 29 and len(seen["search"]) == 3 and seen["search"][0][0] == 1
    assert env.orm(lambda s: vks.verify(s, mirror)).ok
    assert_matches(env, mirror, metadata=mirror.backend in ("memory", "faiss"))
    assert mirror.recorded_versions([8]) == tombstone  # the tombstone came along ...
    assert mirror.upsert([8], [vec(8, 1)], versions=[tombstone[8] - 1]) == 0  # ... and still refuses older writes
    assert mirror.written_since() == []  # no rebuild is running any more

    if mirror.backend == "faiss":
        mirror.close()
        with vk.FaissMirror(env.Doc.embedding, path=mirror.path, kind=mirror.kind, m=8, metadata_columns=["category"]) as again:
            assert_matches(env, again)
    elif mirror.backend == "chroma":
        names = {c.name for c in mirror.client.list_collections()}
        assert mirror.collection.name in names and not any("_vk_rebuild" in n or "_vk_retired" in n for n in names)
    elif mirror.backend == "elasticsearch":
        assert mirror.concrete_index == f"{mirror.index}_g2"
        assert sorted(mirror.client.indices.get_alias(name=mirror.index).body) == [f"{mirror.index}_g2"]


def test_rebuild_replays_the_outbox(sync_env: SyncEnv, mirror: Any) -> None:
    env = sync_env
    env.attach([mirror], outbox=True, drain_after_commit=False)  # a worker would apply these
    _seed(env)
    assert mirror.count() == 0 and env.outbox_rows(mirror)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    assert env.outbox_rows(mirror) == []  # drained into the old generation, copied into the new one
    assert mirror.recorded_versions([8])  # the delete's tombstone is there
    assert_matches(env, mirror, metadata=mirror.backend in ("memory", "faiss"))


def test_a_failed_rebuild_leaves_the_live_mirror_alone(sync_env: SyncEnv, mirror: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    env = sync_env
    env.attach([mirror], outbox=True)
    _seed(env)
    begin = mirror.begin_generation
    made: list[Any] = []

    def failing_begin() -> Any:
        generation = begin()
        made.append(generation)

        def broken(*args: Any) -> None:
            raise MirrorError("disk full")

        monkeypatch.setattr(generation, "write_generation", broken)
        return generation

    monkeypatch.setattr(mirror, "begin_generation", failing_begin)
    with pytest.raises(MirrorError, match="disk full"):
        env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    assert made and made[0].closed  # the half-built generation was dropped
    assert_matches(env, mirror, metadata=False)
    if mirror.backend == "chroma":
        assert not any("_vk_rebuild" in c.name for c in mirror.client.list_collections())
    if mirror.backend == "elasticsearch":
        assert not mirror.client.indices.exists(index=f"{mirror.index}_g2")
    monkeypatch.setattr(mirror, "begin_generation", begin)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))  # the next one works
    assert env.orm(lambda s: vks.verify(s, mirror)).ok


class InPlaceMirror(vk.MemoryMirror):
    """A mirror without generations (like a third-party one): rebuilt in place."""

    def _new_generation(self) -> None:
        return None


def test_mirrors_without_generations_are_rebuilt_in_place(sqlite_env: SyncEnv) -> None:
    env = sqlite_env
    env.seed(20)
    mirror = InPlaceMirror(env.Doc.embedding, metadata_columns=["category"])
    mirror.upsert([99], [vec(99)])  # not in SQL: cleared by the rebuild
    assert env.orm(lambda s: vks.rebuild(s, mirror, progress=False)) == 20
    assert_matches(env, mirror)


def test_one_rebuild_at_a_time(sqlite_env: SyncEnv) -> None:
    env = sqlite_env
    mirror = vk.MemoryMirror(env.Doc.embedding)
    generation = mirror.begin_generation()
    with pytest.raises(vk.InvalidMirrorError, match="already being rebuilt"):
        mirror.begin_generation()
    with pytest.raises(vk.InvalidMirrorError, match="is being rebuilt"):
        mirror.clear()
    mirror.upsert([1], [vec(1)])
    assert mirror.written_since() == [1] and mirror.written_since() == []
    assert not mirror.end_generation(generation, swap=False)
    assert generation.closed and mirror.count() == 1
