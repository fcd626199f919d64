# The two commands most people need: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv lock test lint demo bench faults up down clean

# This checkout's environment from uv.lock (uv comes from PyPI when missing).
venv:
	@./scripts/venv.sh

# After a change of dependencies in pyproject.toml: resolve again and rewrite uv.lock.
lock:
	uv lock

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

test: venv
	@./scripts/test.sh

# The fault campaign on a stack of its own: seeds 1..SEEDS (default 20), or SEED=N alone.
faults: venv
	$(BIN)/python -m tests.faults.campaign $(if $(SEED),--seed $(SEED),--seeds $(or $(SEEDS),20))

demo: venv
	$(BIN)/aigis demo

bench: venv
	$(BIN)/aigis bench

up: venv
	$(BIN)/aigis dev up

down: venv
	$(BIN)/aigis dev down

clean:
	rm -rf .state .pytest_cache .ruff_cache .mypy_cache
