"""``vectorknobs sync check|fix``: count stale embeddings (exit 3 when there are any) and repair them."""

from __future__ import annotations

import argparse
import json
from typing import Any

from ._common import FOUND_PROBLEMS, add_embedded_target_args, check_batch_size, embedded_target, open_engine

__all__ = ["register"]


def register(sub: Any) -> None:
    p = sub.add_parser(
        "sync",
        help="check (exit 3 when stale rows exist) or fix the embeddings of a model or a table",
        description="Find rows whose vector is missing, made by another model, or made from other text; fix them with backfill.",
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("check", "count stale rows; exit status 3 when there are any (0 when none)"),
        ("fix", "embed the stale rows, then count again (exit status 0 when none are left)"),
    ):
        a = actions.add_parser(
            name,
            help=text,
            description=text[0].upper() + text[1:] + ".",
            epilog=(
                "examples:\n"
                f"  vectorknobs sync {name} -d sqlite:///app.db --model app.models:Doc\n"
                f"  vectorknobs sync {name} -d sqlite:///docs.db --table docs --text-fields title,content \\\n"
                "      --vector-field embedding --embedder hashing:384" + (" --auto-fix" if name == "check" else "")
            ),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        add_embedded_target_args(a)
        if name == "check":
            a.add_argument("--auto-fix", action="store_true", help="fix the stale rows found (as 'sync fix'), then count again")
        a.add_argument("--batch-size", type=int, default=None, help="rows per backfill batch (default: the column's)")
        a.add_argument("--no-progress", action="store_true", help="no progress bar")
        a.add_argument("--json", action="store_true", help="print the counts as JSON")
        a.set_defaults(run=run)


def _print(counts: list[Any], out: dict[str, Any] | None, label: str) -> None:
    """Print the counts now, or (``--json``) keep them in ``out`` for one JSON document at the end."""
    if out is not None:
        out[label] = [{"column": c.column, "rows": c.rows, "stale": c.stale, "missing": c.missing,
                       "other_model": c.other_model, "changed_text": c.changed_text} for c in counts]
        return
    for c in counts:
        print(f"{label}: {c}")


def run(args: argparse.Namespace) -> int:
    from sqlalchemy.orm import Session

    import sqlalchemy_vectorknobs as vk

    check_batch_size(args.batch_size)
    engine = open_engine(args.database)
    target = embedded_target(args, engine)
    out: dict[str, Any] | None = {} if args.json else None
    counts = vk.count_stale(engine, target)
    fix = args.action == "fix" or getattr(args, "auto_fix", False)
    _print(counts, out, "before" if fix else "stale")
    if fix and any(c.stale for c in counts):
        with Session(engine) as session:
            report = vk.backfill(session, target, batch_size=args.batch_size, progress=not args.no_progress)
        if out is None:
            print(f"embedded {report.embedded} row(s) in {report.batches} batch(es); {len(report.failures)} batch(es) failed")
            for f in report.failures:
                print(f"  failed: {f.column} keys {f.first_key!r}..{f.last_key!r} ({f.rows} rows): {f.error}")
        else:
            out["embedded"] = report.embedded
            out["failed_batches"] = len(report.failures)
        counts = vk.count_stale(engine, target)
    if fix:
        _print(counts, out, "after")
    if out is not None:
        print(json.dumps(out))
    return FOUND_PROBLEMS if any(c.stale for c in counts) else 0
