# tickhouse — the two commands are `make dev` and `make test`.
# Everything downloaded (uv, Python packages, later servers) is cached outside the repo.

SHELL := /bin/bash
PYTHON ?= python3.11
CACHE ?= $(HOME)/.cache/tickhouse
UV_VERSION := 0.13.9
export TICKHOUSE_CACHE := $(CACHE)
export UV_CACHE_DIR ?= $(CACHE)/uv
export UV_PYTHON_DOWNLOADS := never
export TICKHOUSE_HOME ?= $(CURDIR)/.tickhouse
export DAGSTER_HOME ?= $(TICKHOUSE_HOME)/dagster
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 3000

.PHONY: dev install test lint format sample ingest doctor clean

# Installs what a command needs before it runs (infra/prepare: each step says what it installs and
# how long it took). `dev` needs the Python packages; `test` also the servers, jars, browser and
# Superset the suite uses, so no test ever waits on a download.
install:
	TICKHOUSE_CACHE=$(CACHE) PYTHON=$(PYTHON) UV_VERSION=$(UV_VERSION) infra/prepare dev

prepare-test:
	TICKHOUSE_CACHE=$(CACHE) PYTHON=$(PYTHON) UV_VERSION=$(UV_VERSION) infra/prepare test

# A sample trading day in the landing folder (only if it is empty), then the Dagster UI with the
# sensors on: the sample is ingested and its bars appear without a click. On the local stack
# (eval "$(infra/local/stack env)" first: TICKHOUSE_FILER_GRPC is set) the landing listener is
# started too (idempotent), so new files are pushed to the 1 s push sensor instead of polled.
dev: install
	@if [ -n "$$TICKHOUSE_FILER_GRPC" ]; then infra/local/stack up landing-listener; fi
	$(BIN)/tickhouse generate --if-empty --days 1 --symbols 5 --ticks-per-day 50000
	@mkdir -p $(DAGSTER_HOME)
	@test -f $(DAGSTER_HOME)/dagster.yaml || cp infra/dagster/dagster.local.yaml $(DAGSTER_HOME)/dagster.yaml
	@echo "Dagster UI: http://$(HOST):$(PORT)"
	$(BIN)/dagster dev -w workspace.yaml -h $(HOST) -p $(PORT)

test: prepare-test lint
	$(BIN)/pytest -q

# The fresh-machine rehearsal: a clean clone of HEAD, every download cache empty, stack ports
# shifted (infra/test-fresh). `make test-fresh-dev` does the same for `make dev`.
.PHONY: test-fresh test-fresh-dev prepare-test
test-fresh:
	infra/test-fresh test

test-fresh-dev:
	infra/test-fresh dev

# mypy's settings are in pyproject.toml; warm (its cache in .mypy_cache) it takes about a second.
lint:
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

ingest: install
	$(BIN)/tickhouse ingest

doctor: install
	$(BIN)/tickhouse doctor

# Quick look: candlestick + volume of the bars, read straight from the Iceberg catalog
# (pyiceberg, no Trino), at http://$(HOST):$(VIEW_PORT).
VIEW_PORT ?= 8501
.PHONY: view metrics
view: install
	$(BIN)/tickhouse view --host $(HOST) --port $(VIEW_PORT)

# The pipeline's figures for Prometheus (the local stack's `stack up prometheus` scrapes 19464).
METRICS_PORT ?= 19464
metrics: install
	$(BIN)/tickhouse metrics --host $(HOST) --port $(METRICS_PORT)

clean:
	rm -rf .tickhouse .pytest_cache

# Benchmarks (docs/benchmarks.md, data sets cached in ~/.cache/tickhouse/bench-data).
# `make bench` = first the user paths — `tickhouse ingest` and the sensor under a real
# `dagster dev`, next to the expat floor, the lxml loop, pandas and Spark on the same files — for
# both profiles, one trading day in 10 and in 390 files, plus one 2 GB file through `tickhouse
# ingest`; then the component tables (parse, bulk ingest, bars) in 10 files; then the Spark
# engine on the local stack's standalone cluster, 1 and 2 workers, beside the Python engine
# (`bench-spark`: starts the stack and its `spark` service). `bench-user`, `bench-components` and
# `bench-spark` run each part. Sizes: BENCH_USER_TICKS (user paths), BENCH_TICKS
# (components: 1000000|10000000|30000000, or "10000000 30000000" for both and the linearity
# target). BENCH_REPEAT runs each user path that many times (median and range).
BENCH_TICKS ?= 10000000
BENCH_FILES ?= 10
BENCH_PEER_MB ?= 100
BENCH_TIMEOUT ?= 1800
BENCH_USER_TICKS ?= 10000000
BENCH_USER_FILES ?= 10 390
BENCH_REPEAT ?= 1
BENCH_USER_ARGS ?=
BENCH_RUN = $(BIN)/python -m bench.run --timeout $(BENCH_TIMEOUT) --out docs/benchmarks.md
BENCH_USER = $(BIN)/python -m bench.user_paths --timeout $(BENCH_TIMEOUT) --out docs/benchmarks.md \
	--profiles tickhouse fixml --repeat $(BENCH_REPEAT) $(BENCH_USER_ARGS)
