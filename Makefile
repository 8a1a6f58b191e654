# Fleet API: every target sets up .venv from requirements.txt first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run prod test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

run: $(STAMP)  ## serve the API with gunicorn on http://127.0.0.1:8000
	$(BIN)/gunicorn -c gunicorn.conf.py

prod: $(STAMP)  ## nginx (buffering proxy) in front of gunicorn on http://127.0.0.1:8080; needs Debian's nginx
	$(BIN)/python scripts/prod.py

test: $(STAMP)  ## the whole test suite
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache reports var

.PHONY: load
load: $(STAMP)  ## Locust against a fresh gunicorn; env LOAD_USERS, LOAD_SPAWN_RATE, LOAD_DURATION, LOAD_P95_MS
	$(BIN)/python scripts/load.py

.PHONY: bench
bench: $(STAMP)  ## wrk vs a bare-Falcon ceiling, interleaved; env BENCH_ROUNDS, BENCH_DURATION, BENCH_CONNECTIONS, BENCH_SCENARIOS
	$(BIN)/python scripts/bench.py

.PHONY: hostile
hostile: $(STAMP)  ## slow and abusive clients against plain gunicorn, gevent and the prod layout; env HOSTILE_SECONDS
	$(BIN)/python scripts/hostile.py
