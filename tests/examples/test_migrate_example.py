"""examples/migrate_backends.py copies vectors between databases with vk.migrate, resumes, and verifies."""

from __future__ import annotations

import re

from .test_examples import run_example


def _check(out: str, target: str) -> None:
    assert f"source: sqlite, target: {target}" in out, out
    first = re.search(r"2\. first run: product: (\d+) row\(s\) copied in (\d+) batch\(es\), table created; "
                      r"rows (\d+) source / (\d+) target; vector checksum (\w+) / (\w+) equal", out)
    assert first and first.group(1) == first.group(3) == first.group(4) == "20000", out
    assert first.group(2) == "4" and first.group(5) == first.group(6), out
    again = re.search(r"3\. after adding 2000 rows to the source: product: (\d+) row\(s\) copied in 1 batch\(es\) "
                      r"\(resumed after key 20000\); rows 22000 source / 22000 target; vector checksum (\w+) / (\w+) equal", out)
    assert again and again.group(1) == "2000" and again.group(2) == again.group(3) != first.group(5), out
    assert "4. target holds 22000 rows; index used on the target: ['product_embedding_idx']" in out, out
    top = re.search(r"top 10 on the target: \[([\d, ]+)\]", out)
    assert top and len(top.group(1).split(",")) == 10, out
    assert "same as on the source: yes; same as numpy brute force: yes" in out, out
    assert out.rstrip().endswith("OK"), out


def test_migrate_example_sqlite_to_sqlite() -> None:
    _check(run_example("migrate_backends.py"), "sqlite")


def test_migrate_example_sqlite_to_postgresql(pg_database: str) -> None:
    _check(run_example("migrate_backends.py", pg_database), "postgresql")
