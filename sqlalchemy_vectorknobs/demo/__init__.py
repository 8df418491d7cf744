"""The ``vectorknobs demo``: semantic search over Python's standard library docstrings.

``corpus`` reads the docstrings from the stdlib's source files with ``ast`` (nothing imported or
downloaded), ``store`` builds or reuses the SQLite database (embedded column, vec0 and FTS5
indexes, ``vk.backfill``), and ``app`` runs the searches and prints them::

    from pathlib import Path
    from sqlalchemy_vectorknobs.demo import run_demo

    run_demo(Path("vectorknobs-demo.db"), limit=1500)

Importing this package imports only the standard library; the submodules load the rest.
"""

from __future__ import annotations

from typing import Any

__all__ = ["run_demo"]


def run_demo(*args: Any, **kwargs: Any) -> int:
    """See :func:`sqlalchemy_vectorknobs.demo.app.run_demo`."""
    from .app import run_demo as run

    return run(*args, **kwargs)
