"""Values a session flushed are applied without reading the rows back, only when they are what the database holds.

Every check compares the mirror with the committed rows read on a separate connection
(``assert_matches``), and counts the statements that read the mirrored table after the commit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.orm import Session

from sqlalchemy_vectorknobs import sync as vks
from sqlalchemy_vectorknobs.sync.collect import _round_trip_type

from .conftest import SyncEnv, assert_matches, memory_mirror, vec


def _reads_of(env: SyncEnv, start: int) -> list[str]:
    """SELECTs of the mirrored table sent since statement number ``start``."""
    name = env.table.name
    return [s for s in env.backend.statements[start:] if s.lstrip().upper().startswith("SELECT") and name in s]


def _commit(env: SyncEnv, fn: Any) -> list[str]:
    start = len(env.backend.statements)

    def go(s: Session) -> None:
        fn(s)
        s.commit()

    env.orm(go)
    return _reads_of(env, start)


def test_inserted_rows_are_applied_from_the_flush(sync_env: SyncEnv) -> None:
    env = sync_env
    Doc = env.Doc
    for outbox in (False, True):
        mirror = memory_mirror(env)
        attachment = env.attach([mirror], outbox=outbox)
        ids = range(1 + 1000 * outbox, 301 + 1000 * outbox)
        reads = _commit(env, lambda s: s.add_all([Doc(id=i, category="ab"[i % 2], embedding=vec(i)) for i in ids]))
        assert reads == [], reads  # nothing read back
        attachment.detach()
        committed = env.committed()
        assert mirror.ids() == set(ids)
        got = mirror.get(list(ids))
        for pk in ids:
            np.testing.assert_allclose(got[pk], committed[pk][0], atol=1e-6)
            assert mirror.inner.metadata(pk) == {"category": committed[pk][1]}


def test_an_update_of_some_columns_reads_the_row_back(sync_env: SyncEnv) -> None:
    """Session A loaded the row, B changed its category and committed, A changes only the vector."""
    env = sync_env
    Doc = env.Doc
    env.seed(3)
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=True)
    env.orm(lambda s: vks.rebuild(s, mirror, progress=False))

    def a(s: Session) -> None:
        doc = s.get(Doc, 1)
        assert doc is not None and doc.category == "b"
        env.orm(lambda other: (setattr(other.get(Doc, 1), "category", "zz"), other.commit()))  # B
        doc.embedding = vec(1, 5)  # A's object still says category "b": a stale value
        s.commit()

    env.orm(a)
    assert mirror.inner.metadata(1) == {"category": "zz"}
    assert_matches(env, mirror)

    # changing every watched column: nothing stale left, nothing to read
    reads = _commit(env, lambda s: (setattr(s.get(Doc, 2), "embedding", vec(2, 5)), setattr(s.get(Doc, 2), "category", "c")))
    assert [r for r in reads if " IN (" in r.upper()] == []  # (s.get loads the object; no read-back)
    assert_matches(env, mirror)


def test_values_the_database_would_change_are_read_back(sqlite_env: SyncEnv) -> None:
    env = sqlite_env
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror])
    # SQLite stores an int given to a text column as text: the flushed 5 is not what comes back
    env.orm(lambda s: (s.add(Doc(id=1, category=5, embedding=vec(1))), s.commit()))
    assert mirror.inner.metadata(1) == {"category": "5"}
    # a SQL expression is evaluated by the database: its result is read back
    env.orm(lambda s: (s.add(Doc(id=2, category=sa.func.upper("x"), embedding=vec(2))), s.commit()))
    assert mirror.inner.metadata(2) == {"category": "X"}
    assert_matches(env, mirror)


def test_a_later_bulk_statement_in_the_same_transaction_wins(env: SyncEnv) -> None:
    Doc = env.Doc
    mirror = memory_mirror(env)
    env.attach([mirror], outbox=env.backend.id.startswith("pg"))

    def go(s: Session) -> None:
        s.add_all([Doc(id=i, category="a", embedding=vec(i)) for i in range(1, 4)])
        s.flush()
        s.execute(sa.update(Doc).where(Doc.id == 2).values(embedding=vec(2, 7), category="q"))
        s.commit()

    env.orm(go)
    assert mirror.inner.metadata(2) == {"category": "q"}
    assert_matches(env, mirror)


def test_only_types_that_round_trip_are_trusted() -> None:
    assert _round_trip_type(sa.Column("a", sa.String(10))) is str
    assert _round_trip_type(sa.Column("a", sa.Text())) is str
    assert _round_trip_type(sa.Column("a", sa.BigInteger())) is int
    assert _round_trip_type(sa.Column("a", sa.Boolean())) is bool
    for t in (sa.Float(), sa.Numeric(), sa.CHAR(3), sa.Enum("x", "y"), sa.DateTime(), sa.Uuid(), sa.JSON()):
        assert _round_trip_type(sa.Column("a", t)) is None, t
