"""Alembic environment: a vectorknobs engine and the one line that makes autogenerate vector-aware."""

import os
import sys

from alembic import context

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from models import Base

import alembic_ext
import sqlalchemy_vectorknobs as vk

config = context.config
url = context.get_x_argument(as_dictionary=True).get("url") or config.get_main_option("sqlalchemy.url")


def run_migrations_offline() -> None:
    context.configure(url=url, target_metadata=Base.metadata, literal_binds=True, **alembic_ext.autogenerate_options())
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = vk.create_engine(url)  # loads sqlite-vec / binary pgvector codecs
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters columns by rebuilding
            **alembic_ext.autogenerate_options(),
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
