"""Column names sqlite-vec keeps for itself (``distance``, ``k``, the rowid's names) on a table with
a ``VectorIndex``: handled transparently on SQLite (renamed inside the vec0 table only) and plain
on PostgreSQL; names vec0 cannot take at all are refused before any DDL runs."""

from __future__ import annotations

import numpy as np
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique


@pytest.mark.parametrize("vector_name,filter_name,key_name", [("distance", "k", "id"), ("k", "distance", "rowid"), ("Distance", "OID", "_rowid_")])
def test_reserved_names_work_like_any_other(backend: Backend, vector_name: str, filter_name: str, key_name: str) -> None:
    md = sa.MetaData()
    name = unique("rsv")
    t = sa.Table(
        name,
        md,
        sa.Column(key_name, sa.Integer, primary_key=True, autoincrement=False),
        sa.Column(vector_name, vk.Vector(4), nullable=True),
        sa.Column(filter_name, sa.String(10), nullable=False),
        vk.VectorIndex(f"{name}_vec", vector_name, distance="l2", metadata_columns=[filter_name]),
    )
    backend.run(md.create_all)
    try:
        backend.run(md.create_all)  # a second create_all finds everything in place
        rng = np.random.default_rng(3)
        x = rng.standard_normal((50, 4)).astype(np.float32)
        rows = [{key_name: i, vector_name: None if i % 7 == 0 else x[i], filter_name: "ab"[i % 2]} for i in range(50)]
        backend.run(lambda c: c.execute(t.insert(), rows))
        backend.run(lambda c: c.execute(t.update().where(t.c[key_name] == 3).values({vector_name: x[0]})))
        x[3] = x[0]
        q = rng.standard_normal(4)
        for where in (None, t.c[filter_name] == "a"):
            got = backend.run(lambda c, where=where: c.execute(vk.nearest(t.c[vector_name], q, k=5, where=where)).all())
            keep = [i for i in range(50) if i % 7 and (where is None or i % 2 == 0)]
            want = sorted(keep, key=lambda i: (float(np.linalg.norm(x[i].astype(np.float64) - q)), i))[:5]
            assert [row[0] for row in got] == want
            # (by position: the table's own column named 'distance' would make row.distance ambiguous)
            assert [row[-1] for row in got] == pytest.approx([np.linalg.norm(x[i].astype(np.float64) - q) for i in want], rel=1e-5)
        if backend.dialect == "sqlite":
            plan = backend.session(lambda s: vk.explain(s, vk.nearest(t.c[vector_name], q, k=5, where=t.c[filter_name] == "a")))
            assert plan.uses_vector_index, plan.plan  # the filter column is pushed into vec0 under its vec0 name
            info = {i.name: i for i in backend.run(vk.inspect_vectors).indexes}[f"{name}_vec"]
            assert info.expression == vector_name and info.table == name
    finally:
        backend.run(md.drop_all)


def test_names_vec0_cannot_take_are_refused_before_any_ddl(sqlite_backend: Backend) -> None:
    md = sa.MetaData()
    name = unique("rsv_bad")
    t = sa.Table(
        name,
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("my vector", vk.Vector(4)),
        vk.VectorIndex(f"{name}_vec", "my vector"),
    )
    clash = sa.Table(
        f"{name}_2",
        md,
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("k", vk.Vector(4)),
        sa.Column("vk_c_k", sa.Integer, nullable=False),
        vk.VectorIndex(f"{name}_2_vec", "k", metadata_columns=["vk_c_k"]),
    )
    with pytest.raises(vk.UnsupportedDialectError, match="accepts only letters, digits and underscores"):
        sqlite_backend.run(lambda c: t.create(c))
    with pytest.raises(vk.UnsupportedDialectError, match="two columns named 'vk_c_k'"):
        sqlite_backend.run(lambda c: clash.create(c))
    names = sqlite_backend.run(lambda c: sa.inspect(c).get_table_names())
    assert t.name not in names and clash.name not in names  # nothing half made
