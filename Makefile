# The two commands: `make serve` and `make test`. Everything installs into .venv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export MALLOC_MMAP_THRESHOLD_ ?= 33554432
export MALLOC_TRIM_THRESHOLD_ ?= 33554432

.PHONY: serve test system-deps lint types pytest openapi clients grpc bench golden export clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

serve: $(STAMP)
	$(BIN)/lossd serve

test: $(STAMP) system-deps lint types pytest

# PostgreSQL and Chromium for the monitoring tests, HAProxy and Prometheus for the replicas
# test (Debian packages; skipped loudly if absent).
system-deps:
	@scripts/system-deps.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest -q

openapi: $(STAMP)
	$(BIN)/python -m service.openapi > openapi/openapi.json

# After an API change: the OpenAPI document, then the TypeScript bindings generated from it.
TS := clients/typescript
clients: openapi $(TS)/node_modules/.package-lock.json
	cd $(TS) && npm run --silent generate

$(TS)/node_modules/.package-lock.json: $(TS)/package-lock.json
	cd $(TS) && npm ci --no-audit --no-fund

# After editing service/grpc/grpc_predict_v2.proto: its committed stubs (a test checks them).
grpc: $(STAMP)
	$(BIN)/python -m service.grpc.generate

bench: $(STAMP)
	$(BIN)/python -m bench --json bench/results.json --readme README.md

# tests/golden/ from the reference libraries, as the catalog declares (tests/kernels/catalog/);
# `make golden LOSSES="mse huber"` regenerates only those.
golden: $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[reference]'
	$(BIN)/python -m tests.kernels.catalog.golden $(LOSSES)

export: $(STAMP)
	$(BIN)/lossd export models

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis
