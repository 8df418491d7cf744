"""A pgvector-python project keeps its ``Index(..., postgresql_using="hnsw", postgresql_with=...,
postgresql_ops=...)`` declarations on vk columns: autogenerate proposes nothing while they build
what is live, and never drops a live index that one of them declares. A changed one is dropped
(the downgrade restores the live definition) and created as declared, with a warning that
``vk.VectorIndex`` is the declaration to switch to; right after, nothing is proposed again."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

pytest.importorskip("alembic", reason="needs the alembic extra")

from alembic.autogenerate import compare_metadata, produce_migrations, render_python_code  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402
from alembic.operations import Operations  # noqa: E402

import alembic_ext  # noqa: E402

from .test_copies import runnable  # noqa: E402

pytestmark = pytest.mark.postgresql


def model(l2_m: int = 16, *, extra: bool = False, keep_ivf: bool = True, vector_index: bool = False) -> sa.MetaData:
    md = sa.MetaData()
    l2: Any = (
        vk.VectorIndex("doc_l2_idx", "embedding", distance="l2", m=l2_m, ef_construction=64)
        if vector_index
        else sa.Index("doc_l2_idx", "embedding", postgresql_using="hnsw", postgresql_with={"m": l2_m, "ef_construction": 64},
                      postgresql_ops={"embedding": "vector_l2_ops"})
    )
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("embedding", vk.Vector(3)),
        sa.Index("doc_cos_idx", "embedding", postgresql_using="hnsw", postgresql_ops={"embedding": "vector_cosine_ops"}),
        l2,
        *([sa.Index("doc_ivf_idx", "embedding", postgresql_using="ivfflat", postgresql_with={"lists": 100},
                    postgresql_ops={"embedding": "vector_ip_ops"})] if keep_ivf else []),
        *([sa.Index("doc_new_idx", "embedding", postgresql_using="hnsw", postgresql_ops={"embedding": "vector_l1_ops"})]
          if extra else []),
    )
    return md


@pytest.fixture
def engine(fresh_pg_url: sa.URL) -> Iterator[sa.Engine]:
    engine = vk.create_engine(fresh_pg_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION vector")
    model().create_all(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("INSERT INTO doc VALUES (1, '[1,2,3]'), (2, '[3,2,1]')")
    yield engine
    engine.dispose()


def diffs(engine: sa.Engine, metadata: sa.MetaData) -> list[Any]:
    with engine.connect() as conn:
        return list(compare_metadata(MigrationContext.configure(conn, opts=alembic_ext.autogenerate_options()), metadata))


def migration(engine: sa.Engine, metadata: sa.MetaData) -> tuple[str, str]:
    with engine.connect() as conn:
        script = produce_migrations(MigrationContext.configure(conn, opts=alembic_ext.autogenerate_options()), metadata)
    return render_python_code(script.upgrade_ops), render_python_code(script.downgrade_ops)


def run(engine: sa.Engine, code: str) -> None:
    with engine.begin() as conn:
        exec(runnable(code), {"op": Operations(MigrationContext.configure(conn)), "sa": sa, "sqlalchemy_vectorknobs": vk})  # noqa: S102


def live(engine: sa.Engine) -> dict[str, str | None]:
    return {i.name: i.definition for i in vk.inspect_vectors(engine).indexes}


def test_equivalent_plain_indexes_produce_nothing(engine: sa.Engine) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        assert diffs(engine, model()) == []


def test_a_changed_plain_index_is_rebuilt_once_with_advice(engine: sa.Engine) -> None:
    before = live(engine)
    with pytest.warns(UserWarning, match=r"Index 'doc_l2_idx' on 'doc' is a plain sqlalchemy.Index .*vk.VectorIndex"):
        upgrade, downgrade = migration(engine, model(l2_m=32))
    assert "op.drop_vector_index('doc_l2_idx', 'doc')" in upgrade, upgrade
    assert "op.create_index('doc_l2_idx', 'doc', ['embedding'], unique=False, postgresql_using='hnsw'" in upgrade, upgrade
    assert "'m': 32" in upgrade and "doc_cos_idx" not in upgrade and "doc_ivf_idx" not in upgrade, upgrade
    assert "op.create_vector_index('doc_l2_idx', 'doc', 'embedding', column_type=sqlalchemy_vectorknobs.Vector(3), " \
           "distance='l2', m=16, ef_construction=64)" in downgrade, downgrade
    run(engine, upgrade)
    assert "m='32'" in (live(engine)["doc_l2_idx"] or "")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert diffs(engine, model(l2_m=32)) == []  # no flip-flop
    run(engine, downgrade)
    assert live(engine) == before
    assert diffs(engine, model()) == []


def test_added_and_removed_plain_indexes(engine: sa.Engine) -> None:
    upgrade, _ = migration(engine, model(extra=True))
    assert "op.create_index('doc_new_idx'" in upgrade and "drop" not in upgrade, upgrade
    run(engine, upgrade)
    assert diffs(engine, model(extra=True)) == []
    upgrade, downgrade = migration(engine, model(extra=True, keep_ivf=False))
    assert "op.drop_vector_index('doc_ivf_idx', 'doc')" in upgrade, upgrade
    assert "method='ivfflat', lists=100" in downgrade, downgrade


def test_switching_to_vector_index_with_the_live_parameters_produces_nothing(engine: sa.Engine) -> None:
    assert diffs(engine, model(vector_index=True)) == []
