"""Hostile clients and an ordinary one, to see who still gets served.

An attack runs in a child process (its own asyncio loop, so its CPU doesn't
slow the measuring client's own requests) against one host:port on the
loopback, from its own source addresses in 127.0.0.0/8, for a bounded time
and connection count, then closes everything. Meanwhile `Probe` makes
ordinary `GET /api/ships/2` requests, each on a new connection, and records
how long each took. After the attack, `recovery` measures how soon an
ordinary request is answered within a second again.

Attacks (RFC 9112 section 2 framing, written by hand on raw sockets):
- slow_header: a request line, then one header line per second, never the
  blank line that ends the header ("slowloris"); closed ones reconnect.
- slow_body: a login's whole header with Content-Length, then one body byte a second.
- idle_keepalive: one complete request per connection, then silence with the
  connection kept open; closed ones reconnect and ask again.
- burst: every connection at once sends one request and waits for its answer,
  then at once again on a new connection, until the attack's end.

Used by scripts/hostile.py (the table in the README) and tests/test_production.py.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import http.client
import multiprocessing
import queue as queue_module
import resource
import threading
import time
from collections.abc import Collection
from pathlib import Path

ORDINARY_PATH = "/api/ships/2"
ATTACKER = "127.0.0.2"  # source address of the single-address attacks
SLOW_BODY_LENGTH = 1000
SLOW_BODY_PATH = "/auth/login"
RESPONSE_LIMIT = 1 << 20  # bytes read of any one answer


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    kind: str
    host: str
    port: int
    connections: int
    seconds: float  # the attack's own length; burst waits at most this for its answers
    sources: tuple[str, ...] = (ATTACKER,)
    connect_timeout: float = 5.0


def raise_fd_limit(needed: int) -> None:
    """Lift this process's soft descriptor limit (children inherit it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def burst_sources(count: int) -> tuple[str, ...]:
    """`count` loopback addresses (127.0.1.1 ...), as many clients would have."""
    return tuple(f"127.0.{1 + n // 250}.{1 + n % 250}" for n in range(count))


