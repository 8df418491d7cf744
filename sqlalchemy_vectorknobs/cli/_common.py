"""Shared pieces of the command modules: the one-line error, model loading, engine opening,
and the ``--model`` / reflection (``--table``) way of naming an embedded column.

Exit statuses: 0 done and all is well; 1 an error (one line on stderr); 2 bad command-line usage
(argparse); 3 the command ran and found a problem it reports (stale rows, mirror drift, a migrate
whose verification failed).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any

__all__ = [
    "FOUND_PROBLEMS",
    "CommandError",
    "add_embedded_target_args",
    "embedded_target",
    "load_model",
    "open_engine",
    "split_names",
]

#: Exit status of a check that ran and found something wrong (stale rows, drift, mismatch).
FOUND_PROBLEMS = 3


class CommandError(Exception):
    """A reason to stop, printed as one line."""


def load_model(spec: str, *, option: str = "--model") -> Any:
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise CommandError(f"{option} {spec!r} is not of the form module:Class.")
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


def _first_line(err: BaseException | None) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def open_engine(url: str, *, role: str = "database") -> Any:
    """A ``vk.create_engine`` engine that has connected once, or a one-line CommandError."""
    import sqlalchemy as sa

    import sqlalchemy_vectorknobs as vk

    try:
        engine = vk.create_engine(url)
        with engine.connect():
            pass
    except sa.exc.ArgumentError as err:
        raise CommandError(f"bad {role} URL {url!r}: {err}") from err
    except sa.exc.DBAPIError as err:
        raise CommandError(f"cannot connect to {url!r}: {_first_line(err.orig)}") from err
    except vk.VectorKnobsError:
        raise
    except ImportError as err:
        raise CommandError(f"cannot open {url!r}: its database driver is not installed ({_first_line(err)}).") from err
    return engine


def split_names(text: str, option: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise CommandError(f"{option} {text!r} names no column; give comma-separated column names.")
    return names


def add_embedded_target_args(p: argparse.ArgumentParser, *, model_required: bool = False) -> None:
    """``--model`` or the reflection options (``--table``, ``--text-fields``, ``--vector-field``, ``--embedder``)."""
    p.add_argument("--database", "-d", required=True, help="SQLAlchemy URL, e.g. sqlite:///docs.db")
    p.add_argument("--model", "-m", required=model_required, help="the mapped class as module:Class (module importable from here)")
    g = p.add_argument_group("without models (reflection)")
    g.add_argument("--table", help="table name (instead of --model)")
    g.add_argument("--schema", help="schema of --table (default: the connection's)")
    g.add_argument("--text-fields", help="comma-separated source text columns, e.g. title,content")
    g.add_argument("--vector-field", help="the vector column, e.g. embedding")
    g.add_argument(
        "--embedder",
        help="minilm | hashing[:dim] | module:Class (an Embedder instance, or a class made with no arguments)",
    )
    g.add_argument(
        "--add-columns",
        "--add-column",
        dest="add_columns",
        action="store_true",
        help="add what is missing: the vector column (vk.Vector(--dim)) and its <vector>_model / <vector>_hash companions",
    )
    g.add_argument("--dim", type=int, help="dimension of a vector column added by --add-columns (default: the embedder's)")


def embedded_target(args: argparse.Namespace, engine: Any) -> Any:
    """The model (``--model``) or reflected table (``--table`` ...) whose embedded column to work on."""
    if args.model:
        if args.table:
            raise CommandError("give either --model or --table, not both.")
        return load_model(args.model)
    if not args.table:
        raise CommandError("name the rows to work on: --model module:Class, or --table with --text-fields, --vector-field and --embedder.")
    missing = [opt for opt, value in (("--text-fields", args.text_fields), ("--vector-field", args.vector_field), ("--embedder", args.embedder)) if not value]
    if missing:
        raise CommandError(f"--table {args.table} also needs {', '.join(missing)}.")
    if args.dim is not None and args.dim < 1:
        raise CommandError(f"--dim {args.dim} is not a positive whole number.")
    from ..reflected import reflect_embedded_column

    return reflect_embedded_column(
        engine,
        args.table,
        split_names(args.text_fields, "--text-fields"),
        args.vector_field,
        args.embedder,
        schema=args.schema,
        add_columns=args.add_columns,
        add_vector=args.add_columns,
        dim=args.dim,
    )


def check_batch_size(value: int | None) -> None:
    if value is not None and value < 1:
        raise CommandError(f"--batch-size {value} is not a positive whole number.")
