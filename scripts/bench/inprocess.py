"""Ours without a server: the CPU one authenticated, durable PUT costs the
app itself, with requests handed straight to its WSGI callable.

`put_cpu_us` runs `python -m scripts.bench.inprocess` in a process of its
own (prometheus_client must see its multiprocess directory before it is
first imported, and the bench's own threads stay out of the figure). There
the app is create_app's, on a temporary SQLite store (synchronous=full, so
every PUT is fsynced as under gunicorn), with metrics in a temporary
multiprocess directory as under gunicorn, and `threads` request threads send
PUTs at once on one CPU, as one gunicorn worker's threads do: the figure includes what
the group commit and the GIL cost between them, and leaves out HTTP and
gunicorn. The harness's own work per PUT (the environ, the body's JSON) is
in the figure too, a few µs, as gunicorn's would be. The ceiling burning
this much CPU per PUT (benchmarks/ceiling.py, BENCH_CEILING_WORK_US) is what
ours would reach if its CPU were all it cost.
"""

from __future__ import annotations

import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import falcon.testing
import orjson

from fleet_api.app import create_app
from fleet_api.workers import pinning_wanted
from scripts.bench.measure import BenchError

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "BENCH_INPROCESS "
TIMEOUT = 300  # seconds for the whole measurement


def put_cpu_us(
    ship_file: Path, ship_id: int, threads: int, env: dict[str, str], requests: int = 2000
) -> float:
    """Median CPU µs (user + system) per PUT, measured in a child process."""
    with tempfile.TemporaryDirectory(prefix="fleet-inprocess-") as work:
        metrics = Path(work) / "metrics"
        metrics.mkdir()
        child_env = {
            **os.environ,
            **env,
            "FLEET_STORE": f"sqlite:///{work}/fleet.db",
            "FLEET_METRICS": "on",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
        }
        command = [sys.executable, "-m", "scripts.bench.inprocess", str(ship_file), str(ship_id)]
        command += [str(threads), str(requests)]
        try:
            done = subprocess.run(
                command, cwd=ROOT, env=child_env, capture_output=True, text=True, timeout=TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise BenchError(f"the in-process PUT measurement took over {TIMEOUT}s") from None
    for line in reversed(done.stdout.splitlines()):
        if line.startswith(PREFIX):
            return float(line[len(PREFIX) :])
    raise BenchError(f"the in-process PUT measurement failed: {(done.stderr or done.stdout)[-2000:]}")


def measure(ship: dict, ship_id: int, threads: int, requests: int, repeats: int = 3) -> float:
    """In this process: the median over `repeats` runs of the process's CPU
    time per PUT, each run `requests` PUTs that each change the row (a new
    crew), shared out over `threads` threads."""

    app = create_app()  # settings from the environment, as under gunicorn
    token = orjson.loads(_call(app, "POST", "/auth/login", {"username": "user", "password": "password"})[1])
    crews = itertools.count(1)  # next() on it is atomic under the GIL: no lock in the measured loop

    def put() -> None:
        crew = next(crews)
        status, body = _call(
            app, "PUT", f"/api/ships/{ship_id}", {**ship, "crew": crew}, token["access_token"]
        )
        if not status.startswith("200"):
            raise RuntimeError(f"in-process PUT answered {status}: {body[:200]!r}")

    def run(count: int) -> None:
        errors: list[BaseException] = []

        def worker(n: int) -> None:
            try:
                for _ in range(n):
                    put()
            except BaseException as exc:  # raised again in the calling thread
                errors.append(exc)

        pool = [
            threading.Thread(target=worker, args=(count // threads + (i < count % threads),))
            for i in range(threads)
        ]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
        if errors:
            raise errors[0]

    run(min(200, requests))  # warm: connections, caches, the token check
    costs = []
    for _ in range(repeats):
        start = time.process_time()
        run(requests)
        costs.append((time.process_time() - start) / requests * 1e6)
    return statistics.median(costs)


def _call(app, method: str, path: str, body: dict, token: str | None = None) -> tuple[str, bytes]:
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    env = falcon.testing.create_environ(path=path, method=method, body=orjson.dumps(body), headers=headers)
    answer = {}

    def start_response(status, _headers, _exc=None):
        answer["status"] = status

    chunks = app(env, start_response)
    try:
        data = b"".join(chunks)
    finally:
        getattr(chunks, "close", lambda: None)()
    return answer["status"], data


def pin_like_a_worker() -> None:
    """On one CPU, as gunicorn.conf.py pins each worker (unless
    FLEET_PIN_WORKERS=off): the threads then hand the GIL over as a worker's do."""
    if pinning_wanted() and hasattr(os, "sched_getaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


if __name__ == "__main__":  # SHIP_FILE SHIP_ID THREADS REQUESTS
    ship_file, ship_id, threads, requests = sys.argv[1:5]
    pin_like_a_worker()  # before any thread starts: they inherit it
    ship = json.loads(Path(ship_file).read_text())
    print(f"{PREFIX}{measure(ship, int(ship_id), int(threads), int(requests)):.1f}", flush=True)
