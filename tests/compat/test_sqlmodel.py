# Ported from pgvector-python, tests/test_sqlmodel.py at commit
# 33293bfd7e15f3f53eed0aa92a9f7509cd63a4be (https://github.com/pgvector/pgvector-python),
# used under its MIT licence:
#
#   The MIT License (MIT)
#
#   Copyright (c) 2021-2026 Andrew Kane
#
#   Permission is hereby granted, free of charge, to any person obtaining a copy
#   of this software and associated documentation files (the "Software"), to deal
#   in the Software without restriction, including without limitation the rights
#   to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
#   copies of the Software, and to permit persons to whom the Software is
#   furnished to do so, subject to the following conditions:
#
#   The above copyright notice and this permission notice shall be included in
#   all copies or substantial portions of the Software.
#
#   THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
#   IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
#   FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
#   AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
#   LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
#   OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN
#   THE SOFTWARE.
"""pgvector-python's SQLModel suite, run against sqlalchemy-vectorknobs.

The original runs on psycopg2 only; this runs on psycopg 3, psycopg2, pg8000 and SQLite +
sqlite-vec (sparsevec tests skipped there with the reason). Types and aggregates are vk's
(``vk.Vector`` ... ``vk.avg``/``vk.sum``); assertions are kept, and where vk deliberately
differs (numpy arrays returned, its own errors not wrapped in ``StatementError``) the test says so
in a ``vk:`` comment, as in test_sqlalchemy.py.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pgvector import SparseVector
from pydantic import ConfigDict
from sqlalchemy import Engine
from sqlmodel import Field, Index, Session, SQLModel, delete, select, text

import sqlalchemy_vectorknobs as vk
from sqlalchemy_vectorknobs import BitVector as BIT
from sqlalchemy_vectorknobs import HalfVector as HALFVEC
from sqlalchemy_vectorknobs import SparseVector as SPARSEVEC
from sqlalchemy_vectorknobs import Vector as VECTOR
from sqlalchemy_vectorknobs import avg, sum

from ..conftest import unique
from ._vk import as_bits, as_list
from .conftest import SYNC

SPARSE_ONLY_ON_POSTGRESQL = "sparsevec is a pgvector type; SQLite + sqlite-vec cannot store SparseVector"


class Item(SQLModel, table=True):
    __tablename__ = unique('sqlmodel_item')  # type: ignore
    model_config = ConfigDict(arbitrary_types_allowed=True)  # type: ignore

    id: int | None = Field(default=None, primary_key=True)
    embedding: list[float] | None = Field(default=None, sa_type=VECTOR(3))  # type: ignore
    half_embedding: list[float] | None = Field(default=None, sa_type=HALFVEC(3))  # type: ignore
    binary_embedding: str | None = Field(default=None, sa_type=BIT(3))  # type: ignore
    sparse_embedding: SparseVector | list[float] | None = Field(default=None, sa_type=SPARSEVEC(3))  # type: ignore


class SqliteItem(SQLModel, table=True):
    """The same model without the sparsevec column, which SQLite cannot store."""

    __tablename__ = unique('sqlmodel_item')  # type: ignore
    model_config = ConfigDict(arbitrary_types_allowed=True)  # type: ignore

    id: int | None = Field(default=None, primary_key=True)
    embedding: list[float] | None = Field(default=None, sa_type=VECTOR(3))  # type: ignore
    half_embedding: list[float] | None = Field(default=None, sa_type=HALFVEC(3))  # type: ignore
    binary_embedding: str | None = Field(default=None, sa_type=BIT(3))  # type: ignore


_created: set[str] = set()


def _model(dialect: str) -> Any:
    return Item if dialect == "postgresql" else SqliteItem


@pytest.fixture
def model(dialect: str, setup_engine: Engine) -> Any:
    """The original's module-level setup, once per database: the table and its HNSW index."""
    cls = _model(dialect)
    key = str(setup_engine.url)
    if key not in _created:
        table = cls.__table__
        SQLModel.metadata.drop_all(setup_engine, tables=[table])
        SQLModel.metadata.create_all(setup_engine, tables=[table])
        index = Index(
            unique('sqlmodel_index'),
            cls.embedding,
            postgresql_using='hnsw',
            postgresql_with={'m': 16, 'ef_construction': 64},
            postgresql_ops={'embedding': 'vector_l2_ops'}
        )
        index.create(setup_engine)
        _created.add(key)
    return cls


