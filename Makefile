# messenger — two commands: `make run` and `make test` (more processes: `make cluster`).
SHELL := /bin/sh
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000
# make cluster: how many messenger processes (scripts/cluster; docs/DEPLOYMENT.md)
N ?= 3

.PHONY: run test install lint openapi migrate clean bench-store bench-http bench-ws bench-memory bench-cluster cluster start

$(BIN)/python:
	@PY="$$(scripts/find-python)" && echo "using $$PY" && "$$PY" -m venv $(VENV)
	@$(BIN)/python -m pip install --quiet --upgrade pip

# Runtime and test extras resolved in one pip call (pins in setup.cfg).
$(STAMP): $(BIN)/python setup.cfg pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

run: $(STAMP)
	HOST=$(HOST) PORT=$(PORT) $(BIN)/python -m messenger

# N processes on one machine: one shared SQLite file, a local Redis, nginx in front when installed.
cluster: $(STAMP)
	$(BIN)/python scripts/cluster $(N)

# The Procfile under honcho, with the venv's python on PATH (PORT as above).
start: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" PORT=$(PORT) $(BIN)/honcho start

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python scripts/gen_openapi --check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .

openapi: $(STAMP)
	$(BIN)/python scripts/gen_openapi

migrate: $(STAMP)
	$(BIN)/python scripts/migrate

bench-store: $(STAMP)
	$(BIN)/python scripts/bench_store

bench-http: $(STAMP)
	$(BIN)/python scripts/bench_http

bench-ws: $(STAMP)
	$(BIN)/python scripts/bench_ws

bench-memory: $(STAMP)
	$(BIN)/python scripts/bench_memory

bench-cluster: $(STAMP)
	$(BIN)/python scripts/bench_cluster

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
