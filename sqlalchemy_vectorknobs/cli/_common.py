"""Shared pieces of the command modules: the one-line error, model loading, engine opening."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__all__ = ["CommandError", "load_model", "open_engine"]


class CommandError(Exception):
    """A reason to stop, printed as one line."""


def load_model(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CommandError(f"--model {spec!r} is not of the form module:Class.")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise CommandError(f"cannot import module {module_name!r}: {err}") from err
    target = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise CommandError(f"module {module_name!r} has no attribute {attr!r}.")
        target = getattr(target, part)
    return target


def open_engine(url: str) -> Any:
    import sqlalchemy as sa

    import sqlalchemy_vectorknobs as vk

    try:
        engine = vk.create_engine(url)
        with engine.connect():
            pass
    except sa.exc.ArgumentError as err:
        raise CommandError(f"bad database URL {url!r}: {err}") from err
    except sa.exc.DBAPIError as err:
        raise CommandError(f"cannot connect to {url!r}: {str(err.orig).strip().splitlines()[0]}") from err
    return engine
