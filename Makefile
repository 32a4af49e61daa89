# tickhouse — the two commands are `make dev` and `make test`.
# Everything downloaded (uv, Python packages, later servers) is cached outside the repo.

SHELL := /bin/bash
PYTHON ?= python3.11
CACHE ?= $(HOME)/.cache/tickhouse
UV_VERSION := 0.13.9
UV := $(CACHE)/bootstrap/bin/uv
export UV_CACHE_DIR := $(CACHE)/uv
export UV_PYTHON_DOWNLOADS := never
export TICKHOUSE_HOME ?= $(CURDIR)/.tickhouse
export DAGSTER_HOME ?= $(TICKHOUSE_HOME)/dagster
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: dev install test lint format sample ingest doctor clean

$(UV):
	$(PYTHON) -m venv $(CACHE)/bootstrap
	$(CACHE)/bootstrap/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Installs exactly what uv.lock pins (the project, its tools and test dependencies).
install: $(UV)
	$(UV) sync --frozen --python $(PYTHON)

# A sample trading day in the landing folder (only if it is empty), then the Dagster UI with the
# sensors on: the sample is ingested and its bars appear without a click.
dev: install
	$(BIN)/tickhouse generate --if-empty --days 1 --symbols 5 --ticks-per-day 50000
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp infra/dagster/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml
	@echo "Dagster UI: http://$(HOST):$(PORT)"
	$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

test: install lint
	$(BIN)/pytest -q

lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ingest: install
	$(BIN)/tickhouse ingest

doctor: install
	$(BIN)/tickhouse doctor

clean:
	rm -rf .tickhouse .pytest_cache
