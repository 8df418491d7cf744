"""The one lazy-import helper: optional backends load on first use and name their extra."""

from __future__ import annotations

import importlib
from types import ModuleType

from .exc import MissingDependencyError


def require(module: str, *, extra: str, feature: str, package: str | None = None) -> ModuleType:
    """Import ``module`` or raise :class:`MissingDependencyError` naming the extra to install.

    >>> require("json", extra="core", feature="JSON").__name__
    'json'
    """
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise MissingDependencyError(
            f"{feature} requires the '{package or module.split('.')[0]}' package; "
            f"install it with: pip install 'sqlalchemy-vectorknobs[{extra}]'."
        ) from err