@pytest.fixture
def create_items(model: Any, setup_engine: Engine, dialect: str) -> Any:
    Item = model

    def create_items() -> None:
        def extra(values: list[int]) -> dict[str, Any]:
            return {'sparse_embedding': SparseVector(values)} if dialect == "postgresql" else {}

        with Session(setup_engine) as session:
            session.add(Item(id=1, embedding=[1, 1, 1], half_embedding=[1, 1, 1], binary_embedding='000', **extra([1, 1, 1])))
            session.add(Item(id=2, embedding=[2, 2, 2], half_embedding=[2, 2, 2], binary_embedding='101', **extra([2, 2, 2])))
            session.add(Item(id=3, embedding=[1, 1, 2], half_embedding=[1, 1, 2], binary_embedding='111', **extra([1, 1, 2])))
            session.commit()

    return create_items


@pytest.fixture(autouse=True)
def clear_table(model: Any, setup_engine: Engine, dialect: str) -> None:
    """The original's setup_method; ids start again at 1, as test_orm expects (the original runs
    on one engine, on a table created just before)."""
    with Session(setup_engine) as session:
        if dialect == "postgresql":
            session.exec(text(f'TRUNCATE TABLE "{model.__tablename__}" RESTART IDENTITY'))  # type: ignore
        else:
            session.exec(delete(model))
        session.commit()


