# leadflow — `make run` starts the whole system on this machine; `make test` runs every test.

PY ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PYTEST_ARGS ?=

.PHONY: help install run test lint format tools bench faults up down lock clean schemas

help:
	@echo "make run      start the whole system (embedded broker, SQLite, all services)"
	@echo "make test     lint + the whole test suite (unit, integration, e2e, deploy checks)"
	@echo "make bench    benchmarks (results in docs/benchmarks.md)"
	@echo "make faults   full-size fault scenarios"
	@echo "make up/down  the distributed stack with Docker Compose"

$(STAMP): pyproject.toml constraints.txt
	@$(PY) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "leadflow needs Python >= 3.11")'
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/leadflow up

tools:
	@bash deploy/scripts/ensure-tools.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/python scripts/check_structure.py

format: install
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

test: install tools lint
	$(BIN)/python -m pytest -q -p no:cacheprovider --durations=15 $(PYTEST_ARGS)

schemas: install
	$(BIN)/python -m shared.events.export docs/events

bench: install tools
	$(BIN)/python bench/run.py

faults: install
	LEADFLOW_FAULTS_SIZE=full $(BIN)/python -m pytest -q -p no:cacheprovider tests/faults

up:
	docker compose up -d --build

down:
	docker compose down

lock:
	$(BIN)/python -m pip freeze --exclude-editable | grep -v -E '^(pip|setuptools|wheel)==' > constraints.txt

clean:
	rm -rf var .pytest_cache .mypy_cache .ruff_cache