# --- the attacker's side (child process) ------------------------------------------


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str]]:
    """Status and headers of one response; its body is read and dropped."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name:
            headers[name.strip().lower()] = value.strip()
    length = min(int(headers.get("content-length", "0") or 0), RESPONSE_LIMIT)
    if length:
        await reader.readexactly(length)
    return status, headers


class _Tally:
    def __init__(self) -> None:
        self.counts: collections.Counter = collections.Counter()
        self.statuses: collections.Counter = collections.Counter()
        self.latencies_503: list[float] = []
        self.latencies_ok: list[float] = []
        self.retry_after_missing = 0
        self.connect_seconds = 0.0

    def result(self) -> dict:
        return {
            "counts": dict(self.counts),
            "statuses": dict(self.statuses),
            "latencies_503": self.latencies_503,
            "latencies_ok": self.latencies_ok,
            "retry_after_missing": self.retry_after_missing,
            "slowest_connect": self.connect_seconds,
        }


async def _open(spec: AttackSpec, n: int):
    source = spec.sources[n % len(spec.sources)]
    return await asyncio.wait_for(
        asyncio.open_connection(spec.host, spec.port, local_addr=(source, 0)), spec.connect_timeout
    )


def _request(spec: AttackSpec, method: str = "GET", extra: str = "", end: bool = True) -> bytes:
    # A POST goes to the login, which reads its body before anything else.
    head = f"{method} {ORDINARY_PATH if method == 'GET' else SLOW_BODY_PATH} HTTP/1.1\r\nHost: {spec.host}:{spec.port}\r\n{extra}"
    return (head + ("\r\n" if end else "")).encode()


async def _connections(spec: AttackSpec, n: int, deadline: float, tally: _Tally):
    """Connection after connection until the deadline, each closed after its round;
    a failed connect is counted and retried half a second later."""
    while time.monotonic() < deadline:
        try:
            reader, writer = await _open(spec, n)
        except (TimeoutError, OSError):
            tally.counts["connect failed"] += 1
            await asyncio.sleep(0.5)
            continue
        try:
            yield reader, writer
        finally:
            writer.close()


async def _trickle(spec: AttackSpec, n: int, deadline: float, tally: _Tally) -> None:
    """slow_header / slow_body: one connection, reconnecting when the server drops it."""
    async for reader, writer in _connections(spec, n, deadline, tally):
        tally.counts["connected"] += 1
        try:
            if spec.kind == "slow_header":
                writer.write(_request(spec, end=False))
            else:
                writer.write(
                    _request(
                        spec,
                        "POST",
                        f"Content-Type: application/json\r\nContent-Length: {SLOW_BODY_LENGTH}\r\n",
                    )
                )
            await writer.drain()
            sent = 0
            while time.monotonic() < deadline:
                # The server answering (e.g. 408) or closing ends this round.
                with contextlib.suppress(asyncio.TimeoutError):
                    data = await asyncio.wait_for(reader.read(4096), 1.0)
                    tally.counts["answered or closed by server"] += 1
                    if data:
                        tally.statuses[data[9:12].decode("latin-1", "replace")] += 1
                    break
                chunk = f"X-Slow-{sent}: {'a' * 8}\r\n".encode() if spec.kind == "slow_header" else b" "
                writer.write(chunk)
                await writer.drain()
                sent += 1
        except (OSError, asyncio.IncompleteReadError):
            tally.counts["reset by server"] += 1


async def _idle(spec: AttackSpec, n: int, deadline: float, tally: _Tally) -> None:
    """idle_keepalive: ask once, then hold the connection open doing nothing."""
    async for reader, writer in _connections(spec, n, deadline, tally):
        try:
            writer.write(_request(spec))
            await writer.drain()
            status, _ = await asyncio.wait_for(_read_response(reader), spec.seconds)
            tally.statuses[str(status)] += 1
            tally.counts["idle connections"] += 1
            remaining = deadline - time.monotonic()
            if remaining > 0:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(reader.read(1), remaining)
                    tally.counts["closed by server while idle"] += 1
        except (TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
            tally.counts["failed"] += 1
            await asyncio.sleep(0.5)


async def _flood(spec: AttackSpec, n: int, deadline: float, tally: _Tally) -> None:
    """burst: one request per connection, answer read, closed, again at once until the end.

    Times are taken apart: how long the connect took (the server's accept
    queue), and how long the answer took once the request was written.
    """
    while time.monotonic() < deadline:
        started = time.monotonic()
        try:
            reader, writer = await _open(spec, n)
        except (TimeoutError, OSError) as exc:
            tally.counts[f"connect {type(exc).__name__}"] += 1
            await asyncio.sleep(0.1)
            continue
        tally.connect_seconds = max(tally.connect_seconds, time.monotonic() - started)
        try:
            writer.write(_request(spec, extra="Connection: close\r\n"))
            await writer.drain()
            sent = time.monotonic()
            # Every answer is waited for, even past the attack's end: a hang shows.
            status, headers = await asyncio.wait_for(_read_response(reader), spec.seconds)
            took = time.monotonic() - sent
            tally.statuses[str(status)] += 1
            if status == 503:
                tally.latencies_503.append(took)
                tally.retry_after_missing += "retry-after" not in headers
            elif status == 200:
                tally.latencies_ok.append(took)
        except TimeoutError:
            tally.counts["timed out"] += 1
        except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
            tally.counts[f"{type(exc).__name__}"] += 1
        finally:
            writer.close()


async def _attack(spec: AttackSpec, ready) -> dict:
    tally = _Tally()
    deadline = time.monotonic() + spec.seconds
    run = {"slow_header": _trickle, "slow_body": _trickle, "idle_keepalive": _idle, "burst": _flood}[
        spec.kind
    ]
    tasks = [asyncio.ensure_future(run(spec, n, deadline, tally)) for n in range(spec.connections)]
    ready(deadline)
    done, pending = await asyncio.wait(tasks, timeout=spec.seconds + spec.connect_timeout + 5)
    for task in pending:
        task.cancel()
    tally.counts["stuck tasks cancelled"] = len(pending)
    for task in done:
        if task.exception() is not None:
            tally.counts[f"task error {type(task.exception()).__name__}"] += 1
    return tally.result()


def _attack_main(spec: AttackSpec, results) -> None:
    raise_fd_limit(spec.connections + 256)
    # CLOCK_MONOTONIC is one clock for every process: the parent can compare.
    result = asyncio.run(_attack(spec, lambda deadline: results.put(("ready", deadline))))
    results.put(("done", result))


class Attack:
    """`with Attack(spec) as attack: ...`: the attack runs meanwhile; `.result` after."""

    def __init__(self, spec: AttackSpec) -> None:
        self.spec = spec
        self.result: dict = {}
        self.deadline = 0.0  # when the attack stops, on time.monotonic()
        self.ended_at = 0.0
        context = multiprocessing.get_context("spawn")
        self._results = context.Queue()
        self._process = context.Process(target=_attack_main, args=(spec, self._results), daemon=True)

    def __enter__(self) -> Attack:
        self._process.start()
        _, self.deadline = self._results.get(timeout=30)  # "ready": every connection is being opened
        return self

    def wait(self) -> dict:
        limit = self.spec.seconds + self.spec.connect_timeout + 20
        try:
            kind, self.result = self._results.get(timeout=limit)
        except queue_module.Empty:
            self.result = {"counts": {"attack did not finish": 1}, "statuses": {}}
        self._process.join(10)
        if self._process.is_alive():
            self._process.kill()
            self._process.join(5)
        self.ended_at = time.monotonic()
        return self.result

    def __exit__(self, *exc) -> None:
        if not self.ended_at:
            self.wait()


# --- the ordinary client (this process) ---------------------------------------------


@dataclasses.dataclass
class Sample:
    at: float
    seconds: float | None  # None: no answer (refused, reset, timed out)
    status: int | None
    error: str = ""


def ordinary_request(
    host: str, port: int, timeout: float, path: str = ORDINARY_PATH, source: str | None = None
) -> Sample:
    started = time.monotonic()
    conn = http.client.HTTPConnection(
        host, port, timeout=timeout, source_address=(source, 0) if source else None
    )
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        return Sample(started, time.monotonic() - started, response.status)
    except (OSError, http.client.HTTPException) as exc:
        return Sample(started, None, None, f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


class Probe:
    """Ordinary clients (`threads` of them, `pause` between requests) until stopped."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        threads: int = 2,
        pause: float = 0.05,
        timeout: float = 5.0,
        max_requests: int = 2000,
    ) -> None:
        self.host, self.port = host, port
        self.threads, self.pause, self.timeout = threads, pause, timeout
        self.max_requests = max_requests
        self.samples: list[Sample] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._workers: list[threading.Thread] = []

    def _run(self) -> None:
        while not self._stop.is_set():
            with self._lock:
                if len(self.samples) >= self.max_requests:
                    return
            sample = ordinary_request(self.host, self.port, self.timeout)
            with self._lock:
                self.samples.append(sample)
            self._stop.wait(self.pause)

    def __enter__(self) -> Probe:
        self._workers = [threading.Thread(target=self._run, daemon=True) for _ in range(self.threads)]
        for worker in self._workers:
            worker.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        for worker in self._workers:
            worker.join(self.timeout + 5)


