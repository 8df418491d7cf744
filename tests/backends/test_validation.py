"""Bad vectors fail at bind time with the specified error, before any SQL is sent; nothing changes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import sqlalchemy_vectorknobs as vk

from ..conftest import Backend, unique


class Base(DeclarativeBase):
    pass


class Doc(Base):
    __tablename__ = unique("val")
    id: Mapped[int] = mapped_column(primary_key=True)
    embedding = mapped_column(vk.Vector(3))


BAD = [
    pytest.param([1.0, 2.0], vk.DimensionMismatchError, "expects 3 dimensions, got 2", id="wrong-dim"),
    pytest.param([1.0, float("nan"), 3.0], vk.InvalidVectorError, "index 1", id="nan"),
    pytest.param([1.0, 2.0, float("inf")], vk.InvalidVectorError, "finite", id="inf"),
    pytest.param([-np.inf, 2.0, 3.0], vk.InvalidVectorError, "finite", id="-inf"),
    pytest.param(["a", "b", "c"], vk.VectorTypeError, "non-numeric", id="strings"),
    pytest.param([1.0, None, 3.0], vk.VectorTypeError, "non-numeric", id="none-element"),
    pytest.param("[1,2,3]", vk.VectorTypeError, "got a str", id="str-value"),
    pytest.param([], vk.InvalidVectorError, "empty", id="empty"),
    pytest.param(np.ones((1, 3)), vk.InvalidVectorError, "2 dimensions", id="2d"),
    pytest.param([[1.0], [2.0, 3.0]], vk.VectorTypeError, "malformed", id="ragged"),
    pytest.param([1e39, 0.0, 0.0], vk.InvalidVectorError, "overflows float32", id="float32-overflow"),
]


@pytest.fixture
def table(backend: Backend) -> Any:
    backend.run(Base.metadata.create_all)
    backend.session(lambda s: s.add(Doc(id=1, embedding=[1.0, 2.0, 3.0])))
    yield Doc
    backend.run(Base.metadata.drop_all)


def _count(backend: Backend) -> int:
    return backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(Doc)).scalar_one())


@pytest.mark.parametrize("value,error,fragment", BAD)
def test_orm_insert_rejects_before_sql(backend: Backend, table: Any, value: Any, error: type, fragment: str) -> None:
    backend.statements.clear()
    with pytest.raises(error) as info:
        backend.session(lambda s: s.add(Doc(id=2, embedding=value)))
    message = str(info.value)
    assert message.startswith(f"Column '{Doc.__tablename__}.embedding' "), message
    assert fragment in message and message.endswith(".") and "\n" not in message
    assert backend.count_inserts() == 0, backend.statements
    assert _count(backend) == 1


@pytest.mark.parametrize("value,error,fragment", BAD)
def test_core_executemany_rejects_whole_batch(backend: Backend, table: Any, value: Any, error: type, fragment: str) -> None:
    """One bad row in a batch: nothing of the batch is written."""
    rows = [{"id": 10, "embedding": [0.0, 0.0, 1.0]}, {"id": 11, "embedding": value}]
    backend.statements.clear()
    with pytest.raises(error):
        backend.run(lambda c: c.execute(sa.insert(Doc), rows))
    assert backend.count_inserts() == 0
    assert _count(backend) == 1


@pytest.mark.parametrize("value,error,fragment", BAD[:4])
def test_query_vector_rejected_before_sql(backend: Backend, table: Any, value: Any, error: type, fragment: str) -> None:
    stmt = sa.select(Doc.id).order_by(Doc.embedding.l2_distance(value))
    backend.statements.clear()
    with pytest.raises(error):
        backend.run(lambda c: c.execute(stmt).all())
    assert not [s for s in backend.statements if "ORDER BY" in s]


def test_update_rejected_and_row_unchanged(backend: Backend, table: Any) -> None:
    def bad_update(session: Session) -> None:
        session.get(Doc, 1).embedding = [1.0, 2.0, 3.0, 4.0]

    with pytest.raises(vk.DimensionMismatchError):
        backend.session(bad_update)
    stored = backend.run(lambda c: c.execute(sa.select(Doc.embedding)).scalar_one())
    np.testing.assert_array_equal(stored, [1.0, 2.0, 3.0])


@pytest.mark.parametrize(
    "type_,value,error",
    [
        (vk.HalfVector(2), [70000.0, 1.0], vk.InvalidVectorError),
        (vk.BitVector(4), [0, 1, 2, 0], vk.InvalidVectorError),
        (vk.BitVector(4), "01x1", vk.VectorTypeError),
        (vk.BitVector(4), [1, 0, 1], vk.DimensionMismatchError),
    ],
)
def test_other_types_reject_bad_values(backend: Backend, type_: vk.VectorType, value: Any, error: type) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("valt"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", type_))
    backend.run(md.create_all)
    try:
        backend.statements.clear()
        with pytest.raises(error, match=rf"^Column '{t.name}\.v' "):
            backend.run(lambda c: c.execute(sa.insert(t), {"id": 1, "v": value}))
        assert backend.count_inserts() == 0
        assert backend.run(lambda c: c.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()) == 0
    finally:
        backend.run(md.drop_all)


def test_sparse_index_out_of_range(pg_backend: Backend) -> None:
    md = sa.MetaData()
    t = sa.Table(unique("valsp"), md, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", vk.SparseVector(5)))
    pg_backend.run(md.create_all)
    try:
        pg_backend.statements.clear()
        with pytest.raises(vk.InvalidVectorError, match="index 5, outside 0..4"):
            pg_backend.run(lambda c: c.execute(sa.insert(t), {"id": 1, "v": {5: 1.0}}))
        assert pg_backend.count_inserts() == 0
    finally:
        pg_backend.run(md.drop_all)


def test_incompatible_operator_is_a_clear_error() -> None:
    with pytest.raises(vk.IncompatibleOperatorError, match="has no hamming distance"):
        Doc.embedding.hamming_distance([1, 0, 1])
    bits = sa.Column("b", vk.BitVector(8))
    with pytest.raises(vk.IncompatibleOperatorError, match="has no cosine distance"):
        bits.cosine_distance([1, 0, 1, 0, 1, 0, 1, 0])
    with pytest.raises(vk.InvalidDistanceError, match="^Distance 'chebyshev' is not known; accepted names are 'l2'"):
        Doc.embedding.distance([1, 2, 3], "chebyshev")
