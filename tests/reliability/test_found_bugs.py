"""Regression tests for bugs the reliability suite found in package code (each failed before its fix)."""

from __future__ import annotations

import numpy as np
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique


def test_distance_alone_in_select_has_its_table_in_from(backend: Backend) -> None:
    """``select(t.c.v.l2_distance(q))`` rendered no FROM clause ("no such column" / missing FROM)."""
    md = sa.MetaData()
    t = sa.Table(unique("from"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.Vector(3)))
    backend.create(md)
    try:
        backend.run(lambda c: c.execute(t.insert(), [{"id": 1, "v": [3, 0, 4]}, {"id": 2, "v": [0, 0, 0]}]))
        got = backend.run(lambda c: sorted(c.execute(sa.select(t.c.v.l2_distance([0, 0, 0]))).scalars()))
        np.testing.assert_allclose(got, [0.0, 5.0])
        other = t.alias("o")
        pair = backend.run(
            lambda c: c.execute(sa.select(t.c.v.l2_distance(other.c.v)).join_from(t, other, sa.true()).where(t.c.id == 1, other.c.id == 2)).scalar_one()
        )
        assert pair == 5.0
    finally:
        backend.drop(md)
