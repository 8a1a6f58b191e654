# Fleet API: every target sets up .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)  ## serve the API with gunicorn on http://127.0.0.1:8000
	$(BIN)/gunicorn -c gunicorn.conf.py

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache reports var

.PHONY: load
load: $(STAMP)  ## Locust against a fresh gunicorn; env LOAD_USERS, LOAD_SPAWN_RATE, LOAD_DURATION, LOAD_P95_MS
	$(BIN)/python scripts/load.py

.PHONY: bench
bench: $(STAMP)  ## wrk vs a bare-Falcon ceiling, interleaved; env BENCH_ROUNDS, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_SCENARIOS
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "make bench needs wrk (https://github.com/wg/wrk), which is not on PATH. Install it:"; \
	  echo "  Debian/Ubuntu:  apt-get install -y wrk   (as root, or with sudo)"; \
	  echo "  macOS:          brew install wrk"; \
	  echo "then run make bench again."; exit 2; } >&2
	$(BIN)/python scripts/bench.py
