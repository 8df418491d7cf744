"""``vectorknobs mirror rebuild|verify|drain``: operate mirrors named by a config file, URLs, a model or a table."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from ._common import FOUND_PROBLEMS, CommandError, check_batch_size, open_engine

__all__ = ["load_mirrors", "register"]

_ACTIONS = {
    "rebuild": "refill each mirror from its table (a new generation, swapped in when complete)",
    "verify": "compare each mirror with its table; exit status 3 on drift (--repair rewrites the drifted rows)",
    "drain": "apply the pending outbox rows of each mirror",
}


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mirror",
        help="rebuild, verify or drain the mirrors of a table",
        description="Operate mirrors (Faiss, Chroma, Elasticsearch, third-party) kept in step with a SQL table.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in _ACTIONS.items():
        a = actions.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ". Mirrors come from --config and/or --mirror; their column from the "
            "configuration, --column module:Class.attr, or --table/--vector-field (reflection).",
            epilog=(
                "examples:\n"
                f"  vectorknobs mirror {name} -d sqlite:///app.db --config mirrors.toml\n"
                f"  vectorknobs mirror {name} -d sqlite:///docs.db --mirror faiss:///docs.vkfaiss --table docs --vector-field embedding\n\n"
                "mirrors.toml (or .json with the same shape):\n"
                "  [[mirrors]]\n"
                '  backend = "faiss"\n'
                '  column = "app.models:Doc.embedding"\n'
                '  path = "/var/lib/app/doc.vkfaiss"'
            ),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        a.add_argument("--database", "-d", required=True, help="SQLAlchemy URL of the mirrored table's database")
        a.add_argument("--config", "-c", help="a TOML or JSON file: {'mirrors': [<vk.mirror_from_config dict or URL>, ...]}")
        a.add_argument("--mirror", action="append", default=[], metavar="URL", help="a mirror URL, e.g. faiss:///docs.vkfaiss (repeatable)")
        a.add_argument("--name", action="append", default=[], help="only the mirror(s) with this name (repeatable)")
        a.add_argument("--column", help="the mirrored column as module:Class.attr (for mirrors whose configuration names none)")
        a.add_argument("--table", help="the mirrored table, by reflection (with --vector-field)")
        a.add_argument("--schema", help="schema of --table")
        a.add_argument("--vector-field", help="the mirrored vector column of --table")
        a.add_argument("--batch-size", type=int, default=None, help="rows per batch")
        a.add_argument("--no-progress", action="store_true", help="no progress bar")
        if name == "verify":
            a.add_argument("--repair", action="store_true", help="rewrite the missing, extra and mismatched rows, then verify again")
        a.set_defaults(run=run)


def _read_config(path: str) -> list[Any]:
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as err:
        raise CommandError(f"cannot read mirror config {path!r}: {err.strerror}.") from err
    try:
        if path.endswith(".toml"):
            import tomllib

            data: Any = tomllib.loads(raw.decode("utf-8"))
        else:
            data = json.loads(raw)
    except ValueError as err:
        raise CommandError(f"mirror config {path!r} is not valid {'TOML' if path.endswith('.toml') else 'JSON'}: {err}") from err
    entries = data.get("mirrors") if isinstance(data, dict) else data
    if not isinstance(entries, list) or not all(isinstance(e, (dict, str)) for e in entries):
        raise CommandError(f"mirror config {path!r} needs a list 'mirrors' of tables (dicts) or URL strings.")
    return entries


def _column(args: argparse.Namespace, engine: Any) -> Any:
    if args.table or args.vector_field:
        if not (args.table and args.vector_field):
            raise CommandError("--table and --vector-field go together.")
        if args.column:
            raise CommandError("give either --column or --table/--vector-field, not both.")
        from ..reflected import reflect_table

        table = reflect_table(engine, args.table, schema=args.schema)
        if args.vector_field not in table.c:
            raise CommandError(f"table {args.table!r} has no column {args.vector_field!r}.")
        return table.c[args.vector_field]
    return args.column  # "module:Class.attr": vk.mirror_from_config resolves it


def load_mirrors(args: argparse.Namespace, engine: Any) -> list[Any]:
    """The mirrors named by --config / --mirror (filtered by --name), built with vk.mirror_from_config."""
    import sqlalchemy_vectorknobs as vk

    if os.getcwd() not in sys.path:  # columns named "module:Class.attr" import from here
        sys.path.insert(0, os.getcwd())
    entries: list[Any] = _read_config(args.config) if args.config else []
    entries += args.mirror
    if not entries:
        raise CommandError("name the mirrors: --config FILE and/or --mirror URL.")
    column = _column(args, engine)
    mirrors = []
    for entry in entries:
        has_column = (isinstance(entry, dict) and "column" in entry) or (isinstance(entry, str) and "column=" in entry)
        mirrors.append(vk.mirror_from_config(entry, column=None if has_column else column))
    if args.name:
        unknown = [n for n in args.name if n not in {m.name for m in mirrors}]
        if unknown:
            raise CommandError(f"no mirror is named {unknown[0]!r}; the mirrors are {', '.join(m.name for m in mirrors)}.")
        mirrors = [m for m in mirrors if m.name in args.name]
    return mirrors


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    import sqlalchemy_vectorknobs as vk

    check_batch_size(args.batch_size)
    engine = open_engine(args.database)
    mirrors = load_mirrors(args, engine)
    batch = {"batch_size": args.batch_size} if args.batch_size else {}
    status = 0
    try:
        if args.action == "drain":
            import sqlalchemy as sa

            from ..sync.outbox import OUTBOX_TABLE

            if not sa.inspect(engine).has_table(OUTBOX_TABLE):
                raise CommandError(
                    f"the database has no {OUTBOX_TABLE} table, so there is nothing to drain "
                    "(mirrors fill it when attached with outbox=True)."
                )
            report = vk.drain(engine, mirrors, **batch)
            print(report)
            return 0 if report.ok else FOUND_PROBLEMS
        with Session(engine) as session:
            for mirror in mirrors:
                if args.action == "rebuild":
                    n = vk.rebuild(session, mirror, progress=not args.no_progress, **batch)
                    print(f"rebuilt mirror '{mirror.name}': {n} vector(s)")
                    continue
                drift = vk.verify(session, mirror, progress=not args.no_progress, repair=args.repair, **batch)
                print(drift)
                if drift.repaired:
                    drift = vk.verify(session, mirror, **batch)
                    print(f"after repair: {drift}")
                if not drift.ok:
                    status = FOUND_PROBLEMS
    finally:
        for mirror in mirrors:
            mirror.close()
    return status
