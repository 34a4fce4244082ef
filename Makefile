# Thin wrappers around the `lab` command (see README.md). Everything runs from .venv.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
TEST_STAMP := $(VENV)/.installed-test
ROUNDS ?= 3

.PHONY: help setup setup-test lab up down status doctor check test soak lint unit integration notebooks labs site bench-startup bench-produce bench-orders clean

help:
	@echo "make lab            set up, start the lab, open JupyterLab"
	@echo "make up | down      start / stop the lab (no JupyterLab)"
	@echo "make check          lint, labs up to date, every test that needs no cluster (minutes; no lab)"
	@echo "make test           make check, then the cluster tests, the notebooks, the disruptive tests"
	@echo "make soak           every lesson ROUNDS times (default 3), broker restart and down/up between"
	@echo "make labs           regenerate labs/ from solutions/"
	@echo "make site           the executed course as a static site in build/site, tested in Chromium"
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

# The test tools are an extra (pyproject.toml); installed on top of the lab, again whenever the
# lab's own install is redone (pyproject.toml changed).
$(TEST_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(TEST_STAMP)

setup-test: $(TEST_STAMP)

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

lint: setup-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

unit: setup-test
	$(BIN)/pytest tests/unit

integration: setup-test
	$(BIN)/pytest tests/integration

notebooks: setup-test
	$(BIN)/pytest tests/notebooks

labs: setup
	$(BIN)/python -m lab_env.labs

# Never starts a lab: the tests that need a cluster (marked `cluster` by tests/conftest.py) are
# left to `make test`. On two pytest-xdist workers (64 s on one here, 39 s on two).
check: setup-test lint
	$(BIN)/python -m lab_env.labs --check
	$(BIN)/pytest -m "not cluster" -n 2

# The rest (tests/suite.py): the cluster tests that may share the lab on two pytest-xdist
# workers, beside the disruptive ones (they kill, pause or restart brokers) on a lab of their own,
# then the serial ones (a time or a rate to bound) alone. It starts the lab if it is not running,
# and stops it afterwards if it did. WORKERS=1: one run, on the lab.
WORKERS ?= 2
test: check
	$(BIN)/python -m tests.suite --workers $(WORKERS)

# The course as a static site (coursesite/) from the notebooks the suite executed
# (test-artifacts/notebooks/; any missing is executed on the lab first, or refused with
# SITE_ARGS=--no-execute), then read page by page in Chromium (tests/site).
SITE_ARGS ?=
site: setup-test
	$(BIN)/python -m coursesite $(SITE_ARGS)
	$(BIN)/pytest --site -p no:cacheprovider tests/site

soak: setup-test
	$(BIN)/python -m tests.soak --rounds $(ROUNDS)

bench-startup: setup
	$(BIN)/python -m lab_env.benchmarks.startup

bench-produce: setup
	$(BIN)/python -m lab_env.benchmarks.produce

bench-orders: setup
	$(BIN)/python -m lab_env.benchmarks.orders

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
