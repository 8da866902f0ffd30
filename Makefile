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

.PHONY: install run test lint bench clean

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

test: lint
	$(BIN)/vagt models pull $(DEFAULT_MODEL) --data-dir $(TEST_DATA)
	VAGT_TEST_DATA_DIR=$(TEST_DATA) $(BIN)/pytest

bench: $(STAMP)
	$(BIN)/pip install --quiet 'llama-cpp-python[server]==0.3.36'
	$(BIN)/vagt models pull $(DEFAULT_MODEL) --data-dir $(TEST_DATA)
	$(BIN)/python bench/streaming.py --data-dir $(TEST_DATA)

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache
