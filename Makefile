# `make run` and `make test` each set everything up first (idempotent), then do their job.
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test check lint format bench

setup:
	./scripts/setup.sh

# The README's main command: embedded NATS + hub + edge agent with the bundled model.
run: setup
	$(BIN)/open-autoglm up

# The README's test command: lint, type-check, then the whole suite (what CI runs).
test: lint
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

format: setup
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

check: test

bench: setup
	$(BIN)/python bench/agent_vs_raw.py
