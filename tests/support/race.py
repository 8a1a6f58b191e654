"""Run one piece of work on several threads released at the same instant."""

from __future__ import annotations

import threading
from collections.abc import Callable

TIMEOUT = 60  # seconds for the barrier and for each join: a hung racer fails the test


def race(work: Callable[[int], object], count: int = 8, timeout: float = TIMEOUT) -> list:
    """`count` threads call `work(i)` at once; each one's result, or the
    exception it raised (for the caller's assertions to show), by `i`."""
    barrier = threading.Barrier(count)
    results: list = [None] * count

    def run(i: int) -> None:
        barrier.wait(timeout)
        try:
            results[i] = work(i)
        except Exception as exc:  # the caller's assertion shows it
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    assert not any(thread.is_alive() for thread in threads)
    return results
