"""docs/alembic.md, "Coming from pgvector-python": the steps it gives, run on PostgreSQL.

A schema made the pgvector-python way (``pgvector.sqlalchemy`` types, hand-written HNSW/IVFFlat
``Index`` objects, one built with pgvector's defaults and no WITH clause) is compared by Alembic
autogenerate with the same model declared with ``vk`` types and ``vk.VectorIndex``.
"""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

pytest.importorskip("alembic", reason="needs the alembic extra")
pytest.importorskip("pgvector", reason="needs pgvector-python (postgresql extra)")

from alembic.autogenerate import produce_migrations, render_python_code  # noqa: E402
from alembic.migration import MigrationContext  # noqa: E402

import alembic_ext  # noqa: E402
import sqlalchemy_vectorknobs as vk  # noqa: E402

pytestmark = pytest.mark.postgresql


@pytest.fixture
def pgvector_sqlalchemy() -> Iterator[ModuleType]:
    """``pgvector.sqlalchemy``, imported here: importing it adds its types to every PostgreSQL
    dialect's reflection (``ischema_names``), which is undone afterwards so other tests (and the
    plugin's per-engine reflection test) see the dialect as SQLAlchemy ships it."""
    from sqlalchemy.dialects.postgresql import base

    saved = dict(base.ischema_names)
    import pgvector.sqlalchemy

    try:
        yield pgvector.sqlalchemy
    finally:
        base.ischema_names.clear()
        base.ischema_names.update(saved)


def _old_metadata(pgvector_sqlalchemy: Any) -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("embedding", pgvector_sqlalchemy.Vector(3)),
        sa.Column("half", pgvector_sqlalchemy.HALFVEC(3)),
        sa.Column("bits", pgvector_sqlalchemy.BIT(4)),
        sa.Column("sparse", pgvector_sqlalchemy.SPARSEVEC(5)),
        sa.Index("doc_cos_idx", "embedding", postgresql_using="hnsw", postgresql_ops={"embedding": "vector_cosine_ops"}),
        sa.Index("doc_l2_idx", "embedding", postgresql_using="hnsw", postgresql_with={"m": 16, "ef_construction": 64},
                 postgresql_ops={"embedding": "vector_l2_ops"}),
        sa.Index("doc_ivf_idx", "embedding", postgresql_using="ivfflat", postgresql_ops={"embedding": "vector_ip_ops"}),
    )
    return md


def _new_metadata() -> sa.MetaData:
    md = sa.MetaData()
    sa.Table(
        "doc", md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("embedding", vk.Vector(3)),
        sa.Column("half", vk.HalfVector(3)),
        sa.Column("bits", vk.BitVector(4)),
        sa.Column("sparse", vk.SparseVector(5)),
        vk.VectorIndex("doc_cos_idx", "embedding", distance="cosine", m=16, ef_construction=64),
        vk.VectorIndex("doc_l2_idx", "embedding", distance="l2", m=16, ef_construction=64),
        vk.VectorIndex("doc_ivf_idx", "embedding", distance="ip", method="ivfflat", lists=100),
    )
    return md


@pytest.fixture
def old_project(fresh_pg_url: sa.URL, pgvector_sqlalchemy: ModuleType) -> Iterator[sa.Engine]:
    plain = sa.create_engine(fresh_pg_url)
    with plain.begin() as conn:
        conn.exec_driver_sql("CREATE EXTENSION IF NOT EXISTS vector")
    from pgvector import Bit, HalfVector, SparseVector

    old_metadata = _old_metadata(pgvector_sqlalchemy)
    old_metadata.create_all(plain)
    with plain.begin() as conn:
        conn.execute(sa.text("INSERT INTO doc VALUES (1, :e, :h, :b, :s)"), {
            "e": pgvector_sqlalchemy.Vector(3).bind_processor(plain.dialect)([1, 2, 3]),  # type: ignore[misc]
            "h": HalfVector([0.5, 0.25, 1.0]).to_text(), "b": Bit("1010").to_text(),
            "s": SparseVector({0: 1.5, 4: -2.0}, 5).to_text(),
        })
        old = conn.execute(sa.select(old_metadata.tables["doc"])).one()
    assert list(old.embedding) == [1, 2, 3] and isinstance(old.sparse, SparseVector)  # pgvector-python's own values
    plain.dispose()
    engine = vk.create_engine(fresh_pg_url)
    yield engine
    engine.dispose()


def _autogenerate(engine: sa.Engine) -> str:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts=alembic_ext.autogenerate_options())
        return render_python_code(produce_migrations(ctx, _new_metadata()).upgrade_ops)


def test_indexes_built_with_defaults_show_up_until_their_defaults_are_recorded(old_project: sa.Engine) -> None:
    code = _autogenerate(old_project)
    # step 1: the column types are the same DDL, so no column op; the explicit-WITH index matches
    assert "alter_vector_column" not in code and "add_column" not in code and "doc_l2_idx" not in code, code
    # step 3: the two indexes built without a WITH clause are proposed for a rebuild
    assert code.count("op.drop_vector_index(") == 2 and "'doc_cos_idx'" in code and "'doc_ivf_idx'" in code, code
    with old_project.begin() as conn:
        conn.exec_driver_sql("ALTER INDEX doc_cos_idx SET (m = 16, ef_construction = 64)")
        conn.exec_driver_sql("ALTER INDEX doc_ivf_idx SET (lists = 100)")
    code = _autogenerate(old_project)
    assert "op." not in code, code  # step 4: the migration is empty


def test_vk_types_read_and_write_the_same_rows(old_project: sa.Engine) -> None:
    from pgvector import HalfVector

    doc = _new_metadata().tables["doc"]
    with old_project.begin() as conn:
        row = conn.execute(sa.select(doc)).one()
        assert row.embedding.dtype == np.float32 and row.embedding.tolist() == [1, 2, 3]
        assert row.half.dtype == np.float16 and row.half.tolist() == [0.5, 0.25, 1.0]
        assert row.bits.tolist() == [True, False, True, False]
        assert row.sparse.tolist() == [1.5, 0, 0, 0, -2.0]
        # pgvector-python value objects are still accepted on bind
        conn.execute(doc.insert(), {"id": 2, "embedding": [3, 2, 1], "half": HalfVector([1, 1, 1]), "bits": "0101",
                                    "sparse": {1: 1.0}})
        nearest = conn.execute(sa.select(doc.c.id).order_by(doc.c.embedding.cosine_distance([3, 2, 0])).limit(1)).scalar()
        assert nearest == 2
