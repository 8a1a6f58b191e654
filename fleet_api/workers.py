"""The gunicorn worker class: gthread, taking new connections only while it
has a free thread.

gunicorn's gthread workers all wait on one listening socket, and each takes
every connection it can (up to `worker_connections`, 1,000), busy or not
(benoitc/gunicorn#908, #3433). A burst of connections (a load balancer's
pool, wrk, Locust starting its users) mostly goes to whichever worker wakes
first, and a kept-alive connection stays with it: on this 2-core machine 16
connections landed 16:0, 14:2 or 13:3 in 3 of 8 runs, and such a run
served a third to a half of what an even one did (1,702 against 4,500-5,800
GET/s), with the other worker, and so a core, left idle.

This worker stops listening while every one of its threads has a
connection to serve, and listens again when one is done. A connection
nobody is free for meanwhile waits in the kernel's accept queue (the
`backlog`, 2,048) instead of behind a busy worker's threads, and the first
worker with a free thread takes it, as sync workers do. The connections a
worker already holds (kept alive, or waiting for their first bytes off the
threads) are served as before, whatever the count.
"""

from __future__ import annotations

from gunicorn.workers import gthread


class BalancedThreadWorker(gthread.ThreadWorker):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Connections handed to the thread pool and not yet finished: counted
        # on the worker's main thread, which alone submits and finishes them.
        self.busy = 0

    def enqueue_req(self, conn) -> None:
        super().enqueue_req(conn)
        self.busy += 1
        if self.busy >= self.cfg.threads:
            self.set_accept_enabled(False)

    def finish_request(self, conn, fs) -> None:
        # First, so a request read ahead that is enqueued again counts anew.
        self.busy -= 1
        super().finish_request(conn, fs)

    def set_accept_enabled(self, enabled: bool) -> None:
        # gthread's loop asks to listen whenever it is under
        # worker_connections; it listens only if a thread is free, too.
        super().set_accept_enabled(enabled and self.busy < self.cfg.threads)
