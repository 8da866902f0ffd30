# Vagt — `make run` serves the embedded default model; `make test` runs lint and the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_DATA := .cache/test-data
DEFAULT_MODEL := smollm2:135m
# llama-cpp-python has no wheel for this platform: pip builds it once (about 5 minutes on
# 2 cores) for this CPU and caches the wheel.
export CMAKE_ARGS ?= -DGGML_NATIVE=ON

.PHONY: install run test lint bench clean test-servers

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/vagt models pull $(DEFAULT_MODEL)
	$(BIN)/vagt serve

lint: $(STAMP)
	$(BIN)/ruff check gateway inference tests bench
	$(BIN)/mypy

test: lint test-servers
	$(BIN)/vagt models pull $(DEFAULT_MODEL) --data-dir $(TEST_DATA)
	VAGT_TEST_DATA_DIR=$(TEST_DATA) $(BIN)/pytest

# Real servers the tests start: OpenLDAP slapd (Debian) and the oidc-provider IdP (npm).
# PostgreSQL's initdb/pg_ctl, redis-server and Node.js are on the machine already.
test-servers: tests/servers/node_modules/.installed
	@command -v slapd >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils >/dev/null; }

tests/servers/node_modules/.installed: tests/servers/package.json tests/servers/package-lock.json
	npm ci --prefix tests/servers --no-audit --no-fund --silent
	touch $@

# Benchmarks (not tests): each against a named peer, results in bench/results/ and
# docs/benchmarks.md. Run them on a quiet machine.
bench: $(STAMP) test-servers
	$(BIN)/pip install --quiet 'llama-cpp-python[server]==0.3.36'
	$(BIN)/vagt models pull $(DEFAULT_MODEL) --data-dir $(TEST_DATA)
	$(BIN)/python bench/streaming.py --data-dir $(TEST_DATA)
	PYTHONPATH=. $(BIN)/python bench/auth.py
	PYTHONPATH=. $(BIN)/python bench/authz.py
	PYTHONPATH=. $(BIN)/python bench/limits.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