def answered_within(samples: list[Sample], seconds: float, status: int = 200) -> int:
    return sum(s.seconds is not None and s.seconds <= seconds and s.status == status for s in samples)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latencies(samples: list[Sample], timeout: float) -> list[float]:
    """Seconds per request until its answer (any status), an unanswered one counted as the whole timeout."""
    return [s.seconds if s.seconds is not None else timeout for s in samples]


def recovery(host: str, port: int, *, within: float = 1.0, limit: float = 30.0, after: int = 20) -> dict:
    """Seconds until an ordinary request is answered within `within` again, then `after` more."""
    started = time.monotonic()
    while time.monotonic() - started < limit:
        sample = ordinary_request(host, port, timeout=within)
        if sample.status == 200 and sample.seconds is not None and sample.seconds <= within:
            break
        time.sleep(0.05)
    else:
        return {"seconds": None, "ok": 0, "total": 0, "p99": float("nan")}
    recovered = time.monotonic() - started
    samples = [ordinary_request(host, port, timeout=5.0) for _ in range(after)]
    return {
        "seconds": recovered,
        "ok": answered_within(samples, within),
        "total": len(samples),
        "p99": percentile(latencies(samples, 5.0), 0.99),
    }


# --- memory of the server under attack -----------------------------------------------


def process_tree(roots: list[int]) -> set[int]:
    pids, todo = set(), list(roots)
    while todo:
        pid = todo.pop()
        if pid in pids:
            continue
        pids.add(pid)
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in Path(f"/proc/{pid}/task").iterdir():
                with contextlib.suppress(FileNotFoundError):
                    todo.extend(int(c) for c in (task / "children").read_text().split())
    return pids


