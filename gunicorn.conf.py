"""gunicorn deployment config: `gunicorn -c gunicorn.conf.py`.

Every value can be overridden on the command line or by the environment
variables named below.
"""

import os

from gunicorn.glogging import CONFIG_DEFAULTS

from fleet_api.settings import PROJECT_ROOT, SECRET_ENV, ephemeral_secret

wsgi_app = "fleet_api.app:get_app()"
bind = os.environ.get("FLEET_BIND", "127.0.0.1:8000")

# The embedded default store: one SQLite file that every worker shares.
os.environ.setdefault("FLEET_STORE", f"sqlite:///{PROJECT_ROOT / 'var' / 'fleet.db'}")

# Several processes for the cores, a few threads each to overlap the waits on
# SQLite's fsync; figures behind these numbers are in the README.
workers = int(os.environ.get("WEB_CONCURRENCY", "4"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "4"))

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
# flat out (~2,500 req/s per worker) one lives ~80 s, so its boot (~0.4 s of
# CPU, then cold caches) costs under 0.5%; at ordinary traffic, days.
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "200000"))
max_requests_jitter = int(os.environ.get("GUNICORN_MAX_REQUESTS_JITTER", str(max_requests // 10)))

# Only these proxies may set X-Forwarded-For/-Proto; the app reads the same
# variable to find the client address for login throttling. Default: none.
forwarded_allow_ips = os.environ.setdefault("FORWARDED_ALLOW_IPS", "")

# Access log on stdout with each request's id; the app's own log (e.g. the
# traceback of a 500, with the same id) goes to gunicorn's error log.
accesslog = os.environ.get("FLEET_ACCESS_LOG", "-")
access_log_format = '%(h)s %(t)s "%(r)s" %(s)s %(b)s %(M)sms rid=%({x-request-id}o)s'
logconfig_dict = {
    "loggers": {
        name: {**logger, "propagate": False} for name, logger in CONFIG_DEFAULTS["loggers"].items()
    }
    | {"fleet_api": {"level": "INFO", "handlers": ["error_console"], "propagate": False}}
}

# We don't use gunicornc; a shared default socket path would also make two
# instances on one host fight over it.
control_socket_disable = True

# This file runs once, in the master, before any worker forks: a random key
# made here is inherited by every worker, so their tokens agree.
if not os.environ.get(SECRET_ENV):
    os.environ[SECRET_ENV] = ephemeral_secret()
