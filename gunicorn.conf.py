"""gunicorn deployment config: `gunicorn -c gunicorn.conf.py`.

Every value can be overridden on the command line or by the environment
variables named below.
"""

import os

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

# We don't use gunicornc; a shared default socket path would also make two
# instances on one host fight over it.
control_socket_disable = True

# This file runs once, in the master, before any worker forks: a random key
# made here is inherited by every worker, so their tokens agree.
if not os.environ.get(SECRET_ENV):
    os.environ[SECRET_ENV] = ephemeral_secret()
