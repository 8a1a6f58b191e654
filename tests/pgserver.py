"""A throwaway PostgreSQL server for tests: `with running_postgres() as dsn: ...`

initdb + pg_ctl in a fresh temp dir, listening on 127.0.0.1 at a free port
(and on a unix socket in that dir), with a `fleet` database and trust auth.
PostgreSQL refuses to run as root, so under root every server command runs as
the unprivileged `postgres` user, which owns the temp dir. Nothing is skipped:
if the server can't start, the caller gets an error with the server's log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg

START_TIMEOUT = 30  # seconds for pg_ctl -w to see the server accept connections
STOP_TIMEOUT = 30
COMMAND_TIMEOUT = 60  # hard cap on any one subprocess (initdb, pg_ctl)
START_ATTEMPTS = 3  # a free port can be taken between choosing and binding it
SERVER_USER = "postgres"  # the unprivileged OS user used when we are root
SUPERUSER = "postgres"  # the database superuser initdb creates
DATABASE = "fleet"

# Throwaway settings. The cluster is deleted when the tests end, so surviving
# an OS crash is irrelevant; turning off fsync, synchronous commit and full
# page writes only changes what reaches the disk, not when a commit becomes
# visible to other sessions, which is all our tests (and the app's "commit
# before responding" promise) depend on.
FAST_SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
}


class PostgresUnavailable(RuntimeError):
    """initdb/pg_ctl are missing or the server would not start."""


def find_bin_dir() -> Path:
    """The directory holding initdb and pg_ctl: PATH first, then the newest
    /usr/lib/postgresql/<version>/bin (Debian's layout)."""
    on_path = [shutil.which(name) for name in ("initdb", "pg_ctl")]
    if all(on_path):
        # Resolve symlinks: pg_ctl finds `postgres` next to its real self.
        return Path(os.path.realpath(on_path[1])).parent  # type: ignore[arg-type]

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin$", path)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else ()

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(candidate, n), os.X_OK) for n in ("initdb", "pg_ctl", "postgres")):
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found: need initdb and pg_ctl on PATH or in "
        "/usr/lib/postgresql/<version>/bin (apt-get install postgresql)"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Cluster:
    """One data directory and the commands that act on it."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port: int | None = None
        if self.as_root:
            try:
                account = pwd.getpwnam(SERVER_USER)
            except KeyError:
                shutil.rmtree(self.root, ignore_errors=True)
                raise PostgresUnavailable(
                    f"running as root, and there is no {SERVER_USER!r} user to run PostgreSQL as"
                ) from None
            os.chown(self.root, account.pw_uid, account.pw_gid)
        os.chmod(self.root, 0o700)

    def run(self, name: str, *args: str) -> subprocess.CompletedProcess:
        """Run a server binary, as `postgres` when we are root, cwd in our dir
        (postgres may not be allowed to read the caller's cwd)."""
        cmd = [str(self.bin_dir / name), *args]
        if self.as_root:
            # setpriv execs directly (no PAM session, unlike su/runuser), which
            # is what we want in containers.
            cmd = ["setpriv", f"--reuid={SERVER_USER}", f"--regid={SERVER_USER}",
                   "--init-groups", "--", *cmd] if shutil.which("setpriv") else \
                  ["runuser", "-u", SERVER_USER, "--", *cmd]
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        try:
            return subprocess.run(
                cmd, cwd=self.root, env=env, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT, check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(f"{name} did not finish in {COMMAND_TIMEOUT}s") from exc

    def initdb(self) -> None:
        result = self.run(
            "initdb", "-D", str(self.data), "-A", "trust", "-U", SUPERUSER,
            "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions",
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        """pg_ctl start -w on a free port, retried a few times in case the
        port was taken between choosing it and the server binding it."""
        errors = []
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            options = [
                "-c", "listen_addresses=127.0.0.1",
                "-c", f"port={self.port}",
                "-c", f"unix_socket_directories={self.root}",
            ]
            for key, value in FAST_SETTINGS.items():
                options += ["-c", f"{key}={value}"]
            result = self.run(
                "pg_ctl", "start", "-D", str(self.data), "-l", str(self.log),
                "-w", "-t", str(START_TIMEOUT), "-o", " ".join(options),
            )
            if result.returncode == 0:
                return
            errors.append(f"{result.stdout}\n{result.stderr}\n{self.log_tail()}")
            self.stop()  # in case it came up after pg_ctl gave up waiting
        raise PostgresUnavailable("PostgreSQL did not start:\n" + "\n---\n".join(errors))

    def stop(self) -> None:
        """Immediate shutdown: nothing here needs to survive. If pg_ctl can't
        stop it, kill the postmaster we started, by the pid it recorded."""
        if not (self.data / "postmaster.pid").exists():
            return
        result = None
        with contextlib.suppress(PostgresUnavailable):
            result = self.run("pg_ctl", "stop", "-D", str(self.data), "-m", "immediate",
                              "-w", "-t", str(STOP_TIMEOUT))
        if result is None or result.returncode != 0:
            with contextlib.suppress(OSError, ValueError, IndexError):
                pid = int((self.data / "postmaster.pid").read_text().split()[0])
                os.kill(pid, signal.SIGKILL)

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def running_postgres() -> Iterator[str]:
    """Yield the DSN of a fresh `fleet` database; stop the server and delete
    its files afterwards, whatever happened."""
    cluster = _Cluster(find_bin_dir())
    try:
        cluster.initdb()
        cluster.start()
        with psycopg.connect(cluster.dsn("postgres"), autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"CREATE DATABASE {DATABASE}")
        yield cluster.dsn(DATABASE)
    finally:
        try:
            cluster.stop()
        finally:
            cluster.remove()
