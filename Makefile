# Thin wrappers around the `lab` command (see README.md). Everything runs from .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: help setup lab up down status doctor test lint unit integration notebooks labs bench-startup bench-produce bench-orders clean

help:
	@echo "make lab            set up, start the lab, open JupyterLab"
	@echo "make up | down      start / stop the lab (no JupyterLab)"
	@echo "make test           set up if needed, then lint and the whole test suite"
	@echo "make labs           regenerate labs/ from solutions/"
	@echo "make bench-startup  seconds from 'lab up' to healthy, and the stack's memory"
	@echo "make bench-produce  the Python load generator vs kafka-producer-perf-test (lab up first)"
	@echo "make bench-orders   the case study's pipeline: orders/s and end-to-end latency (lab up first)"

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Python 3.11 or newer is needed; found " + sys.version.split()[0])'
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	$(BIN)/python -m lab_env.kernel
	@touch $(STAMP)

setup: $(STAMP)

lab: setup
	$(BIN)/lab up
	$(BIN)/lab jupyter

up: setup
	$(BIN)/lab up

down: setup
	$(BIN)/lab down

status: setup
	$(BIN)/lab status

doctor: setup
	$(BIN)/lab doctor

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: setup
	$(BIN)/pytest tests/unit

integration: setup
	$(BIN)/pytest tests/integration

notebooks: setup
	$(BIN)/pytest tests/notebooks

labs: setup
	$(BIN)/python -m lab_env.labs

test: setup lint
	$(BIN)/pytest

bench-startup: setup
	$(BIN)/python -m lab_env.benchmarks.startup

bench-produce: setup
	$(BIN)/python -m lab_env.benchmarks.produce

bench-orders: setup
	$(BIN)/python -m lab_env.benchmarks.orders

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
