"""The ``vectorknobs`` command line: thin argument parsing around the public Python API.

argparse (standard library) keeps ``vectorknobs --help`` working with no optional extra
installed: each command lives in its own module here, imports only the standard library at
module level, and registers its subparser through ``register(subparsers)``. Every failure exits
with status 1 and one line on stderr saying why.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from ._common import CommandError

__all__ = ["COMMANDS", "build_parser", "main"]

#: The command modules, in the order ``--help`` lists them.
COMMANDS = ("inspect", "sync", "backfill", "mirror", "migrate", "bench", "demo")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vectorknobs",
        description="Operate sqlalchemy-vectorknobs from the shell.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``vectorknobs`` console script and ``python -m sqlalchemy_vectorknobs``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="vectorknobs: %(message)s")
    try:
        return int(args.run(args))
    except CommandError as err:
        print(f"vectorknobs: error: {err}", file=sys.stderr)
        return 1
    except Exception as err:
        from ..exc import VectorKnobsError

        if isinstance(err, VectorKnobsError) or isinstance(err, ImportError):
            print(f"vectorknobs: error: {err}", file=sys.stderr)
            return 1
        from sqlalchemy.exc import DBAPIError, SQLAlchemyError

        if isinstance(err, SQLAlchemyError):  # the database refused something: its first line, not a traceback
            cause = err.orig if isinstance(err, DBAPIError) else err
            first = (str(cause).strip().splitlines() or [type(cause).__name__])[0]
            print(f"vectorknobs: error: the database said: {first}", file=sys.stderr)
            return 1
        raise