@pytest.mark.parametrize('engine', SYNC, indirect=True)
class TestSqlmodel:
    def test_orm(self, engine: Engine, model: Any) -> None:
        Item = model
        item = Item(embedding=[1.5, 2, 3])
        item2 = Item(embedding=[4, 5, 6])
        item3 = Item()

        with Session(engine) as session:
            session.add(item)
            session.add(item2)
            session.add(item3)
            session.commit()

        stmt = select(Item)
        with Session(engine) as session:
            items = session.exec(stmt).all()
            assert items[0].id == 1
            assert items[1].id == 2
            assert items[2].id == 3
            # vk: float32 ndarrays, not lists
            assert as_list(items[0].embedding) == [1.5, 2, 3]
            assert as_list(items[1].embedding) == [4, 5, 6]
            assert items[2].embedding is None

    def test_vector(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            session.add(Item(id=1, embedding=[1, 2, 3]))
            session.commit()
            item = session.get_one(Item, 1)
            assert as_list(item.embedding) == [1, 2, 3]  # vk: a float32 ndarray

    def test_vector_l2_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.embedding.l2_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 3, 2]

    def test_vector_max_inner_product(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.embedding.max_inner_product([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [2, 3, 1]

    def test_vector_cosine_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.embedding.cosine_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 2, 3]

    def test_vector_l1_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.embedding.l1_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 3, 2]

    def test_halfvec(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            session.add(Item(id=1, half_embedding=[1, 2, 3]))
            session.commit()
            item = session.get_one(Item, 1)
            assert as_list(item.half_embedding, np.float16) == [1, 2, 3]  # vk: a float16 ndarray

    def test_halfvec_l2_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.half_embedding.l2_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 3, 2]

    def test_halfvec_max_inner_product(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.half_embedding.max_inner_product([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [2, 3, 1]

    def test_halfvec_cosine_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.half_embedding.cosine_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 2, 3]

    def test_halfvec_l1_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.half_embedding.l1_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 3, 2]

    def test_bit(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            session.add(Item(id=1, binary_embedding='101'))
            session.commit()
            item = session.get_one(Item, 1)
            assert as_bits(item.binary_embedding) == '101'  # vk: a bool ndarray

    def test_bit_hamming_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.binary_embedding.hamming_distance('101')))  # type: ignore
            assert [v.id for v in items] == [2, 3, 1]

    def test_bit_jaccard_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.binary_embedding.jaccard_distance('101')))  # type: ignore
            assert [v.id for v in items] == [2, 3, 1]

    @pytest.mark.postgresql_only(SPARSE_ONLY_ON_POSTGRESQL)
    def test_sparsevec(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            session.add(Item(id=1, sparse_embedding=[1, 2, 3]))
            session.commit()
            item = session.get_one(Item, 1)
            # vk: the dense float32 ndarray, not a SparseVector
            assert as_list(item.sparse_embedding) == SparseVector([1, 2, 3]).to_list()

    @pytest.mark.postgresql_only(SPARSE_ONLY_ON_POSTGRESQL)
    def test_sparsevec_l2_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.sparse_embedding.l2_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 3, 2]

    @pytest.mark.postgresql_only(SPARSE_ONLY_ON_POSTGRESQL)
    def test_sparsevec_max_inner_product(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.sparse_embedding.max_inner_product([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [2, 3, 1]

    @pytest.mark.postgresql_only(SPARSE_ONLY_ON_POSTGRESQL)
    def test_sparsevec_cosine_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.sparse_embedding.cosine_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 2, 3]

    @pytest.mark.postgresql_only(SPARSE_ONLY_ON_POSTGRESQL)
    def test_sparsevec_l1_distance(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).order_by(Item.sparse_embedding.l1_distance([1, 1, 1])))  # type: ignore
            assert [v.id for v in items] == [1, 3, 2]

    def test_filter(self, engine: Engine, model: Any, create_items: Any) -> None:
        Item = model
        create_items()
        with Session(engine) as session:
            items = session.exec(select(Item).filter(Item.embedding.l2_distance([1, 1, 1]) < 1))  # type: ignore
            assert [v.id for v in items] == [1]

    def test_select(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            session.add(Item(embedding=[2, 3, 3]))
            items = session.exec(select(Item.embedding.l2_distance([1, 1, 1]))).all()  # type: ignore
            assert items[0] == 3

    def test_vector_avg(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            res = session.exec(select(avg(Item.embedding))).first()
            assert res is None
            session.add(Item(embedding=[1, 2, 3]))
            session.add(Item(embedding=[4, 5, 6]))
            res = session.exec(select(avg(Item.embedding))).first()
            assert as_list(res) == [2.5, 3.5, 4.5]  # vk: a float32 ndarray

    def test_vector_sum(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            res = session.exec(select(sum(Item.embedding))).first()
            assert res is None
            session.add(Item(embedding=[1, 2, 3]))
            session.add(Item(embedding=[4, 5, 6]))
            res = session.exec(select(sum(Item.embedding))).first()
            assert as_list(res) == [5, 7, 9]  # vk: a float32 ndarray

    def test_halfvec_avg(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            res = session.exec(select(avg(Item.half_embedding))).first()
            assert res is None
            session.add(Item(half_embedding=[1, 2, 3]))
            session.add(Item(half_embedding=[4, 5, 6]))
            res = session.exec(select(avg(Item.half_embedding))).first()
            assert as_list(res, np.float16) == [2.5, 3.5, 4.5]  # vk: a float16 ndarray

    def test_halfvec_sum(self, engine: Engine, model: Any) -> None:
        Item = model
        with Session(engine) as session:
            res = session.exec(select(sum(Item.half_embedding))).first()
            assert res is None
            session.add(Item(half_embedding=[1, 2, 3]))
            session.add(Item(half_embedding=[4, 5, 6]))
            res = session.exec(select(sum(Item.half_embedding))).first()
            assert as_list(res, np.float16) == [5, 7, 9]  # vk: a float16 ndarray

    def test_bad_dimensions(self, engine: Engine, model: Any) -> None:
        Item = model
        item = Item(embedding=[1, 2])
        with Session(engine) as session:
            session.add(item)
            # vk: its own DimensionMismatchError (a ValueError), raised at bind time, not wrapped in StatementError
            with pytest.raises(vk.DimensionMismatchError, match='expects 3 dimensions, got 2'):
                session.commit()
