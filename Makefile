# The two commands most people need: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
BIN := $(VENV)/bin

.PHONY: venv test lint demo bench up down clean

venv:
	@./scripts/venv.sh

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: venv
	@./scripts/test.sh

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
