"""A clock the tests move by hand, for `create_app(settings, clock=...)`."""

from __future__ import annotations

import time


class FakeClock:
    """Epoch seconds like time.time, standing still until moved: time passes
    in a test by `clock.advance(seconds)`, never by sleeping."""

    def __init__(self, now: float | None = None) -> None:
        self.now = time.time() if now is None else now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
