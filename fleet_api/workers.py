"""The gunicorn worker class: gthread, except that a worker whose threads are
all busy leaves a new connection to a worker with a free thread.

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

from gunicorn.workers import gthread

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
