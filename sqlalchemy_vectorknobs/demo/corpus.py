"""The demo's corpus: docstrings of the Python standard library, read from source with ``ast``.

Nothing is imported or executed: each ``.py`` file under ``sysconfig.get_paths()["stdlib"]`` is
parsed, and the docstrings of the module, its public classes, functions and methods are taken with
``ast.get_docstring``. Tests, IDLE, tkinter, demos and installed packages are skipped. The same
Python gives the same documents in the same order, so a database built once can be recognised.
"""

from __future__ import annotations

import ast
import hashlib
import re
import sys
import sysconfig
import tokenize
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Document", "corpus_fingerprint", "harvest", "stdlib_dir", "trim"]

#: Directories (at any depth under the stdlib) whose files are not documentation of the library.
SKIP_DIRS = frozenset(
    {
        "test", "tests", "idle_test", "idlelib", "turtledemo", "site-packages", "dist-packages",
        "ensurepip", "__pycache__", "encodings", "pydoc_data", "lib-dynload", "__phello__",
    }
)
#: Longest ``text`` kept per document: enough for the summary paragraphs, short enough to embed fast.
MAX_CHARS = 320
MIN_CHARS = 24
_SPACES = re.compile(r"\s+")
_SENTENCE_END = re.compile(r"[.!?](?=\s)")


@dataclass(frozen=True)
class Document:
    """One docstring: where it comes from and its (trimmed) text."""

    module: str
    name: str  # qualified name: module, module.func, module.Class.method
    kind: str  # module, class, function, method
    text: str

    @property
    def title(self) -> str:
        return self.name


def stdlib_dir() -> Path:
    """The directory of this interpreter's pure-Python standard library."""
    return Path(sysconfig.get_paths()["stdlib"])


def trim(doc: str, limit: int = MAX_CHARS) -> str:
    """Whole paragraphs of ``doc`` (whitespace collapsed) up to ``limit`` characters; a first
    paragraph that is longer is cut at its last sentence end (else word) before the limit."""
    parts = [_SPACES.sub(" ", p).strip() for p in re.split(r"\n\s*\n", doc)]
    out = ""
    for para in (p for p in parts if p):
        candidate = f"{out}\n{para}" if out else para
        if len(candidate) <= limit:
            out = candidate
            continue
        if not out:
            head = para[:limit]
            ends = [m.end() for m in _SENTENCE_END.finditer(head + " ")]
            cut = ends[-1] if ends and ends[-1] >= limit // 3 else head.rfind(" ")
            out = head[: cut if cut > 0 else limit].rstrip() + ("" if ends and cut == ends[-1] else " …")
        break
    return out


def _modules(root: Path) -> Iterator[tuple[str, Path]]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP_DIRS or part.startswith(".") for part in rel.parts[:-1]):
            continue
        if rel.name == "__init__.py":
            parts = rel.parts[:-1]
        elif rel.name.startswith("__"):
            continue  # __main__.py, __future__'s feature table
        else:
            parts = (*rel.parts[:-1], rel.stem)
        if parts and all(p.isidentifier() for p in parts):
            yield ".".join(parts), path


def _public(name: str) -> bool:
    return not name.startswith("_") or (name.startswith("__") and name.endswith("__"))


def _module_docs(module: str, path: Path) -> list[Document]:
    """The module's documents, breadth first: the module, then top-level definitions, then members."""
    try:
        with tokenize.open(path) as f:
            tree = ast.parse(f.read(), filename=str(path))
    except (SyntaxError, UnicodeDecodeError, ValueError, OSError):
        return []
    levels: list[list[Document]] = [[], [], []]

    def add(level: int, name: str, kind: str, node: ast.AST) -> None:
        doc = ast.get_docstring(node, clean=True)  # type: ignore[arg-type]
        text = trim(doc) if doc else ""
        if len(text) >= MIN_CHARS:
            levels[level].append(Document(module, name, kind, text))

    add(0, module, "module", tree)
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and not node.name.startswith("_"):
            qual = f"{module}.{node.name}"
            is_class = isinstance(node, ast.ClassDef)
            add(1, qual, "class" if is_class else "function", node)
            if is_class:
                for member in node.body:
                    if isinstance(member, (ast.FunctionDef, ast.AsyncFunctionDef)) and _public(member.name):
                        add(2, f"{qual}.{member.name}", "method", member)
                    elif isinstance(member, ast.ClassDef) and _public(member.name):
                        add(2, f"{qual}.{member.name}", "class", member)
    return [d for level in levels for d in level]


def harvest(limit: int | None = None, root: Path | None = None) -> list[Document]:
    """Up to ``limit`` distinct stdlib docstrings, deterministic for a given Python.

    Modules take turns (round robin, in name order): every module's own docstring comes first,
    then every module's first public definition, and so on. A small ``limit`` thus still covers
    the whole library (``argparse``, ``gzip``, ``smtplib``, ...) instead of its first few modules.
    A docstring seen before (an override repeating its base class) is kept once.
    """
    per_module = [docs for docs in (_module_docs(m, p) for m, p in _modules(root or stdlib_dir())) if docs]
    seen: set[str] = set()
    out: list[Document] = []
    depth = 0
    while per_module and (limit is None or len(out) < limit):
        live = [docs for docs in per_module if depth < len(docs)]
        if not live:
            break
        for docs in live:
            doc = docs[depth]
            if doc.text not in seen:
                seen.add(doc.text)
                out.append(doc)
                if limit is not None and len(out) >= limit:
                    break
        per_module = live
        depth += 1
    return out


#: Bumped whenever the documents or the demo's tables change shape, so older demo files are rebuilt.
FORMAT = 1


def corpus_fingerprint(limit: int | None) -> str:
    """What identifies a corpus: the demo's format, the Python version, the stdlib path and the limit."""
    key = f"{FORMAT}|{sys.version}|{stdlib_dir()}|{MAX_CHARS}|{limit}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]
