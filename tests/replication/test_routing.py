"""Routing reads to hot standbys and writes to the primary (``vk.routing_sessionmaker``), and
migrations run on the primary reaching the standby's planner (``CREATE INDEX CONCURRENTLY`` too)."""

from __future__ import annotations

import logging
import re
import socket
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

import sqlalchemy_vectorknobs as vk

from .conftest import Pair

DIM = 16


#: The model, as the migration test's project imports it too (models.py, for the docs' env.py).
MODELS = f"""
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
import sqlalchemy_vectorknobs as vk

class Base(DeclarativeBase):
    pass

class Note(Base):
    __tablename__ = "repl_note"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    body: Mapped[str] = mapped_column(sa.Text)
    embedding = mapped_column(vk.Vector({DIM}))
    __table_args__ = (vk.VectorIndex("repl_note_hnsw", "embedding", distance="l2"),)
"""
_models = types.ModuleType("tests.replication.repl_models")
sys.modules[_models.__name__] = _models  # (declarative resolves the annotations in the module)
exec(compile(MODELS, "models.py", "exec"), _models.__dict__)
Base: Any = _models.Base
Note: Any = _models.Note
IN_RECOVERY = sa.select(sa.func.pg_is_in_recovery())


@pytest.fixture
def notes(pair: Pair) -> Iterator[Pair]:
    primary = pair.engine("primary")
    Base.metadata.drop_all(primary)
    Base.metadata.create_all(primary)
    rng = np.random.default_rng(1)
    with Session(primary) as session:
        session.add_all(Note(id=i, body=f"note {i}", embedding=rng.standard_normal(DIM)) for i in range(1, 201))
        session.commit()
    pair.wait_for_replay()
    yield pair
    Base.metadata.drop_all(primary)
    pair.wait_for_replay()


