"""A throwaway PostgreSQL server for tests: `with running_postgres() as dsn: ...`

initdb in a fresh temp dir, then the postmaster itself as our child process,
listening on 127.0.0.1 at a free port (and on a unix socket in that dir), with
a `fleet` database and trust auth. It is stopped by its PID, and the kernel
sends it SIGQUIT (immediate shutdown) if the process that started it dies
first, so an interrupted test run leaves no server behind (pg_ctl would
detach it from us). PostgreSQL refuses to run as root, so under root every
server command runs as the unprivileged `postgres` user, which owns the temp
dir. Nothing is skipped: if the server can't start, the caller gets an error
with the server's log.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import psycopg.sql

from devtools.processes import free_port, spawn, stop_process

START_TIMEOUT = 30  # seconds for the server to accept connections
STOP_TIMEOUT = 30
COMMAND_TIMEOUT = 60  # hard cap on initdb
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
    """initdb/postgres are missing or the server would not start."""


def find_bin_dir() -> Path:
    """The directory holding initdb and postgres: beside initdb on PATH
    (links resolved), else the newest /usr/lib/postgresql/<version>/bin
    (Debian's layout)."""
    initdb = shutil.which("initdb")
    if initdb and os.access(Path(os.path.realpath(initdb)).parent / "postgres", os.X_OK):
        return Path(os.path.realpath(initdb)).parent

    def version(path: str) -> tuple[int, ...]:
        match = re.search(r"/postgresql/([\d.]+)/bin$", path)
        return tuple(int(p) for p in match.group(1).split(".") if p) if match else ()

    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=version, reverse=True):
        if all(os.access(Path(candidate, n), os.X_OK) for n in ("initdb", "postgres")):
            return Path(candidate)
    raise PostgresUnavailable(
        "PostgreSQL server binaries not found: need initdb and postgres on PATH or in "
        "/usr/lib/postgresql/<version>/bin (apt-get install postgresql)"
    )


class _Cluster:
    """One data directory and the commands that act on it."""

    def __init__(self, bin_dir: Path, settings: dict[str, str] | None = None) -> None:
        self.bin_dir = bin_dir
        self.settings = {**FAST_SETTINGS, **(settings or {})}
        self.as_root = os.geteuid() == 0
        self.root = Path(tempfile.mkdtemp(prefix="fleet-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port: int | None = None
        self.process: subprocess.Popen | None = None
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

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C"
        return env

    def _drop_privileges(self) -> None:
        """In the child, before exec: become `postgres` when we are root."""
        if self.as_root:
            account = pwd.getpwnam(SERVER_USER)
            os.initgroups(SERVER_USER, account.pw_gid)
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)

    def run(self, name: str, *args: str) -> subprocess.CompletedProcess:
        """Run a server binary to completion, as `postgres` when we are root,
        cwd in our dir (postgres may not be allowed to read the caller's cwd)."""
        try:
            return subprocess.run(
                [str(self.bin_dir / name), *args],
                cwd=self.root,
                env=self._env(),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT,
                check=False,
                preexec_fn=self._drop_privileges,
            )
        except subprocess.TimeoutExpired as exc:
            raise PostgresUnavailable(f"{name} did not finish in {COMMAND_TIMEOUT}s") from exc

    def initdb(self) -> None:
        result = self.run(
            "initdb",
            "-D",
            str(self.data),
            "-A",
            "trust",
            "-U",
            SUPERUSER,
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
            "--no-instructions",
        )
        if result.returncode != 0:
            raise PostgresUnavailable(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def start(self) -> None:
        """The postmaster as our child on a free port, retried a few times in
        case the port was taken between choosing it and the server binding it."""
        errors = []
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            options = [
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.root}",
            ]
            for key, value in self.settings.items():
                options += ["-c", f"{key}={value}"]
            with open(self.log, "ab") as log:
                self.process = spawn(
                    [str(self.bin_dir / "postgres"), "-D", str(self.data), *options],
                    cwd=self.root,
                    env=self._env(),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    # Privileges first: changing the user clears the setting.
                    sig=signal.SIGQUIT,
                    then=self._drop_privileges,
                )
            if self._wait_ready():
                return
            errors.append(self.log_tail())
            self.stop()
        raise PostgresUnavailable("PostgreSQL did not start:\n" + "\n---\n".join(errors))

    def _wait_ready(self) -> bool:
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline and self.process.poll() is None:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                return True
            except psycopg.OperationalError:
                time.sleep(0.1)
        return False

    def stop(self) -> None:
        """Immediate shutdown (SIGQUIT to the postmaster, by PID): nothing here
        needs to survive. SIGKILL if it lingers."""
        if self.process is not None:
            stop_process(self.process, ((signal.SIGQUIT, STOP_TIMEOUT), (signal.SIGKILL, 5.0)))

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return "(no server log)"

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)

    def dsn(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"


@contextlib.contextmanager
def running_postgres(settings: dict[str, str] | None = None) -> Iterator[str]:
    """Yield the DSN of a fresh `fleet` database; stop the server and delete
    its files afterwards, whatever happened. `settings` override
    FAST_SETTINGS (the bench turns fsync back on)."""
    cluster = _Cluster(find_bin_dir(), settings)
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


# What makes two databases' tables the same for a test: every column with its
# type, default and identity, every index and every constraint.
LAYOUT = """
SELECT 'column', table_name::text, concat_ws(' ', column_name, data_type, column_default,
       is_nullable, is_identity, identity_generation)
  FROM information_schema.columns WHERE table_schema = 'public'
UNION ALL
SELECT 'index', tablename::text, indexdef FROM pg_indexes WHERE schemaname = 'public'
UNION ALL
SELECT 'constraint', conrelid::regclass::text, conname || ' ' || pg_get_constraintdef(oid)
  FROM pg_constraint WHERE connamespace = 'public'::regnamespace
"""


def table_layout(dsn: str) -> frozenset[tuple[str, str, str]]:
    """The tables of `dsn` as a comparable value (see LAYOUT)."""
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        return frozenset(conn.execute(LAYOUT).fetchall())


def empty_database(dsn: str, layout: frozenset | None = None) -> None:
    """Leave `dsn` without rows, as a store sees a new database.

    While its tables are exactly `layout` (table_layout of a freshly made
    schema), every row is deleted and every sequence restarted, so the store
    finds its schema and only seeds: a third of the time of the other way,
    which is taken without `layout` or when a test has left other tables:
    drop every table (and with them the identity sequences), and the store
    makes its schema again on first use. No list of tables to keep in step
    with the stores either way.
    """
    with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SET lock_timeout = '5s'")  # a leaked session fails the test, not hangs it
        tables = [
            psycopg.sql.Identifier(row[0])
            for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        ]
        if not tables:
            return
        if layout is not None and frozenset(conn.execute(LAYOUT).fetchall()) == layout:
            sequences = [
                psycopg.sql.Identifier(row[0])
                for row in conn.execute("SELECT sequencename FROM pg_sequences WHERE schemaname = 'public'")
            ]
            statements = [psycopg.sql.SQL("DELETE FROM {}").format(table) for table in tables] + [
                psycopg.sql.SQL("ALTER SEQUENCE {} RESTART").format(sequence) for sequence in sequences
            ]
            with conn.transaction():
                # Foreign keys are not checked in replica mode, so the order of the deletes is free.
                conn.execute("SET LOCAL session_replication_role = replica")
                conn.execute(psycopg.sql.SQL("; ").join(statements))
            return
        conn.execute(
            psycopg.sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(psycopg.sql.SQL(", ").join(tables))
        )
