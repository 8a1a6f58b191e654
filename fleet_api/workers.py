"""The gunicorn worker class: gthread, except that a worker whose threads are
all busy leaves a new connection to a worker with a free thread. And the
hooks that pin each worker to a CPU of its own.

gunicorn's gthread workers all wait on one listening socket, and each takes
every connection it can (up to `worker_connections`, 1,000), busy or not
(benoitc/gunicorn#908, #3433). A burst of connections (a load balancer's
pool, wrk, Locust starting its users) mostly goes to whichever worker wakes
first, and a kept-alive connection stays with it: on this 2-core machine 16
connections landed 16:0, 14:2 or 13:3 in 3 of 8 runs, and such a run
served a third to a half of what an even one did (1,702 against 4,500-5,800
GET/s), with the other worker, and so a core, left idle.

This worker, while every one of its threads has a connection to serve,
takes a new one only if `GUNICORN_BUSY_ACCEPT_MS` (1) milliseconds have
passed since it took its last one. So a burst is shared (the worker with
free threads takes them at once, as sync workers do), and when every
thread of every worker is busy a connection still waits no longer than
that in the kernel's accept queue (the `backlog`, 2,048): never taking new
connections while busy would starve them for as long as the ones already
kept alive keep the threads busy. The connections a worker already holds
(kept alive, or waiting for their first bytes off the threads) are served
as before.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Mapping

from gunicorn.workers import gthread

from fleet_api.settings import switch

# Seconds between the new connections a worker takes while all its threads are busy.
BUSY_ACCEPT_INTERVAL = float(os.environ.get("GUNICORN_BUSY_ACCEPT_MS", "1")) / 1000


class BalancedThreadWorker(gthread.ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Connections handed to the thread pool and not yet finished: counted
        # on the worker's main thread, which alone submits and finishes them.
        self.busy = 0
        self.last_accept = 0.0  # time.monotonic() of the last new connection taken

    def accept(self, listener) -> None:
        if not self._may_take():
            # Not now: stop listening (gthread's loop asks again at its next
            # turn, see set_accept_enabled), and a worker with a free thread
            # takes the connection meanwhile.
            self.set_accept_enabled(False)
            return
        held = self.nr_conns
        super().accept(listener)
        if self.nr_conns > held:  # not if another worker took it first (EAGAIN)
            self.last_accept = time.monotonic()

    def enqueue_req(self, conn) -> None:
        super().enqueue_req(conn)
        self.busy += 1

    def finish_request(self, conn, fs) -> None:
        # First, so a request read ahead that is enqueued again counts anew.
        self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop asks to listen, at every turn, whenever it is under
        # worker_connections; while every thread is busy, only now and then.
        super().set_accept_enabled(enabled and self._may_take())

    def _may_take(self) -> bool:
        """A thread is free, or it's been BUSY_ACCEPT_INTERVAL since the last new connection."""
        return self.busy < self.cfg.threads or time.monotonic() - self.last_accept >= BUSY_ACCEPT_INTERVAL


# --- one CPU per worker ---------------------------------------------------------
# A worker runs Python on one core at a time (its GIL), but its threads hand
# the GIL to each other at every sqlite3 statement, lock and socket call.
# Spread over every core, each hand-off wakes a thread on the other core and
# moves the interpreter's hot data there; on one core it is a switch between
# threads that find their data in the cache. Measured on the 2-core bench
# machine (README, Benchmarks, "Sixteenth pass"): the durable PUT +32 %, GET
# one ship +14 %, the bare app +8 %.
PIN_ENV = "FLEET_PIN_WORKERS"


def pinning_wanted(env: Mapping[str, str] = os.environ) -> bool:
    """FLEET_PIN_WORKERS=on (the default) or off; anything else is an error."""
    return switch(PIN_ENV, env.get(PIN_ENV, "on"))


def least_used_cpu(cpus: Iterable[int], taken: Iterable[int | None]) -> int:
    """The CPU, of those allowed, that the fewest live workers are pinned to
    (the lowest of a tie): workers spread evenly, and a worker that replaces
    a dead one takes the CPU it freed."""
    counts = Counter(cpu for cpu in taken if cpu is not None)
    return min(sorted(cpus), key=lambda cpu: counts[cpu])


def choose_cpu(server, worker) -> None:
    """gunicorn's pre_fork, in the master: note on `worker` the CPU its
    process will take. The master itself is never pinned, so what it may use
    (its cpuset, `taskset`) stays the set to share out, and a re-exec'd
    master (USR2) sees it whole."""
    if not hasattr(os, "sched_getaffinity"):  # not Linux: nothing to pin
        return
    cpus = os.sched_getaffinity(0)
    if len(cpus) > 1:
        worker.fleet_cpu = least_used_cpu(
            cpus, (getattr(w, "fleet_cpu", None) for w in server.WORKERS.values())
        )


def pin_worker(server, worker) -> None:
    """gunicorn's post_fork, in the new worker before its threads start (they
    inherit the affinity): take the CPU the master chose."""
    cpu = getattr(worker, "fleet_cpu", None)
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:  # the cpuset shrank since the master looked: run unpinned
        server.log.warning("worker %s not pinned to CPU %s: %s", os.getpid(), cpu, exc)
        return
    server.log.info("worker %s pinned to CPU %s", os.getpid(), cpu)
