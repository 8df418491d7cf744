"""The ``alembic.plugins`` entry point (Alembic >= 1.18): registers the vector comparator.

Alembic loads this module while it is still importing itself, so nothing here may import Alembic
or the rest of ``alembic_ext`` at load time: the comparator is imported when first called.
"""

from __future__ import annotations

import sys
from typing import Any

PLUGIN_NAME = "alembic_ext"


def compare_vectors(*args: Any, **kw: Any) -> Any:
    from .compare import compare_vectors as compare

    return compare(*args, **kw)


def setup(plugin: Any) -> None:
    plugin.add_autogenerate_comparator(compare_vectors, "table", "vectors")
    package = sys.modules.get("alembic_ext")
    if package is not None and getattr(package, "DEFERRED", False):
        del sys.modules["alembic_ext"]  # re-imported in full once Alembic is loaded
