"""Ports, child processes and their lifetime."""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")

PR_SET_PDEATHSIG = 1  # prctl(2)


def free_port() -> int:
    """A loopback port that was free a moment ago (bind races are the caller's to retry)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def set_parent_death_signal(sig: int) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies.

    This is what makes a server outlive no test run: Ctrl-C, a CI time-out's
    SIGKILL or a crash of pytest all end the parent, and the kernel then
    signals the server. Linux only; a no-op elsewhere.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return
    prctl = getattr(libc, "prctl", None)
    if prctl is not None:
        prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)


def die_with_parent(sig: int = signal.SIGTERM, then: Callable[[], None] | None = None):
    """A `preexec_fn` for subprocess.Popen: run `then` (e.g. dropping
    privileges, which clears the setting), then set the parent-death signal.

    The kernel ties the signal to the *thread* that forked the child: use it
    through `spawn`, which forks from one thread that lives as long as we do.
    """

    def preexec() -> None:
        if then is not None:
            then()
        set_parent_death_signal(sig)
        # The parent may have died between fork and prctl.
        if os.getppid() == 1:
            os.kill(os.getpid(), sig)

    return preexec


@functools.cache
def _spawner() -> ThreadPoolExecutor:
    """One thread for the whole run that forks every server (see spawn)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="devtools-spawner")


def spawn(
    args: list[str], *, sig: int = signal.SIGTERM, then: Callable[[], None] | None = None, **popen_kwargs
) -> subprocess.Popen:
    """subprocess.Popen with a parent-death signal, forked from one thread
    that lives as long as the process: the kernel signals the child when the
    thread that forked it exits, so a server started from a short-lived
    thread (two hosts started at once) would otherwise die with that thread."""
    return (
        _spawner()
        .submit(
            subprocess.Popen,
            args,
            preexec_fn=die_with_parent(sig, then),
            start_new_session=True,
            **popen_kwargs,
        )
        .result()
    )


def wait_for(probe: Callable[[], T], timeout: float, interval: float = 0.05) -> T:
    """Call `probe()` until its answer is true, for at most `timeout` seconds
    (and at least once); return its last answer, true or not. How tests wait
    for a state (a log line, a worker, a count) instead of sleeping a guess."""
    deadline = time.monotonic() + timeout
    while not (answer := probe()) and time.monotonic() < deadline:
        time.sleep(interval)
    return answer


def wait_ready(
    process: subprocess.Popen,
    probe: Callable[[], bool],
    *,
    name: str,
    what: str,
    timeout: float,
    interval: float = 0.1,
    on_timeout: Callable[[], object] | None = None,
    detail: Callable[[], str] | None = None,
) -> None:
    """Poll `probe()` until it is true, bounded by `timeout`.

    A RuntimeError if the process exits first ("<name> exited with <code>",
    plus what `detail()` says, if anything), or if the time runs out
    ("<name> did not <what> in <timeout>s", after `on_timeout()`, e.g.
    stopping it).
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            extra = detail() if detail is not None else ""
            raise RuntimeError(f"{name} exited with {process.returncode}" + (f":\n{extra}" if extra else ""))
        if probe():
            return
        time.sleep(interval)
    if on_timeout is not None:
        on_timeout()
    raise RuntimeError(f"{name} did not {what} in {timeout}s")


class ChildServer:
    """What the servers tests start share: a child `process` that is up once
    `_answers()` is true, `url`, `startup_timeout`, `stop()` and a
    `log_tail()` for the error when it never comes up."""

    name = "server"
    ready_interval = 0.1
    process: subprocess.Popen | None = None
    url = ""
    startup_timeout = 30.0

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def _answers(self) -> bool:
        raise NotImplementedError

    def stop(self, timeout: float = 30.0) -> object:
        raise NotImplementedError

    def log_tail(self, chars: int = 3000) -> str:
        return ""

    def wait_ready(self) -> None:
        """Until it answers; stopped and a RuntimeError (with its log) if it
        exits first or the startup time runs out."""
        wait_ready(
            self.process,
            self._answers,
            name=self.name,
            what=f"answer on {self.url}",
            timeout=self.startup_timeout,
            interval=self.ready_interval,
            on_timeout=self.stop,
            detail=self.log_tail,
        )


def stop_process(process: subprocess.Popen, steps: Sequence[tuple[int, float]]) -> int | None:
    """Send each (signal, grace seconds) in turn until the process has ended.

    SIGKILL goes to the whole process group (servers start in their own
    session), the others to the process alone, which stops its children.
    """
    for sig, grace in steps:
        if process.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError):
            if sig == signal.SIGKILL:
                os.killpg(process.pid, sig)
            else:
                process.send_signal(sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(grace)
    return process.returncode


def worker_pids(master: int) -> set[int]:
    """gunicorn's workers: the children of the master, over all its threads."""
    pids: set[int] = set()
    for task in Path(f"/proc/{master}/task").iterdir():
        try:
            pids.update(int(pid) for pid in (task / "children").read_text().split())
        except (FileNotFoundError, ProcessLookupError):  # the thread ended meanwhile
            continue
    return pids


def running(pid: int) -> bool:
    """Alive and not a zombie waiting to be reaped."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone before the open, or between open and read
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for_workers(master: int, count: int, timeout: float, without: set[int] = frozenset()) -> set[int]:
    """Wait until the master has exactly `count` workers, none of them in `without`."""
    deadline = time.monotonic() + timeout
    pids: set[int] = set()
    while time.monotonic() < deadline:
        pids = worker_pids(master)
        if len(pids) == count and not pids & without and all(running(pid) for pid in pids):
            return pids
        time.sleep(0.05)
    raise AssertionError(
        f"master {master} has workers {sorted(pids)}, wanted {count} without {sorted(without)}"
    )
