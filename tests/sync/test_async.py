"""AsyncSession on asyncpg and aiosqlite, through the async API itself (``await session.commit()``).

Mirror writes must run off the event loop: the wrapper records the thread of every write.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from .conftest import Recording, SyncEnv, assert_matches, memory_mirror, vec


def test_async_session_changes_reach_the_mirror_off_the_loop(async_env: SyncEnv) -> None:
    env = async_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror])

    async def go(session: Any) -> int:
        session.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in range(1, 11)])
        await session.commit()
        doc = await session.get(Doc, 3)
        doc.embedding = vec(3, 1)
        await session.delete(await session.get(Doc, 4))
        await session.execute(sa.update(Doc).where(Doc.id > 8).values(category="c"))
        await session.execute(sa.delete(Doc).where(Doc.id == 1))
        await session.commit()
        return threading.get_ident()

    loop_thread = env.aio(go)
    assert_matches(env, mirror)
    assert mirror.written_ids() == set(range(1, 11))
    assert mirror.threads and loop_thread not in mirror.threads


def test_async_savepoints(async_env: SyncEnv) -> None:
    env = async_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror])

    async def go(session: Any) -> None:
        session.add(Doc(id=1, embedding=vec(1)))
        await session.flush()
        nested = await session.begin_nested()
        session.add(Doc(id=2, embedding=vec(2)))
        await session.flush()
        await nested.rollback()
        async with session.begin_nested():
            session.add(Doc(id=3, embedding=vec(3)))
        await session.commit()

    env.aio(go)
    assert set(env.committed()) == {1, 3}
    assert mirror.written_ids() == {1, 3}
    assert_matches(env, mirror)


def test_async_commit_raises_mirror_sync_error_and_data_stays(async_env: SyncEnv) -> None:
    env = async_env
    Doc = env.Doc
    broken = Recording(vk.MemoryMirror(Doc.embedding, name="broken"), failing=True)
    env.attach([broken])

    async def go(session: Any) -> None:
        session.add(Doc(id=1, embedding=vec(1)))
        with pytest.raises(vks.MirrorSyncError, match="was committed"):
            await session.commit()
        session.add(Doc(id=2, embedding=vec(2)))
        broken.failing = False
        await session.commit()

    env.aio(go)
    assert set(env.committed()) == {1, 2}
    assert broken.inner.ids() == {2}


def test_async_outbox_and_adrain(async_env: SyncEnv) -> None:
    env = async_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True, drain_after_commit=False)

    async def go(session: Any) -> vks.DrainReport:
        session.add_all([Doc(id=i, embedding=vec(i)) for i in range(1, 6)])
        await session.commit()
        await session.execute(sa.update(Doc).where(Doc.id < 3).values(embedding=vec(0, 1)))
        await session.commit()
        assert mirror.writes == 0
        return await vks.adrain(env.backend.engine, [mirror])

    report = env.aio(go)
    assert (report.applied, report.remaining) == (7, 0)
    assert_matches(env, mirror)
    np.testing.assert_allclose(mirror.get([1])[1], vec(0, 1), atol=1e-6)
    with pytest.raises(vk.InvalidMirrorError, match="adrain"):
        vks.drain(env.backend.engine, [mirror])  # an async engine outside the event loop


def test_attach_to_one_async_session_and_its_outbox_drain_after_commit(async_env: SyncEnv) -> None:
    env = async_env
    Doc = env.Doc
    mirror = memory_mirror(env)

    async def go(session: Any) -> None:
        with vks.attach(session, [mirror], outbox=True):
            session.add(Doc(id=1, category="a", embedding=vec(1)))
            await session.commit()
        session.add(Doc(id=2, embedding=vec(2)))  # detached: not mirrored
        await session.commit()

    env.aio(go)
    assert mirror.ids() == {1}
    assert env.outbox_rows(mirror) == []
