"""gunicorn deployment config: `gunicorn -c gunicorn.conf.py`.

Every value can be overridden on the command line or by the environment
variables named below.
"""

import os

from fleet_api.settings import SECRET_ENV, ephemeral_secret

wsgi_app = "fleet_api.app:get_app()"
bind = os.environ.get("FLEET_BIND", "127.0.0.1:8000")

# The store is process-local for now, so every request must reach the one
# process that holds it: one worker, threads for concurrency.
workers = int(os.environ.get("WEB_CONCURRENCY", "1"))
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "8"))

# We don't use gunicornc; a shared default socket path would also make two
# instances on one host fight over it.
control_socket_disable = True

# This file runs once, in the master, before any worker forks: a random key
# made here is inherited by every worker, so their tokens agree.
if not os.environ.get(SECRET_ENV):
    os.environ[SECRET_ENV] = ephemeral_secret()