def rss_bytes(roots: list[int]) -> int:
    """Resident memory of `roots` and all their descendants."""
    total = 0
    for pid in process_tree(roots):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, ValueError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


class MemoryWatch:
    """Peak resident memory of a server's process tree while the block runs."""

    def __init__(self, roots: list[int], every: float = 0.1) -> None:
        self.roots, self.every = roots, every
        self.before = self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, rss_bytes(self.roots))

    def __enter__(self) -> MemoryWatch:
        if self.roots:
            self.before = self.peak = rss_bytes(self.roots)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)


# --- nginx's own view ---------------------------------------------------------------------


def nginx_request_times(
    access_log: Path, status: int, offset: int = 0, sources: Collection[str] | None = None
) -> tuple[list[float], int]:
    """$request_time of each `status` line in an access log of nginx.conf's `timed`
    format, from byte `offset` on (and only from the client addresses `sources`,
    if given); and the offset to start from next time."""
    times = []
    with open(access_log, "rb") as log:
        log.seek(offset)
        data = log.read()
    for line in data.decode("latin-1").splitlines():
        fields = line.split(" ", 3)
        if len(fields) > 2 and fields[1] == str(status) and (sources is None or fields[0] in sources):
            times.append(float(fields[2]))
    return times, offset + len(data)


# --- one measured attack ---------------------------------------------------------------


@dataclasses.dataclass
class Outcome:
    spec: AttackSpec
    samples: list[Sample]
    attack: dict
    recovery: dict
    rss_before: int
    rss_peak: int
    timeout: float

    @property
    def ok_within_1s(self) -> int:
        return answered_within(self.samples, 1.0)

    def count(self, status: int | None) -> int:
        return sum(s.status == status for s in self.samples)

    def p(self, q: float) -> float:
        return percentile(latencies(self.samples, self.timeout), q)


def measure(
    spec: AttackSpec,
    *,
    server_pids: list[int] = (),
    probe_timeout: float = 5.0,
    probe_threads: int = 2,
    settle: float = 1.0,
) -> Outcome:
    """Run one attack with the ordinary client going throughout, then measure recovery.

    `settle` seconds pass between the attack's start and the first ordinary
    request, so every hostile connection is in place when measuring begins.
    """
    raise_fd_limit(spec.connections + 1024)
    with MemoryWatch(list(server_pids)) as memory, Attack(spec) as attack:
        time.sleep(min(settle, spec.seconds / 2))
        with Probe(spec.host, spec.port, threads=probe_threads, timeout=probe_timeout) as probe:
            attack.wait()
    # Only requests that had a whole second under attack: one sent just
    # before the end would be answered because the attack ended.
    during = [s for s in probe.samples if s.at <= attack.deadline - 1.0]
    return Outcome(
        spec, during, attack.result, recovery(spec.host, spec.port), memory.before, memory.peak, probe_timeout
    )


def describe(outcome: Outcome) -> str:
    """The attack's own record, in a few words for a table cell."""
    result = outcome.attack
    parts = [f"{k}: {v}" for k, v in sorted(result.get("statuses", {}).items())]
    parts += [f"{k}: {v}" for k, v in sorted(result.get("counts", {}).items()) if v]
    for status in ("503", "ok"):
        values = result.get(f"latencies_{status}")
        if values:
            parts.append(
                f"{'200' if status == 'ok' else status} p50 / p99 / max "
                f"{percentile(values, 0.5) * 1000:.0f} / {percentile(values, 0.99) * 1000:.0f} / "
                f"{max(values) * 1000:.0f} ms"
            )
    if result.get("latencies_503"):
        parts.append(f"503 without Retry-After: {result.get('retry_after_missing', 0)}")
    if result.get("slowest_connect"):
        parts.append(f"slowest connect {result['slowest_connect'] * 1000:.0f} ms")
    return ", ".join(parts)


def mib(n: int) -> str:
    return f"{n / 2**20:.0f}"
