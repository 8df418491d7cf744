"""The example's models: documents with an embedding, a half-precision summary vector, two indexes."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import sqlalchemy_vectorknobs as vk


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "document"
    id: Mapped[int] = mapped_column(primary_key=True)
    lang: Mapped[str] = mapped_column(sa.String(8))
    title: Mapped[str] = mapped_column(sa.String(200))
    embedding = mapped_column(vk.Vector(384))
    summary = mapped_column(vk.HalfVector(64))
    __table_args__ = (
        vk.VectorIndex("document_embedding_idx", "embedding", distance="cosine", m=16, metadata_columns=["lang"]),
        vk.VectorIndex("document_summary_idx", "summary", distance="l2"),
    )