def dead_engine() -> sa.Engine:
    """An engine on a port nothing listens on (a standby that is down)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return vk.create_engine(f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres", connect_args={"connect_timeout": 2})


def test_reads_go_to_the_standby_and_writes_to_the_primary(notes: Pair) -> None:
    Session_ = vk.routing_sessionmaker(notes.engine("primary"), [notes.engine("standby")], expire_on_commit=False)
    q = np.zeros(DIM)
    with Session_() as session:
        assert session.scalar(IN_RECOVERY) is True  # a standby
        found = session.execute(vk.nearest(Note.embedding, q, k=5)).all()
        assert len(found) == 5
        assert session.get(Note, 1) is not None  # ORM loads are reads too
        session.add(Note(id=1000, body="mine", embedding=np.zeros(DIM)))
        session.flush()  # the primary
        assert session.scalar(IN_RECOVERY) is False  # read your own writes: the primary until the transaction ends
        assert [n.id for n, _ in session.execute(vk.nearest(Note.embedding, q, k=1))] == [1000]
        session.commit()
    notes.wait_for_replay()
    with Session_() as session:
        assert session.scalar(IN_RECOVERY) is True  # a new transaction reads from the standby again
        assert [n.id for n, _ in session.execute(vk.nearest(Note.embedding, q, k=1))] == [1000]
        session.execute(sa.update(Note).where(Note.id == 1000).values(body="changed"))  # a write statement
        assert session.scalar(IN_RECOVERY) is False
        assert session.scalar(sa.select(Note.body).where(Note.id == 1000)) == "changed"
        session.rollback()
        assert session.scalar(IN_RECOVERY) is True
        assert session.scalar(sa.select(Note.body).where(Note.id == 1000)) == "mine"


def test_a_standby_that_is_down_is_skipped(notes: Pair, caplog: pytest.LogCaptureFixture) -> None:
    primary, standby, dead = notes.engine("primary"), notes.engine("standby"), dead_engine()
    try:
        with caplog.at_level(logging.WARNING, logger="sqlalchemy_vectorknobs.routing"):
            Session_ = vk.routing_sessionmaker(primary, [dead, standby], recheck_after=60)
            for _ in range(4):  # round robin: the dead one is skipped, the live standby serves every read
                with Session_() as session:
                    assert session.scalar(IN_RECOVERY) is True
        assert any(re.search(r"standby .* does not answer", r.getMessage()) for r in caplog.records)

        fallback = vk.routing_sessionmaker(primary, [dead], recheck_after=60)
        with fallback() as session:
            assert session.scalar(IN_RECOVERY) is False  # no standby answers: the primary reads
        strict = vk.routing_sessionmaker(primary, [dead], standby_down="raise", recheck_after=60)
        with strict() as session, pytest.raises(vk.StandbyUnavailableError, match=r"No standby of 1 answers"):
            session.execute(vk.nearest(Note.embedding, np.zeros(DIM), k=3))
    finally:
        dead.dispose()


def test_bad_arguments_are_refused(notes: Pair) -> None:
    primary, standby = notes.engine("primary"), notes.engine("standby")
    with pytest.raises(vk.InvalidSearchSettingError, match=r"standbys=\[\] is not valid"):
        vk.routing_sessionmaker(primary, [])
    with pytest.raises(vk.InvalidSearchSettingError, match=r"standby_down='fallback' is not valid; use 'primary' or 'raise'"):
        vk.routing_sessionmaker(primary, [standby], standby_down="fallback")
    with pytest.raises(vk.InvalidSearchSettingError, match=r"recheck_after=-1 is not valid"):
        vk.routing_sessionmaker(primary, [standby], recheck_after=-1)


def test_a_migration_on_the_primary_reaches_the_standbys_planner(notes: Pair, tmp_path: Path) -> None:
    """``alembic upgrade`` on the primary (``CREATE INDEX CONCURRENTLY``): once replayed, the
    standby has the index and plans with it; ``downgrade`` removes it there too."""
    from ..alembic.test_scenario import Project

    project = Project(tmp_path, notes.primary.url().render_as_string(hide_password=False))
    (tmp_path / "models.py").write_text(MODELS)  # what the docs' env.py imports
    made = project.run("revision", "-m", "ivfflat on repl_note")
    path = Path(re.search(r"Generating (\S+\.py)", made.stdout + made.stderr).group(1))  # type: ignore[union-attr]
    text = path.read_text()
    text = text.replace("import sqlalchemy as sa\n", "import sqlalchemy as sa\nimport alembic_ext  # noqa: F401\nimport sqlalchemy_vectorknobs\n", 1)
    text = re.sub(r"def upgrade\(\) -> None:\n(.*\n)*?    pass\n", (
        "def upgrade() -> None:\n"
        "    op.create_vector_index('repl_note_ivf', 'repl_note', 'embedding', distance='cosine',"
        " method='ivfflat', lists=4, concurrently=True, column_type=sqlalchemy_vectorknobs.Vector(16))\n"
    ), text, count=1)  # fmt: skip
    text = re.sub(r"def downgrade\(\) -> None:\n(.*\n)*?    pass\n", (
        "def downgrade() -> None:\n    op.drop_vector_index('repl_note_ivf', 'repl_note')\n"
    ), text, count=1)  # fmt: skip
    path.write_text(text)
    offline = project.run("upgrade", "head", "--sql").stdout
    assert "CREATE INDEX CONCURRENTLY repl_note_ivf ON repl_note USING ivfflat" in offline, offline
    project.run("upgrade", "head")
    notes.wait_for_replay()

    def plan(session: Session) -> vk.ExplainResult:
        session.execute(sa.text("SET LOCAL enable_seqscan = off"))
        # (a plain ORDER BY: vk.nearest plans from the model, which does not declare the new index)
        return vk.explain(session, sa.select(Note.id).order_by(Note.embedding.cosine_distance(np.ones(DIM))).limit(5))

    with Session(notes.engine("standby")) as session:
        assert session.scalar(IN_RECOVERY) is True
        assert "repl_note_ivf" in plan(session).vector_indexes_used
        assert {i.name for i in vk.inspect_vectors(session.connection()).indexes} >= {"repl_note_ivf", "repl_note_hnsw"}
    project.run("downgrade", "base")
    notes.wait_for_replay()
    with Session(notes.engine("standby")) as session:
        assert "repl_note_ivf" not in {i.name for i in vk.inspect_vectors(session.connection()).indexes}
