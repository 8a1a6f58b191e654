"""`make prod`: the production layout on this machine, nginx in front of gunicorn.

gunicorn (gunicorn.conf.py, the same store as `make run`: var/fleet.db)
listens on a loopback port only nginx uses; nginx (deploy/nginx.conf, its
own prefix in var/nginx: config, pid file, error log) listens for clients.
Both run in the foreground; Ctrl-C or SIGTERM stops them in order, nginx
first and gracefully, so every request already accepted is answered.

Environment (all optional):
  PROD_LISTEN          where nginx listens                 (default 127.0.0.1:8080)
  PROD_UPSTREAM_PORT   gunicorn's loopback port             (default 8081)
  PROD_REAL_IP_FROM    load balancers in front (IPs/CIDRs, comma-separated)
  PROD_PER_CLIENT      requests in progress per client address (default 64)
  PROD_IN_PROGRESS     requests in progress in all          (default 256)
  PROD_ACCESS_LOG      nginx's access log: off or a path    (default off; gunicorn logs each request)
  FLEET_*, WEB_CONCURRENCY, GUNICORN_* ...               passed to gunicorn
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from devtools.nginx import ProductionServer
from fleet_api.settings import DEFAULT_STORE

ROOT = Path(__file__).resolve().parent.parent


class Stop(Exception):
    pass


def _stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


def main() -> int:
    host, _, port = os.environ.get("PROD_LISTEN", "127.0.0.1:8080").rpartition(":")
    settings = {
        name: os.environ[f"PROD_{name}"]
        for name in ("PER_CLIENT", "IN_PROGRESS", "ACCESS_LOG")
        if os.environ.get(f"PROD_{name}")
    }
    env = {"FLEET_STORE": os.environ.get("FLEET_STORE", DEFAULT_STORE)}  # the same as make run
    run_dir = ROOT / "var" / "nginx"
    server = ProductionServer(
        env=env,
        host=host or "127.0.0.1",
        port=int(port),
        upstream_port=int(os.environ.get("PROD_UPSTREAM_PORT", "8081")),
        run_dir=run_dir,
        gunicorn_log=Path("/dev/stdout"),
        nginx_settings=settings,
        real_ip_from=os.environ.get("PROD_REAL_IP_FROM", ""),
    )
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    try:
        server.start()
        print(
            f"Fleet API behind nginx on {server.url} (gunicorn on {server.gunicorn.url}, "
            f"nginx files in {run_dir}); Ctrl-C stops both.",
            flush=True,
        )
        while server.nginx.process.poll() is None and server.gunicorn.process.poll() is None:
            time.sleep(0.5)
        print("one of the pair exited on its own; stopping the other", file=sys.stderr)
        return 1
    except Stop as why:
        print(f"{why}: stopping nginx (gracefully), then gunicorn", flush=True)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        codes = server.stop()
        print(f"stopped: nginx exit {codes[0]}, gunicorn exit {codes[1]}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
