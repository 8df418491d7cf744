"""Every code block marked runnable in the docs and the README runs, in page order, and raises nothing.

The convention: a line ``<!-- runnable -->`` directly before a fenced ``python`` block. The blocks
of one page run in sequence in one namespace (a page is one session at a Python prompt), in a
fresh temporary directory, so ``sqlite:///items.db`` in a block is a file of that directory.
Blocks use SQLite (no server). A marked block that raises fails the page's test with the block's
first line number; a marker not followed by a python block is an error too.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGES = sorted((ROOT / "docs").rglob("*.md")) + [ROOT / "README.md"]
MARKER = "<!-- runnable -->"
_FENCE = re.compile(r"^```python\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first code line
    code: str


def runnable_blocks(page: Path) -> list[Block]:
    """The marked blocks of ``page``, in order; a marker that is not followed by a python block raises."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    for i, line in enumerate(lines):
        if line.strip() != MARKER:
            continue
        if i + 1 >= len(lines) or not _FENCE.match(lines[i + 1].strip()):
            raise AssertionError(f"{page.name}:{i + 1}: {MARKER} must be followed directly by a ```python block.")
        end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == "```"), None)
        if end is None:
            raise AssertionError(f"{page.name}:{i + 2}: the runnable block is never closed.")
        blocks.append(Block(page, i + 3, "\n".join(lines[i + 2 : end]) + "\n"))
    return blocks


PAGES_WITH_BLOCKS = [p for p in PAGES if MARKER in p.read_text(encoding="utf-8")]


def test_runnable_blocks_exist() -> None:
    """The suite cannot pass vacuously: the getting-started page and the README carry runnable blocks."""
    counts = {p.relative_to(ROOT).as_posix(): len(runnable_blocks(p)) for p in PAGES_WITH_BLOCKS}
    assert sum(counts.values()) >= 8, counts
    assert counts.get("docs/getting-started.md", 0) >= 5, counts
    assert counts.get("README.md", 0) >= 1, counts


@pytest.mark.parametrize("page", PAGES_WITH_BLOCKS, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_page_blocks_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("sqlite_vec", reason="runnable blocks use SQLite + sqlite-vec (extra [sqlite])")
    monkeypatch.chdir(tmp_path)
    # A real module in sys.modules, so SQLAlchemy can resolve the annotations of classes a block declares.
    module = types.ModuleType(f"vk_docs_{page.stem.replace('-', '_')}")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    namespace = module.__dict__
    for block in runnable_blocks(page):
        out = io.StringIO()
        try:
            with contextlib.redirect_stdout(out):
                exec(compile(block.code, f"{page.name}:{block.line}", "exec", dont_inherit=True), namespace)  # noqa: S102
        except Exception as err:
            pytest.fail(f"{page.relative_to(ROOT)} block at line {block.line} raised {type(err).__name__}: {err}\n"
                        f"printed before it:\n{out.getvalue()}")
