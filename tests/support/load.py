"""A bounded write load against a real server, and a look at gunicorn's workers.

`WriteLoad` runs a few client threads that create ships (and, if asked,
delete some of them again) until told to stop, a time limit or a request
limit, and records the outcome of every request: acknowledged (201/204),
another HTTP status, or a failure at the connection level (refused, reset,
closed before a response: not acknowledged, so the client cannot assume
anything about it). Used by test_faults.py to kill and restart the server
under the load and then check that no acknowledged write was lost.
"""

from __future__ import annotations

import collections
import dataclasses
import http.client
import threading
import time
import urllib.error

from devtools.http import call
from devtools.processes import wait_for
from support.bodies import STAR_DESTROYER

REQUEST_TIMEOUT = 10.0  # a request slower than this counts as a hang
PAUSE_AFTER_REFUSAL = 0.02  # don't spin while the server is down


@dataclasses.dataclass(frozen=True)
class Ack:
    """A 201: the server promised this ship exists, with this body."""

    id: int
    sent: dict
    body: dict
    at: float  # time.monotonic() when the response arrived


@dataclasses.dataclass(frozen=True)
class Failure:
    kind: str  # "connection" or "timeout"
    error: str
    at: float


def _failure(exc: BaseException) -> Failure:
    reason = getattr(exc, "reason", exc)  # URLError wraps the socket error
    kind = "timeout" if isinstance(reason, TimeoutError) else "connection"
    return Failure(kind, f"{type(exc).__name__}: {exc}", time.monotonic())


# Everything a request can fail with below HTTP: refused, reset, EOF, timeout.
CONNECTION_ERRORS = (urllib.error.URLError, http.client.HTTPException, OSError)


@dataclasses.dataclass(eq=False)
class WriteLoad:
    """`with WriteLoad(url, token) as load: ...` runs `threads` writers."""

    base: str
    token: str
    _: dataclasses.KW_ONLY
    threads: int = 6
    max_seconds: float = 10.0
    max_requests: int = 4000
    delete_every: int | None = None
    tag: str = "load"
    # The record, filled in by the writers.
    acks: list[Ack] = dataclasses.field(default_factory=list, init=False)
    deleted: set[int] = dataclasses.field(default_factory=set, init=False)  # ids whose DELETE answered 204
    unsure_deletes: set[int] = dataclasses.field(default_factory=set, init=False)  # DELETE failed below HTTP
    failures: list[Failure] = dataclasses.field(default_factory=list, init=False)
    statuses: collections.Counter = dataclasses.field(default_factory=collections.Counter, init=False)
    server_errors: list[tuple[str, int, bytes]] = dataclasses.field(default_factory=list, init=False)
    unexpected: list[tuple[str, int, bytes]] = dataclasses.field(default_factory=list, init=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, init=False, repr=False)
    _stop: threading.Event = dataclasses.field(default_factory=threading.Event, init=False, repr=False)
    _sent: int = dataclasses.field(default=0, init=False, repr=False)
    _deadline: float = dataclasses.field(default=0.0, init=False, repr=False)
    _workers: list[threading.Thread] = dataclasses.field(default_factory=list, init=False, repr=False)

    # --- running -------------------------------------------------------------
    def start(self) -> WriteLoad:
        self._deadline = time.monotonic() + self.max_seconds
        self._workers = [
            threading.Thread(target=self._run, args=(n,), name=f"{self.tag}-{n}", daemon=True)
            for n in range(self.threads)
        ]
        for worker in self._workers:
            worker.start()
        return self

    def stop(self, join_timeout: float = REQUEST_TIMEOUT + 5) -> None:
        self._stop.set()
        deadline = time.monotonic() + join_timeout
        for worker in self._workers:
            worker.join(max(deadline - time.monotonic(), 0.0))
        stuck = [w.name for w in self._workers if w.is_alive()]
        assert not stuck, f"load threads still running after {join_timeout}s: {stuck}"

    def __enter__(self) -> WriteLoad:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _go_on(self) -> bool:
        if self._stop.is_set() or time.monotonic() > self._deadline:
            return False
        with self._lock:
            if self._sent >= self.max_requests:
                return False
            self._sent += 1
        return True

    def _request(self, method: str, url: str, body=None):
        try:
            return call(method, url, body, self.token, timeout=REQUEST_TIMEOUT)
        except CONNECTION_ERRORS as exc:
            failure = _failure(exc)
            with self._lock:
                self.failures.append(failure)
            time.sleep(PAUSE_AFTER_REFUSAL)
            return None

    def _record(self, method: str, expected: int, response) -> bool:
        with self._lock:
            self.statuses[(method, response.status)] += 1
            if response.status >= 500:
                self.server_errors.append((method, response.status, response.body))
            elif response.status != expected:
                self.unexpected.append((method, response.status, response.body))
        return response.status == expected

    def _run(self, thread: int) -> None:
        seq = 0
        while self._go_on():
            seq += 1
            sent = {**STAR_DESTROYER, "model": f"{self.tag}-{thread}-{seq}", "crew": seq}
            response = self._request("POST", f"{self.base}/api/ships", sent)
            if response is None or not self._record("POST", 201, response):
                continue
            ack = Ack(response.json["id"], sent, response.json, time.monotonic())
            with self._lock:
                self.acks.append(ack)
            if self.delete_every and seq % self.delete_every == 0 and self._go_on():
                response = self._request("DELETE", f"{self.base}/api/ships/{ack.id}")
                with self._lock:
                    if response is None:
                        self.unsure_deletes.add(ack.id)
                if response is not None and self._record("DELETE", 204, response):
                    with self._lock:
                        self.deleted.add(ack.id)

    # --- waiting and reading the record --------------------------------------
    def ack_count(self) -> int:
        with self._lock:
            return len(self.acks)

    def wait_for_acks(self, count: int, timeout: float) -> bool:
        """True once `count` writes in all were acknowledged, False on timeout."""
        return wait_for(lambda: self.ack_count() >= count, timeout, interval=0.01)

    def connection_failures(self) -> int:
        return sum(f.kind == "connection" for f in self.failures)

    def timeouts(self) -> list[Failure]:
        return [f for f in self.failures if f.kind == "timeout"]

    def live(self) -> list[Ack]:
        """The acknowledged ships that should still exist."""
        gone = self.deleted | self.unsure_deletes
        return [ack for ack in self.acks if ack.id not in gone]

    def summary(self) -> str:
        return (
            f"{len(self.acks)} acks, {len(self.deleted)} deletes, "
            f"{self.connection_failures()} connection failures, {len(self.timeouts())} timeouts, "
            f"statuses {dict(self.statuses)}"
        )


def read_ships(base: str, ids) -> dict[int, object]:
    """GET each ship: {id: body} for 200s, {id: status} otherwise."""
    found: dict[int, object] = {}
    for ship_id in ids:
        response = call("GET", f"{base}/api/ships/{ship_id}", timeout=REQUEST_TIMEOUT)
        found[ship_id] = response.json if response.status == 200 else response.status
    return found