BENCH_USER_FULL = $(BENCH_USER) --ticks $(BENCH_USER_TICKS) --files $(BENCH_USER_FILES) \
	--peer-mb $(BENCH_PEER_MB) --bigfile-ticks 18000000
BENCH_COMPONENTS = $(BENCH_RUN) --ticks $(BENCH_TICKS) --files $(BENCH_FILES) --peer-mb $(BENCH_PEER_MB)

.PHONY: bench bench-user bench-components bench-quick bench-bigfile bench-latency bench-spark

bench: install
	$(BENCH_USER_FULL) --command 'make bench'
	$(BENCH_COMPONENTS) --command 'make bench BENCH_TICKS="$(BENCH_TICKS)"'
	$(MAKE) bench-spark

# The Spark engine on a Spark standalone cluster (a master and 2 one-core workers on 127.0.0.1,
# `infra/local/stack up spark`) with 1 and 2 workers, beside the Python engine, same files, same
# storage; BENCH_SPARK_REPEAT runs each, interleaved (median and range), on one day of
# BENCH_SPARK_TICKS ticks in BENCH_SPARK_FILES files (generated once into the bench-data cache).
BENCH_SPARK_REPEAT ?= 3
BENCH_SPARK_TICKS ?= 3000000
BENCH_SPARK_FILES ?= 10
bench-spark: install
	infra/local/stack up
	infra/local/stack up spark
	eval "$$(infra/local/stack env)" && $(BIN)/python -m bench.spark_cluster \
		--ticks $(BENCH_SPARK_TICKS) --files $(BENCH_SPARK_FILES) --repeat $(BENCH_SPARK_REPEAT) \
		--out docs/benchmarks.md

bench-user: install
	$(BENCH_USER_FULL) --command 'make bench-user'

bench-components: install
	$(BENCH_COMPONENTS) --command 'make bench-components BENCH_TICKS="$(BENCH_TICKS)"'

# 1M ticks: the user paths in 10 files (both profiles), then the components; peers on 25 MB.
bench-quick: install
	$(BENCH_USER) --ticks 1000000 --files 10 --peer-mb 25 --command 'make bench-quick'
	$(BENCH_RUN) --ticks 1000000 --files $(BENCH_FILES) --peer-mb 25 --command 'make bench-quick'

# One ~2 GB file (18M ticks): the memory of the project's parse and full ingest on a big file.
bench-bigfile: install
	$(BENCH_RUN) --ticks 18000000 --files 1 --only expat,parse,ingest \
		--command 'make bench-bigfile'

# Landing → bars visible in Trino on the real stack: push ingestion (the stack's landing listener
# and the push sensor), 60 files of 100,000 ticks, one every 10 s (10 minutes); p50/p95/max, the
# project's own processing per file, run start-up and the backlog. BENCH_LATENCY_ARGS=--poll
# measures the 30 s polling sensor instead; e.g. "--files 6" for a short run.
bench-latency: install
	infra/local/stack up
	eval "$$(infra/local/stack env)" && $(BIN)/python -m bench.stack_latency --files 60 \
		--every 10 --out docs/benchmarks.md $(BENCH_LATENCY_ARGS)

# Reliability: bad input, and faults injected on a second SeaweedFS + PostgreSQL that the tests
# start (ports +2000), stop and restart themselves; the shared stack is never touched. Every case
# records rows expected vs found in test-artifacts/reliability.jsonl; the report prints the totals
# and fails when a row was lost or duplicated.
RELIABILITY_TALLY := $(CURDIR)/test-artifacts/reliability.jsonl
.PHONY: reliability
reliability: install
	@mkdir -p $(dir $(RELIABILITY_TALLY)) && : > $(RELIABILITY_TALLY)
	export TICKHOUSE_RELIABILITY_TALLY=$(RELIABILITY_TALLY); \
	$(BIN)/pytest -q tickhouse_dagster_tests/reliability tickhouse_dagster_tests/parsing/test_bad_files.py; \
	status=$$?; $(BIN)/python -m tickhouse_dagster_tests.reliability.report && exit $$status

# Superset on the local Trino (docs/superset.md), in its own venv under ~/.cache/tickhouse/superset:
# the "Market bars" dashboard at http://127.0.0.1:18088/superset/dashboard/market-bars/.
.PHONY: superset superset-down

superset: install
	infra/local/stack up
	eval "$$(infra/local/stack env)" && infra/superset/superset up

superset-down:
	infra/superset/superset down
