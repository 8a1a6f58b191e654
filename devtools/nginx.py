"""Start and stop the production pair: nginx (deploy/nginx.conf) in front of gunicorn.

Used by `make prod` (scripts/prod.py), the tests and scripts/hostile.py.
gunicorn listens on a loopback port that only nginx talks to, trusting it
for X-Forwarded-For (FORWARDED_ALLOW_IPS=127.0.0.1); nginx runs in the
foreground as our child (`daemon off`) with its own prefix, pid file and
error log, so nothing is written under /etc or /var/log, and both are
stopped by PID: nginx first, gracefully, so nothing it accepted is cut off.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from devtools.gunicorn import GunicornServer
from devtools.processes import ChildServer, free_port, spawn, stop_process

TEMPLATE = Path(__file__).resolve().parent.parent / "deploy" / "nginx.conf"
NGINX_CANDIDATES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/nginx/sbin/nginx")
PROXY_ADDRESS = "127.0.0.1"  # the address nginx connects to gunicorn from
DEFAULTS = {
    "NGINX_WORKERS": "auto",
    "PER_CLIENT": "64",
    "IN_PROGRESS": "256",
    "ACCESS_LOG": "off",
}


def find_nginx() -> str | None:
    found = shutil.which("nginx")
    if found:
        return found
    return next((path for path in NGINX_CANDIDATES if os.access(path, os.X_OK)), None)


def real_ip_lines(load_balancers: str) -> str:
    """realip settings for load balancers in front: their X-Forwarded-For names the client."""
    nets = [net.strip() for net in load_balancers.split(",") if net.strip()]
    if not nets:
        return "# No load balancer in front: the peer address is the client (PROD_REAL_IP_FROM)."
    lines = [f"set_real_ip_from {net};" for net in nets]
    return "\n    ".join(lines + ["real_ip_header X-Forwarded-For;", "real_ip_recursive on;"])


def render(values: dict[str, str], template: Path = TEMPLATE) -> str:
    """The template with every @NAME@ filled in; a missing value is an error."""
    text = template.read_text()
    names = set(re.findall(r"@([A-Z_]+)@", text))
    missing = names - values.keys()
    if missing:
        raise KeyError(f"no value for {sorted(missing)} in {template}")
    for name in names:
        text = text.replace(f"@{name}@", values[name])
    return text


class NginxProxy(ChildServer):
    """`with NginxProxy(upstream="127.0.0.1:8001") as proxy: proxy.url`"""

    name = "nginx"
    ready_interval = 0.05

    def __init__(
        self,
        upstream: str,
        *,
        port: int | None = None,
        host: str = "127.0.0.1",
        run_dir: Path | None = None,
        settings: dict[str, str] | None = None,
        real_ip_from: str = "",
        startup_timeout: float = 10.0,
    ) -> None:
        self.nginx = find_nginx()
        if not self.nginx:
            raise FileNotFoundError("nginx not found: apt-get install -y nginx")
        self.upstream = upstream
        self.host = host
        self.port = port or free_port()
        self.url = f"http://{host}:{self.port}"
        self._own_dir = run_dir is None
        self.run_dir = Path(run_dir or tempfile.mkdtemp(prefix="fleet-nginx-")).resolve()
        self.settings = {**DEFAULTS, **(settings or {})}
        self.real_ip_from = real_ip_from
        self.startup_timeout = startup_timeout
        self.conf_path = self.run_dir / "nginx.conf"
        self.error_log = self.run_dir / "error.log"
        self.process: subprocess.Popen | None = None

    def config(self) -> str:
        root = os.geteuid() == 0
        return render(
            {
                **self.settings,
                "USER": "nobody nogroup" if root else os.environ.get("USER", "nobody"),
                "RUN_DIR": str(self.run_dir),
                "UPSTREAM": self.upstream,
                "LISTEN": f"{self.host}:{self.port}",
                "REAL_IP": real_ip_lines(self.real_ip_from),
            }
        )

    def command(self, *extra: str) -> list[str]:
        # -e: the error log before the config is read (nginx >= 1.19.5), so
        # nothing is ever written to the compiled-in /var/log/nginx.
        return [
            self.nginx,
            "-p",
            str(self.run_dir),
            "-c",
            str(self.conf_path),
            "-e",
            str(self.error_log),
            "-g",
            "daemon off;",
            *extra,
        ]

    def prepare(self) -> None:
        (self.run_dir / "tmp").mkdir(parents=True, exist_ok=True)
        # Workers run as nobody under root: they must reach their temp dirs.
        self.run_dir.chmod(0o755)
        (self.run_dir / "tmp").chmod(0o755)
        self.conf_path.write_text(self.config())
        check = subprocess.run(self.command("-t", "-q"), capture_output=True, text=True, timeout=30)
        if check.returncode:
            raise RuntimeError(f"nginx -t refused {self.conf_path}:\n{check.stderr}")

    def start(self) -> NginxProxy:
        self.prepare()
        with open(self.error_log, "ab") as log:
            self.process = spawn(self.command(), stdout=log, stderr=log, stdin=subprocess.DEVNULL)
        self.wait_ready()
        return self

    def _answers(self) -> bool:
        """Up once it accepts connections (a request would need the upstream up too)."""
        try:
            with socket.create_connection((self.host, self.port), timeout=1):
                return True
        except OSError:
            return False

    def reload(self) -> None:
        """SIGHUP: re-read the config, new workers, old ones finish what they have."""
        self.process.send_signal(signal.SIGHUP)

    def stop(self, timeout: float = 35.0) -> int | None:
        """SIGQUIT (graceful: stop listening, finish every request), then harder."""
        if self.process is None:
            return None
        steps = ((signal.SIGQUIT, timeout), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0))
        return stop_process(self.process, steps)

    def log_tail(self, chars: int = 3000) -> str:
        return self.error_log.read_text(errors="replace")[-chars:] if self.error_log.exists() else ""

    def cleanup(self) -> None:
        if self._own_dir:
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def __enter__(self) -> NginxProxy:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()


class ProductionServer:
    """gunicorn (gunicorn.conf.py) on a private loopback port with nginx in front.

    `url` is nginx's; `gunicorn.url` reaches the app directly (for tests
    that compare). Stopping is graceful and ordered: nginx stops listening
    and finishes every request it holds, then gunicorn finishes its own.
    """

    def __init__(
        self,
        *,
        workers: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        upstream_port: int | None = None,
        run_dir: Path | None = None,
        gunicorn_log: Path | None = None,
        nginx_settings: dict[str, str] | None = None,
        real_ip_from: str = "",
    ) -> None:
        env = {"FORWARDED_ALLOW_IPS": PROXY_ADDRESS, **(env or {})}
        self.gunicorn = GunicornServer(
            workers=workers,
            env=env,
            args=args,
            port=upstream_port,
            log_path=gunicorn_log,
        )
        self.nginx = NginxProxy(
            f"127.0.0.1:{self.gunicorn.port}",
            host=host,
            port=port,
            run_dir=run_dir,
            settings=nginx_settings,
            real_ip_from=real_ip_from,
        )
        self.url = self.nginx.url

    def start(self) -> ProductionServer:
        self.gunicorn.start()
        try:
            self.nginx.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Through nginx, an answer from the app itself."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "/health", timeout=2):
                    return
            except urllib.error.HTTPError as err:
                if err.code != 502:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"no answer from the app through {self.url} in {timeout}s")

    def stop(self, timeout: float = 35.0) -> tuple[int | None, int | None]:
        """(nginx's exit code, gunicorn's), stopped in that order."""
        try:
            nginx_code = self.nginx.stop(timeout)
        finally:
            gunicorn_code = self.gunicorn.stop(timeout)
        return nginx_code, gunicorn_code

    def cleanup(self) -> None:
        self.nginx.cleanup()
        self.gunicorn.cleanup()

    def __enter__(self) -> ProductionServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        try:
            self.stop()
        finally:
            self.cleanup()
