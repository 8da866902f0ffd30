# Vagt — `make run` serves the embedded default model; `make test` runs lint and the test suite.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_DATA := .cache/test-data
DEFAULT_MODEL := smollm2:135m
# llama-cpp-python has no wheel for this platform: it is built once (about 5 minutes on 2
# cores) into a wheel cache outside the repository, keyed by version and build flags, and
# installed from there. Portable x86-64 flags (AVX2), not -march=native: a native build on a
# CPU with AMX crashed inside llama.cpp's AMX kernels on the first multi-token prompt.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS ?= -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
WHEELS := $(HOME)/.cache/vagt/wheels/llama-cpp-python-$(LLAMA_VERSION)-$(shell echo '$(LLAMA_CMAKE_ARGS)' | sha1sum | cut -c1-12)

.PHONY: install run test lint bench clean test-servers

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1 || \
		CMAKE_ARGS='$(LLAMA_CMAKE_ARGS)' $(BIN)/pip wheel --quiet --no-deps --no-cache-dir \
		--no-binary llama-cpp-python -w $(WHEELS) llama-cpp-python==$(LLAMA_VERSION)
	$(BIN)/pip install --quiet --find-links $(WHEELS) -e '.[dev]'
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

# Real servers the tests start: OpenLDAP slapd (Debian) and the oidc-provider IdP (npm); and
# Debian's Chromium for the review page's browser test (driven by Playwright, a dev dependency).
# PostgreSQL's initdb/pg_ctl, redis-server and Node.js are on the machine already.
test-servers: tests/servers/node_modules/.installed
	@command -v slapd >/dev/null && command -v chromium >/dev/null || { apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slapd ldap-utils chromium \
		>/dev/null; }

tests/servers/node_modules/.installed: tests/servers/package.json tests/servers/package-lock.json
	npm ci --prefix tests/servers --no-audit --no-fund --silent
	touch $@

# Benchmarks (not tests): each against a named peer, results in bench/results/ and
# docs/benchmarks.md. Run them on a quiet machine.
bench: $(STAMP) test-servers
	$(BIN)/pip install --quiet --find-links $(WHEELS) 'llama-cpp-python[server]==$(LLAMA_VERSION)'
	$(BIN)/vagt models pull $(DEFAULT_MODEL) --data-dir $(TEST_DATA)
	$(BIN)/python bench/streaming.py --data-dir $(TEST_DATA)
	PYTHONPATH=. $(BIN)/python bench/auth.py
	PYTHONPATH=. $(BIN)/python bench/authz.py
	PYTHONPATH=. $(BIN)/python bench/limits.py
	PYTHONPATH=. $(BIN)/python bench/audit.py
	$(BIN)/pip install --quiet presidio-analyzer presidio-anonymizer  # the peer, for the bench only
	PYTHONPATH=. $(BIN)/python bench/redaction.py

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
