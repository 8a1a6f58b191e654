"""Logs: a lean access log for gunicorn, and JSON lines on request.

gunicorn's own access log builds a dict of every header and environ variable
and goes through `logging` for each request; measured, that was the largest
single per-request cost of the whole product. `GunicornLogger.access` formats
one short line from the few values it needs and appends it to a buffer that
a thread of each worker writes out twice a second, off the request path, and
at worker exit (a SIGKILLed worker loses at most that last half second;
FLEET_ACCESS_LOG_FLUSH_SECONDS changes the interval).

- `FLEET_ACCESS_LOG=-` (default) writes to stdout, `=/some/file` appends to
  that file, `=off` writes nothing;
- `FLEET_LOG_FORMAT=json` makes both the access lines and the error/app log
  one JSON object per line (`JSONFormatter`); `text` (default) keeps lines
  for people.

What the app knows about a request (its id, route template, user) reaches
the access line through the WSGI environ, set by `AccessContext`. Neither
format ever carries a header, a body or a query string, so no token or
password can end up in a log.
"""

from __future__ import annotations

import atexit
import datetime
import logging
import os
import select
import stat
import threading
import time

import falcon
import orjson
from gunicorn import util
from gunicorn.glogging import Logger

from fleet_api.middleware import RouteLabels

FORMAT_ENV = "FLEET_LOG_FORMAT"
FLUSH_ENV = "FLEET_ACCESS_LOG_FLUSH_SECONDS"
FORMATS = ("text", "json")
OFF = "off"
# environ keys the app fills in for the access line
REQUEST_ID, ROUTE, USER_ID = "fleet.request_id", "fleet.route", "fleet.user_id"
FLUSH_INTERVAL = 0.5  # seconds an access line may wait in the buffer
FLUSH_BYTES = 64 * 1024  # ...or until this much is buffered
# Writes to a pipe up to PIPE_BUF bytes are atomic, so lines of several
# workers sharing one stdout pipe never interleave mid-line.
PIPE_CHUNK = select.PIPE_BUF
FILE_CHUNK = 1024 * 1024


def log_format(environ=os.environ) -> str:
    value = environ.get(FORMAT_ENV, "text").strip().lower() or "text"
    if value not in FORMATS:
        raise RuntimeError(f"{FORMAT_ENV} must be one of {', '.join(FORMATS)}, got {value!r}")
    return value


class AccessContext:
    """Hands the access logger what only the app knows, through the environ."""

    def __init__(self, routes: RouteLabels) -> None:
        self._route = routes

    def process_response(
        self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool
    ) -> None:
        user = req.context.get("user")
        for_the_access_line(
            req.env, req.context.get("request_id"), self._route(req), None if user is None else user.id
        )


def for_the_access_line(
    environ: dict, request_id: str | None, route: str, user_id: int | None = None
) -> None:
    """What only the app knows about a request, left in the environ for
    GunicornLogger.access (AccessContext, and ReadReplay's answers)."""
    environ[REQUEST_ID] = request_id
    environ[ROUTE] = route
    if user_id is not None:
        environ[USER_ID] = user_id


class _Clock:
    """Formatted timestamps, recomputed once a second, not once a request."""

    def __init__(self) -> None:
        self._cached = (None, "", "")  # (second, CLF time, ISO time), swapped as one

    def now(self) -> tuple[str, str, int]:
        """(CLF time, ISO time without fraction, milliseconds)."""
        now = time.time()
        second = int(now)
        cached = self._cached
        if cached[0] != second:
            moment = datetime.datetime.fromtimestamp(second, datetime.UTC)
            cached = (
                second,
                moment.strftime("[%d/%b/%Y:%H:%M:%S +0000]"),
                moment.strftime("%Y-%m-%dT%H:%M:%S"),
            )
            self._cached = cached
        return cached[1], cached[2], int((now - second) * 1000)


