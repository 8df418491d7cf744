"""Alembic operations and autogenerate support for sqlalchemy-vectorknobs.

This package depends on ``sqlalchemy_vectorknobs`` and never the reverse. Its operations
(``op.create_vector_index`` and friends) and the autogenerate plugin are not written yet; until
they are, importing it gives only this docstring.
"""
