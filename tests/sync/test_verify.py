"""verify finds what session sync cannot see (raw SQL); rebuild and repair put the mirror right."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import sync as vks

from .conftest import SyncEnv, assert_matches, memory_mirror, vec


def _raw_sql_drift(env: SyncEnv) -> None:
    """Changes made behind the ORM's back, on a plain connection: session sync never sees them."""
    t = env.table

    def go(c: sa.Connection) -> None:
        c.execute(t.insert(), [{"id": 100, "category": "a", "embedding": vec(100)}])  # missing
        c.execute(t.delete().where(t.c.id.in_([1, 2])))  # extra
        c.execute(t.update().where(t.c.id == 3).values(embedding=vec(3, 1)))  # mismatched vector
        c.execute(t.update().where(t.c.id == 4).values(category="zz"))  # mismatched metadata
        c.execute(t.update().where(t.c.id == 5).values(embedding=None))  # extra: no vector any more
        c.execute(t.update().where(t.c.id == 6).values(note="irrelevant"))  # no drift

    env.run(go)


def test_verify_finds_raw_sql_drift_and_rebuild_repairs_it(env: SyncEnv) -> None:
    env.seed(30)
    mirror = memory_mirror(env)
    env.attach([mirror])
    loaded = env.orm(lambda s: vks.rebuild(s, mirror, batch_size=7, progress=False))
    assert loaded == 30
    assert env.orm(lambda s: vks.verify(s, mirror)).ok
    _raw_sql_drift(env)

    report = env.orm(lambda s: vks.verify(s, mirror, batch_size=8))
    assert (report.missing, report.extra, report.mismatched) == ([100], [1, 2, 5], [3, 4])
    assert not report.ok and report.checked == 29 and report.metadata_checked
    assert "3 extra" in str(report) and "drifted" in str(report)

    assert env.orm(lambda s: vks.rebuild(s, mirror, batch_size=8)) == 28  # progress bar on
    assert_matches(env, mirror)
    assert env.orm(lambda s: vks.verify(s, mirror)).ok


def test_verify_repair_rewrites_only_the_drifted_rows(env: SyncEnv) -> None:
    env.seed(30)
    mirror = memory_mirror(env)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    _raw_sql_drift(env)
    mirror.reset()
    report = env.orm(lambda s: vks.verify(s, mirror, repair=True))
    assert report.repaired and "(repaired)" in str(report)
    assert mirror.written_ids() == {100, 1, 2, 5, 3, 4}
    assert_matches(env, mirror)
    assert env.orm(lambda s: vks.verify(s, mirror)).ok


def test_verify_tolerance_and_argument_checks(sqlite_env: SyncEnv) -> None:
    env = sqlite_env
    env.seed(3)
    mirror = memory_mirror(env)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))
    nudged = vec(1) + np.float32(5e-6)
    mirror.inner.upsert([1], [nudged], [{"category": "b"}])
    assert env.orm(lambda s: vks.verify(s, mirror)).ok  # within 1e-5
    assert env.orm(lambda s: vks.verify(s, mirror, tolerance=1e-7)).mismatched == [1]
    with pytest.raises(vk.InvalidMirrorError, match="batch_size=0"):
        env.orm(lambda s: vks.verify(s, mirror, batch_size=0))
    with pytest.raises(vk.InvalidMirrorError, match="is not a mirror"):
        env.orm(lambda s: vks.rebuild(s, "mirror"))


def test_verify_and_rebuild_under_an_async_session(async_env: SyncEnv) -> None:
    env = async_env
    env.seed(12)
    mirror = memory_mirror(env)

    async def go(session: object) -> tuple[int, vks.DriftReport]:
        loaded = await session.run_sync(vks.rebuild, mirror, progress=False)  # type: ignore[attr-defined]
        return loaded, await session.run_sync(vks.verify, mirror)  # type: ignore[attr-defined]

    loaded, report = env.aio(go)
    assert loaded == 12 and report.ok

    async def direct(session: object) -> None:
        vks.verify(session, mirror)

    with pytest.raises(vk.InvalidMirrorError, match="run_sync"):
        env.aio(direct)
