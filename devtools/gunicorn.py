"""Start and stop a real gunicorn serving Fleet API on a free loopback port.

Used by the real-server tests, `make load` and `make bench`: the server runs
with the project's own gunicorn.conf.py, is stopped by its PID, and gets
SIGTERM from the kernel if the process that started it dies first.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
from pathlib import Path

from devtools.processes import ChildServer, free_port, running, spawn, stop_process, worker_pids

PROJECT_ROOT = Path(__file__).resolve().parent.parent
GUNICORN_CONF = PROJECT_ROOT / "gunicorn.conf.py"
# For conf=None: without -c, gunicorn would read ./gunicorn.conf.py after all.
NO_CONF = Path(__file__).resolve().parent / "gunicorn_defaults.conf.py"


class GunicornServer(ChildServer):
    """`with GunicornServer(workers=4, env={...}) as server: server.url`"""

    name = "gunicorn"
    # tests/conftest.py turns this on: a server given no log then logs into
    # its own temporary directory, and one that exits before it is stopped
    # says so with its log (a warning), instead of only "connection refused".
    keep_logs = False
    # A test that ends the master itself (SIGTERM, kill -9) says so first.
    exit_expected = False

    def __init__(
        self,
        *,
        workers: int | None = None,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        app: str | None = None,
        port: int | None = None,
        log_path: Path | None = None,
        ready_path: str = "/api/users",
        startup_timeout: float = 30.0,
        conf: Path | None = GUNICORN_CONF,
        root: Path = PROJECT_ROOT,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.env = env or {}
        self.args = args or []
        self.app = app
        self.log_path = log_path
        self.ready_path = ready_path
        self.startup_timeout = startup_timeout
        # conf=None: plain gunicorn, none of our config (the bench's bare
        # ceiling), even from a directory holding a gunicorn.conf.py;
        # root: the checkout it runs from (the bench's baseline).
        self.conf = conf
        self.root = root
        self.process: subprocess.Popen | None = None
        self._log = None
        # Unless told otherwise, each server gets its own fresh SQLite store,
        # never the repository's var/fleet.db that `make run` uses.
        self._tmpdir = None
        if "FLEET_STORE" not in self.env or (log_path is None and self.keep_logs):
            self._tmpdir = tempfile.mkdtemp(prefix="fleet-server-")
        if "FLEET_STORE" not in self.env:
            self.env["FLEET_STORE"] = f"sqlite:///{self._tmpdir}/fleet.db"
        if log_path is None and self.keep_logs:
            self.log_path = Path(self._tmpdir) / "gunicorn.log"

    def worker_pids(self) -> set[int]:
        """The master's live workers."""
        return {pid for pid in worker_pids(self.pid) if running(pid)}

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "gunicorn",
            "-c",
            str(self.conf or NO_CONF),
            "--bind",
            f"127.0.0.1:{self.port}",
            "--no-control-socket",
        ]
        if self.workers:
            cmd += ["--workers", str(self.workers)]
        cmd += self.args
        if self.app:
            cmd.append(self.app)
        return cmd

    def start(self) -> GunicornServer:
        """Launch and wait until it answers; a server that never does is
        stopped, its log closed and its temporary store removed."""
        self.launch()
        try:
            self.wait_ready()
        except BaseException:
            self.exit_expected = True  # the error says why, with the log
            self.stop()
            self.cleanup()
            raise
        return self

    def launch(self) -> None:
        """Start the master without waiting for it to answer (see start()), so
        several servers can boot at once."""
        env = {**os.environ, **self.env}
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - closed in stop()
        self.process = spawn(
            self.command(),
            cwd=self.root,
            env=env,
            stdout=self._log,
            stderr=self._log,
            sig=signal.SIGTERM,  # the master's graceful stop also stops its workers
        )

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(self.url + self.ready_path, timeout=2):
                return True
        except urllib.error.HTTPError:
            return True  # it answered: up
        except OSError:
            return False

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM the master (graceful), SIGKILL its group if it lingers."""
        if self.process is None:
            return None
        if self.keep_logs and self.process.poll() is not None and not self.exit_expected:
            # Nobody stopped it: say so (once) with its log, before cleanup() removes it.
            self.exit_expected = True
            warnings.warn(
                f"gunicorn on {self.url} had exited with {self.process.returncode} before it was "
                f"stopped:\n{self.log_tail()}",
                RuntimeWarning,
                stacklevel=2,
            )
        stop_process(self.process, ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)))
        self.exit_expected = True  # stopped by us: a second stop() is a no-op
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        return self.process.returncode

    def log_tail(self, chars: int = 3000) -> str:
        if self.log_path is None or not self.log_path.exists():
            return ""
        return self.log_path.read_text(errors="replace")[-chars:]

    def __enter__(self) -> GunicornServer:
        return self.start()

    def cleanup(self) -> None:
        if self._tmpdir:
            shutil.rmtree(self._tmpdir, ignore_errors=True)

    def __exit__(self, *exc) -> None:
        self.stop()
        self.cleanup()