class AccessSink:
    """Buffered access lines for one target (`-` or a path), per worker.

    Each worker process opens its own descriptor and starts its own flusher
    thread on its first line (nothing crosses a fork). Lines are written in
    whole-line chunks, in order."""

    def __init__(self, target: str, interval: float = FLUSH_INTERVAL) -> None:
        self.target = target
        self._interval = interval
        self._pid = None
        self._fd = None
        self._chunk = PIPE_CHUNK
        self._lines: list[bytes] = []
        self._size = 0
        self._lock = threading.Lock()  # the buffer
        self._write_lock = threading.Lock()  # the descriptor, so batches stay in order
        self._start_lock = threading.Lock()
        self._reopen = False
        self._stop = threading.Event()
        self._warned = False

    def _start(self) -> None:
        with self._start_lock:
            pid = os.getpid()
            if self._pid == pid:
                return
            # Nothing of the parent's buffer or locks carries over.
            self._lines, self._size, self._fd = [], 0, None
            self._lock, self._write_lock = threading.Lock(), threading.Lock()
            self._fd = self._open()
            self._stop = threading.Event()
            threading.Thread(target=self._run, name="access-log", daemon=True).start()
            atexit.register(self.close)
            self._pid = pid

    def _open(self) -> int:
        if self.target == "-":
            fd = 1
        else:
            fd = os.open(self.target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._chunk = FILE_CHUNK if stat.S_ISREG(os.fstat(fd).st_mode) else PIPE_CHUNK
        return fd

    def write(self, line: bytes) -> None:
        if self._pid != os.getpid():
            self._start()
        with self._lock:
            self._lines.append(line)
            self._size += len(line)
            full = self._size >= FLUSH_BYTES
        if full:
            self.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.flush()
            except Exception as exc:  # keep flushing whatever happened once
                self._warn(exc)

    def reopen(self) -> None:
        """After log rotation (USR1): the flusher reopens the path. Only a
        flag here, as this runs in a signal handler."""
        self._reopen = True

    def flush(self) -> None:
        if self._pid != os.getpid():
            return  # nothing was written in this process
        with self._write_lock:
            with self._lock:
                lines, self._lines, self._size = self._lines, [], 0
            if self._reopen and self.target != "-":
                self._reopen = False
                try:
                    fd = self._open()
                except OSError as exc:  # keep writing to the old file
                    self._warn(exc)
                else:
                    os.close(self._fd)
                    self._fd = fd
            if lines:
                self._write(lines)

    def _write(self, lines: list[bytes]) -> None:
        chunk, size = [], 0
        try:
            for line in lines:
                if size + len(line) > self._chunk and chunk:
                    _write_all(self._fd, b"".join(chunk))
                    chunk, size = [], 0
                chunk.append(line)
                size += len(line)
            if chunk:
                _write_all(self._fd, b"".join(chunk))
        except OSError as exc:  # a full disk must not take requests down
            self._warn(exc)

    def _warn(self, exc: Exception) -> None:
        if not self._warned:
            self._warned = True
            logging.getLogger("gunicorn.error").error(
                "access log %s: %s; lines may be lost", self.target, exc
            )

    def close(self) -> None:
        """Write out what is buffered; the worker is exiting."""
        if self._pid != os.getpid():
            return
        self._stop.set()
        self.flush()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class GunicornLogger(Logger):
    """gunicorn's logger (error log unchanged) with the lean access log.

    `logger_class = "fleet_api.logs.GunicornLogger"` in gunicorn.conf.py."""

    def setup(self, cfg) -> None:
        super().setup(cfg)
        self._format = log_format()
        self._clock = _Clock()
        target = cfg.accesslog
        if target and target.strip().lower() == OFF:
            target = None
        if target and target != "-":
            util.check_is_writable(target)  # fail at start, not on the first request
        self._line = self._json_line if self._format == "json" else self._text_line
        old = getattr(self, "_sink", None)
        if old is not None and old.target == target:
            return  # a reload (HUP) with the same target keeps the sink
        if old is not None:
            old.close()
        interval = float(os.environ.get(FLUSH_ENV) or FLUSH_INTERVAL)
        if not interval > 0:
            raise RuntimeError(f"{FLUSH_ENV} must be a positive number of seconds")
        self._sink = AccessSink(target, interval) if target else None

    def _set_handler(self, log, output, fmt, stream=None) -> None:
        if log is self.access_log:
            return  # access lines go through AccessSink, not `logging`
        super()._set_handler(log, output, fmt, stream)

    @property
    def access_log_enabled(self) -> bool:
        return getattr(self, "_sink", None) is not None

    def access(self, resp, req, environ, request_time) -> None:
        sink = self._sink
        if sink is None:
            return
        try:
            sink.write(self._line(resp, environ, request_time))
        except Exception:
            self.exception("access log line failed")

    def _text_line(self, resp, environ, request_time) -> bytes:
        clf, _, _ = self._clock.now()
        ms = request_time.total_seconds() * 1000
        return (
            f'{environ.get("REMOTE_ADDR", "-")} {clf} "{environ["REQUEST_METHOD"]} {_path(environ)} '
            f'{environ["SERVER_PROTOCOL"]}" {_status(resp)} {resp.sent} {ms:.1f}ms '
            f"rid={environ.get(REQUEST_ID) or '-'}\n"
        ).encode("utf-8", "backslashreplace")

    def _json_line(self, resp, environ, request_time) -> bytes:
        _, iso, millis = self._clock.now()
        return (
            orjson.dumps(
                {
                    "time": f"{iso}.{millis:03d}Z",
                    "level": "INFO",
                    "logger": "access",
                    "request_id": environ.get(REQUEST_ID),
                    "method": environ["REQUEST_METHOD"],
                    "path": _path(environ),
                    "route": environ.get(ROUTE),
                    "status": _status(resp),
                    "duration_ms": round(request_time.total_seconds() * 1000, 3),
                    "bytes": resp.sent,
                    "remote": environ.get("REMOTE_ADDR"),
                    "user_id": environ.get(USER_ID),
                }
            )
            + b"\n"
        )

    def reopen_files(self) -> None:
        super().reopen_files()
        if self._sink is not None:
            self._sink.reopen()

    def close_access(self) -> None:
        """gunicorn.conf.py's worker_exit hook: write out what is buffered."""
        if self._sink is not None:
            self._sink.close()


def _path(environ) -> str:
    """The path as sent, without the query string (it could carry a secret)."""
    return environ.get("RAW_URI", environ.get("PATH_INFO", "")).partition("?")[0]


def _status(resp) -> int | str:
    code = getattr(resp, "status_code", None)
    return code if code is not None else str(resp.status).split(" ", 1)[0]


class JSONFormatter(logging.Formatter):
    """One JSON object per record, for gunicorn's error log and the app's log.

    Request fields come from `extra=` (see errors._unexpected); messages are
    ours, never a token or a password."""

    FIELDS = ("request_id", "method", "route", "status", "user_id")

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "message": record.getMessage(),
        }
        for field in self.FIELDS:
            value = getattr(record, field, None)
            if value is not None:
                entry[field] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()
