# Fleet API. `make run` installs the runtime set only (requirements.txt);
# test, lint, load and bench add the tools (requirements-dev.txt) and the
# package itself in editable mode, so scripts import fleet_api without
# touching sys.path.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEV_STAMP := $(VENV)/.installed-dev

.PHONY: run prod test lint format clean load bench hostile

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

$(DEV_STAMP): $(STAMP) requirements-dev.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $(DEV_STAMP)

run: $(STAMP)  ## serve the API with gunicorn on http://127.0.0.1:8000
	$(BIN)/gunicorn -c gunicorn.conf.py

prod: $(STAMP)  ## nginx (buffering proxy) in front of gunicorn on http://127.0.0.1:8080; needs Debian's nginx
	$(BIN)/python -m scripts.prod

test: lint  ## lint, then the whole test suite
	$(BIN)/python -m pytest

lint: $(DEV_STAMP)  ## ruff: lint rules and formatting, as CI checks them
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(DEV_STAMP)  ## apply ruff's fixes and formatting
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

load: $(DEV_STAMP)  ## Locust against a fresh gunicorn; env LOAD_USERS, LOAD_SPAWN_RATE, LOAD_DURATION, LOAD_P95_MS
	$(BIN)/python -m scripts.load

bench: $(DEV_STAMP)  ## wrk vs the bare-Falcon ceilings, interleaved; env BENCH_ROUNDS, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_SCENARIOS, BENCH_SCALE, BENCH_PG, BENCH_BASELINE, BENCH_LAYOUTS, BENCH_CEILING_WORK (README: Benchmarks)
	@command -v wrk >/dev/null 2>&1 || { \
	  echo "make bench needs wrk (https://github.com/wg/wrk), which is not on PATH. Install it:"; \
	  echo "  Debian/Ubuntu:  apt-get install -y wrk   (as root, or with sudo)"; \
	  echo "  macOS:          brew install wrk"; \
	  echo "then run make bench again."; exit 2; } >&2
	$(BIN)/python -m scripts.bench

clean:
	rm -rf $(VENV) .pytest_cache reports var *.egg-info

hostile: $(DEV_STAMP)  ## slow and abusive clients against plain gunicorn, gevent and the prod layout; env HOSTILE_SECONDS
	$(BIN)/python -m scripts.hostile
