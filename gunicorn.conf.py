"""gunicorn deployment config: `gunicorn -c gunicorn.conf.py`.

Every value can be overridden on the command line or by the environment
variables named below.
"""

import os
import shutil
import tempfile

from gunicorn.glogging import CONFIG_DEFAULTS

from fleet_api.logs import OFF, log_format
from fleet_api.settings import ALGORITHM_ENV, HS256, SECRET_ENV, ephemeral_secret
from fleet_api.workers import choose_cpu, pin_worker, pinning_wanted

wsgi_app = "fleet_api.app:get_app()"
bind = os.environ.get("FLEET_BIND", "127.0.0.1:8000")

# The app reads its own settings (store, keys, limits) from the environment
# through fleet_api.settings.Settings.from_env(), the same way whatever starts
# it; this file configures gunicorn only.

# One process per core, each pinned to its own (below), and threads enough
# that the writes of one process meet: they share one SQLite commit (one
# fsync) through the store's group commit, so more threads per process means
# fewer, fuller commits, and 16 keep a pinned core busy while some of them
# wait for a commit. Measured on a 2-core machine only (2 x 16 pinned against
# 3 x 8, pinned and not): the figures are in the README ("Deployment with
# gunicorn"). On a larger host, start from its cores and measure.
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# gthread, except that a worker takes a new connection only while one of its
# threads is free, so a burst of connections is shared between the workers
# instead of piling onto whichever woke first (fleet_api/workers.py).
worker_class = "fleet_api.workers.BalancedThreadWorker"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
# Each worker pinned to one CPU, spread evenly over those the master may use
# (fleet_api/workers.py: its threads then hand the GIL over on one core, not
# across cores). FLEET_PIN_WORKERS=off leaves them to the kernel: for hosts
# where the server shares its cores with other busy processes. Read here, so
# a bad value stops the start with the reason.
_pin_workers = pinning_wanted()


def pre_fork(server, worker):
    if _pin_workers:
        choose_cpu(server, worker)


def post_fork(server, worker):
    pin_worker(server, worker)


# Requests gunicorn refuses before the app sees them (bytes): a JWT header
# is ~400 bytes, so these leave room while capping what a client can make us
# buffer. Bodies are capped by the app (FLEET_MAX_BODY_BYTES, 413).
limit_request_line = 4094
limit_request_fields = 50
limit_request_field_size = 8190
timeout = 30
graceful_timeout = 30
# Longer than a client's usual pause between requests (Locust's users wait up
# to 5 s): a server closing an idle connection just as the client reuses it
# makes that request fail. Behind a load balancer, set it above the LB's idle
# timeout for the same reason.
keepalive = int(os.environ.get("GUNICORN_KEEPALIVE", "10"))

# Recycle each worker after this many requests, plus a random 0..jitter (so
# the workers don't all restart at once), against slow leaks; 0 turns it off.
# A stopping worker finishes what it has (tests/test_production.py). Even
# flat out (~5,000 req/s per worker of two) one lives ~40 s, so its boot
# (~0.4 s of CPU, then cold caches) costs about 1%; at ordinary traffic, days.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", str(max_requests // 10)))

# Only these proxies may set X-Forwarded-For/-Proto; the app reads the same
# variable to find the client address for login throttling. Default: none.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "")

# Access log with each request's id, written by our lean logger class
# (fleet_api/logs.py): FLEET_ACCESS_LOG=- (stdout, default), a file path, or
# off. FLEET_LOG_FORMAT=json makes it and the error log JSON lines. The app's
# own log (e.g. the traceback of a 500, with the same id) goes to gunicorn's
# error log.
logger_class = "fleet_api.logs.GunicornLogger"
accesslog = os.environ.get("FLEET_ACCESS_LOG", "-")
if accesslog.strip().lower() == OFF:
    accesslog = None
_formatters = {"generic": {"()": "fleet_api.logs.JSONFormatter"}} if log_format() == "json" else {}
logconfig_dict = {
    "loggers": {name: {**logger, "propagate": False} for name, logger in CONFIG_DEFAULTS["loggers"].items()}
    | {"gunicorn.access": {"level": "INFO", "handlers": [], "propagate": False}}
    | {"fleet_api": {"level": "INFO", "handlers": ["error_console"], "propagate": False}},
    "formatters": {**CONFIG_DEFAULTS["formatters"], **_formatters},
}

# Metrics (fleet_api/metrics.py): prometheus_client's multiprocess mode needs
# one directory that every worker writes its values to, named before anything
# imports prometheus_client (so here, before even --preload loads the app),
# and emptied at each server start so counts of an earlier run never leak in.
# A worker that exits keeps its counts there.
METRICS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
_MADE_ENV = "FLEET_METRICS_DIR_MADE"  # we made it, so on_exit removes it
_metrics_on = os.environ.get("FLEET_METRICS", "on").strip().lower() != OFF
if _metrics_on and not os.environ.get(METRICS_DIR_ENV):
    os.environ[METRICS_DIR_ENV] = os.environ[_MADE_ENV] = tempfile.mkdtemp(prefix="fleet-metrics-")


def on_starting(server):
    if not _metrics_on:
        return
    folder = os.environ[METRICS_DIR_ENV]
    os.makedirs(folder, exist_ok=True)
    for name in os.listdir(folder):
        if name.endswith((".db", ".claim")):  # values, and metrics.py's thread slots
            os.remove(os.path.join(folder, name))


def child_exit(server, worker):
    # Runs in the master: drop the dead worker's live gauges (its counters and
    # histograms stay, so nothing it counted is lost or counted twice).
    if _metrics_on and os.environ.get(METRICS_DIR_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)


def worker_exit(server, worker):
    # Runs in the worker: write out the access lines still buffered.
    close = getattr(worker.log, "close_access", None)
    if close:
        close()


def on_exit(server):
    made = os.environ.get(_MADE_ENV)
    if made and made == os.environ.get(METRICS_DIR_ENV):
        shutil.rmtree(made, ignore_errors=True)


# We don't use gunicornc; a shared default socket path would also make two
# instances on one host fight over it.
control_socket_disable = True

# This file runs once, in the master, before any worker forks: a random key
# made here is inherited by every worker, so their tokens agree. (EdDSA and
# ES256 need no secret: each worker, or the master with --preload, loads the
# same FLEET_SIGNING_KEYS files; `kill -HUP` re-reads them in new workers.)
if not os.environ.get(SECRET_ENV) and (os.environ.get(ALGORITHM_ENV) or HS256) == HS256:
    os.environ[SECRET_ENV] = ephemeral_secret()
