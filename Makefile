# The two commands of the README: `make serve` and `make test`. Both create the virtualenv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: serve test lint demo bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

## Start Strongroom on the embedded SQLite database (keys, database and first admin created on first run).
serve: $(BIN)/.installed
	$(BIN)/strongroom init
	$(BIN)/strongroom serve

## Lint, type-check and run the whole test suite on SQLite and PostgreSQL.
test: $(BIN)/.installed lint
	$(BIN)/pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check server tests bench
	$(BIN)/mypy server

## Load demo data into the local database.
demo: $(BIN)/.installed
	$(BIN)/strongroom init
	$(BIN)/strongroom demo

## Run the benchmarks (standard profile, SQLite + PostgreSQL; needs wrk): bench/results/<date>.json, docs/benchmarks.md.
bench: $(BIN)/.installed
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .mypy_cache .ruff_cache
