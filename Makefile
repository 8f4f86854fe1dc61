# The two commands a newcomer needs: `make up` (run the platform) and `make test` (the whole suite).
# Both create or refresh .venv from pyproject.toml on first use, with only python3 (>= 3.11) and make.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: up up-split test lint typecheck unit integration bench clean help

help:
	@echo "make up        run the whole platform on embedded defaults (SQLite, chDB, in-process bus, simulated MT5)"
	@echo "make test      install what tests need, then ruff, mypy and the whole pytest suite"
	@echo "make up-split  one process per service on PostgreSQL, Redis and NATS"
	@echo "make bench     run the benchmarks under bench/"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "aitrading needs Python >= 3.11; set PYTHON=python3.11 or newer")'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@$(BIN)/python -m pip install -q --upgrade pip
	@$(BIN)/python -m pip install -q -e '.[test,lstm]'
	@rm -f $(VENV)/.installed-* && touch $(STAMP)

up: $(STAMP)
	@$(BIN)/aitrading up

up-split: $(STAMP)
	@$(BIN)/aitrading up --split

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck
	$(BIN)/pytest -q

unit: $(STAMP)
	$(BIN)/pytest -q tests/unit

integration: $(STAMP)
	$(BIN)/pytest -q tests/integration

bench: $(STAMP)
	$(BIN)/aitrading bench bus
	$(BIN)/aitrading bench startup

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache .hypothesis
