SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# uv installs from uv.lock; uv itself comes pinned by hash from tools/uv-requirements.txt into a venv of its own.
TOOLS := .venv-tools
UV := $(TOOLS)/bin/uv
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: help install upgrade-deps fmt lint test test-unit test-integration test-e2e test-container run run-api run-worker migrate token bench clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/'

$(UV): tools/uv-requirements.txt
	@test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	@$(TOOLS)/bin/python -m pip install --quiet --require-hashes -r tools/uv-requirements.txt && touch $(UV)

$(STAMP): pyproject.toml uv.lock $(UV)
	@$(UV) sync --quiet --locked --extra dev --extra parquet --python $(PYTHON) && touch $(STAMP)

install: $(STAMP) ## create .venv with exactly the versions in uv.lock (reportgen and its dev tools)

upgrade-deps: $(UV) ## refresh uv.lock to the newest versions pyproject.toml allows, install them, run lint and tests
	@$(UV) lock --upgrade && $(MAKE) lint test

fmt: $(STAMP) ## format and autofix
	@$(BIN)/ruff format src tests deploy && $(BIN)/ruff check --fix src tests deploy

lint: $(STAMP) ## ruff, mypy (strict), import-linter
	@$(BIN)/ruff check src tests deploy && $(BIN)/ruff format --check src tests deploy && $(BIN)/mypy && $(BIN)/lint-imports

test: $(STAMP) ## every test: unit, integration (PostgreSQL, Redis, SQLite), end to end
	@$(BIN)/pytest

test-unit: $(STAMP) ## the fast inner loop: no services needed
	@$(BIN)/pytest tests/unit

test-integration: $(STAMP) ## adapters against real PostgreSQL, Redis and SQLite
	@$(BIN)/pytest tests/integration

test-e2e: $(STAMP) ## real reportgen processes over HTTP
	@$(BIN)/pytest tests/e2e

test-container: $(STAMP) ## build the Dockerfile's image with podman and run it against PostgreSQL and Redis (opt-in)
	@REPORTGEN_CONTAINER_TEST=1 $(BIN)/pytest tests/e2e/test_container_image.py

run: $(STAMP) ## the embedded mode: SQLite under ./var, in-process worker, demo reports
	@$(BIN)/reportgen serve

migrate: $(STAMP) ## apply migrations to REPORTGEN_DATABASE_URL
	@$(BIN)/reportgen migrate

run-api: $(STAMP) ## production API (needs REPORTGEN_DATABASE_URL, REPORTGEN_REDIS_URL, a JWT key)
	@$(BIN)/reportgen serve

run-worker: $(STAMP) ## production worker (needs the same variables as run-api)
	@$(BIN)/reportgen worker

bench: $(STAMP) ## benchmarks (see README)
	@$(BIN)/python -m bench

clean: ## remove the virtual environments and local state
	@rm -rf $(VENV) $(TOOLS) var .mypy_cache .ruff_cache .pytest_cache
