SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: help install fmt lint test test-unit test-integration test-e2e run run-api run-worker migrate token bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip && $(BIN)/python -m pip install --quiet -e '.[dev]' && touch $(STAMP)

install: $(STAMP) ## create .venv and install reportgen with its dev tools

fmt: $(STAMP) ## format and autofix
	@$(BIN)/ruff format src tests && $(BIN)/ruff check --fix src tests

lint: $(STAMP) ## ruff, mypy (strict), import-linter
	@$(BIN)/ruff check src tests && $(BIN)/ruff format --check src tests && $(BIN)/mypy && $(BIN)/lint-imports

test: $(STAMP) ## every test: unit, integration (PostgreSQL, Redis, SQLite), end to end
	@$(BIN)/pytest

test-unit: $(STAMP) ## the fast inner loop: no services needed
	@$(BIN)/pytest tests/unit

test-integration: $(STAMP) ## adapters against real PostgreSQL, Redis and SQLite
	@$(BIN)/pytest tests/integration

test-e2e: $(STAMP) ## real reportgen processes over HTTP
	@$(BIN)/pytest tests/e2e

run: $(STAMP) ## the embedded mode: SQLite under ./var, in-process worker, demo reports
	@$(BIN)/reportgen serve

migrate: $(STAMP) ## apply migrations to REPORTGEN_DATABASE_URL
	@$(BIN)/reportgen migrate

run-api: $(STAMP) ## production API (needs REPORTGEN_DATABASE_URL, REPORTGEN_REDIS_URL, a JWT key)
	@$(BIN)/reportgen serve

run-worker: $(STAMP) ## production worker through the arq CLI
	@$(BIN)/arq bootstrap.worker.WorkerSettings

bench: $(STAMP) ## benchmarks (see README)
	@$(BIN)/python -m bench

clean: ## remove the virtual environment and local state
	@rm -rf $(VENV) var .mypy_cache .ruff_cache .pytest_cache
