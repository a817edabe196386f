# Two commands matter: `make run` (the product, with demo data) and `make test` (the suite).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FLASK := $(BIN)/flask --app wsgi

.DEFAULT_GOAL := help
.PHONY: help run test coverage lint fmt lock bench bench-quick chaos clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*## "}{printf "  %-12s %s\n", $$1, $$2}'

# Installs exactly the versions in requirements.lock (run `make lock` after changing pyproject.toml).
$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -r requirements.lock
	$(BIN)/python -m pip install -q --no-deps -e .
	@touch $(STAMP)

lock: $(STAMP) ## Re-resolve requirements.lock from pyproject.toml (runtime + test + dev)
	$(BIN)/pip-compile -q --extra test --extra dev --strip-extras --no-emit-index-url --no-emit-find-links \
	  -o requirements.lock pyproject.toml

PORT ?= 5000

run: $(STAMP) ## Run the product: migrate, seed demo data, start web + worker + cron + Redis (PORT=5000)
	$(FLASK) db upgrade
	$(FLASK) seed-demo
	$(FLASK) dev --port $(PORT)

test: $(STAMP) ## Run the test suite (SQLite + embedded Redis unless TEST_DATABASE_URL / TEST_REDIS_URL)
	$(BIN)/pytest $(PYTEST_ARGS)

# The chaos run is left out: it is bound by wall-clock windows, and tracing every process it starts
# (work horses included) slows them past those windows. CI runs it on its own (make test PYTEST_ARGS=tests/chaos).
coverage: $(STAMP) ## The suite but the chaos run, with branch coverage of app/ and workers/: fails under fail_under
	rm -f .coverage .coverage.*
	$(BIN)/pytest --cov --cov-report=term-missing:skip-covered -m "not chaos" $(PYTEST_ARGS)

lint: $(STAMP) ## ruff lint and format check, mypy type check
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

fmt: $(STAMP) ## Format the code
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

bench: $(STAMP) ## Full benchmarks (SQLite; BENCH_DATABASE_URL for PostgreSQL); appends to bench/RESULTS.md
	$(BIN)/python -m bench.run

bench-quick: $(STAMP) ## Small-size benchmarks, under about 3 minutes
	$(BIN)/python -m bench.run --quick

chaos: $(STAMP) ## Fault injection, full size: 30 requests, 10 worker kills, FLUSHALL, Redis/PostgreSQL restart, Stripe and SMTP down (loopback only)
	CHAOS_REQUESTS=30 CHAOS_KILLS=10 CHAOS_SMTP_DOWN=60 timeout -k 30 1200 $(BIN)/pytest tests/chaos -m chaos -q -s

clean: ## Remove the venv and local state
	rm -rf $(VENV) instance .pytest_cache .ruff_cache .coverage .coverage.* htmlcov
