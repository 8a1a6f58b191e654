"""Measure: wrk runs and their parsing, CPU and RSS from /proc, scrypt's cost,
py-spy profiles, and the round loop that interleaves the targets.

Every wrk script in benchmarks/ loads report.lua, whose done() prints one
`BENCH_JSON {...}` line; parse_wrk() turns it into a Run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from devtools.processes import spawn, stop_process, worker_pids
from fleet_api.metrics import STORE_COUNTERS

WRK_TIMEOUT = "10s"  # logins queue behind scrypt: don't count them as socket timeouts
WRK_GRACE = 30  # seconds on top of the run before wrk is killed


class BenchError(RuntimeError):
    pass


@dataclasses.dataclass
class Run:
    requests: int
    rps: float
    p50_ms: float
    p99_ms: float
    socket_errors: int
    status_errors: int  # answers >= 400 (wrk's count), or not the expected status
    # From /proc around the run, when the server was named (run_wrk's `server`):
    cpu_us: float | None = None  # the server's CPU (master + workers, user + system) per request
    idle: float | None = None  # the share of the machine's CPU time left idle meanwhile
    steal: float | None = None  # the share the hypervisor gave to other guests (noise, not us)
    switches: float | None = None  # context switches of the server's threads per request
    write_path: WritePath | None = None  # what the store's write path did meanwhile (with_write_path)


# The store's write-path counters as /metrics serves them, in WritePath's
# field order (commits, writes, holds, wait, held): the app's own names.
STORE_STATS = tuple(f"{name}_total" for _, name, _ in STORE_COUNTERS)


@dataclasses.dataclass
class WritePath:
    """The change of STORE_STATS over one run (they are the host's: every
    worker's writes) and the run's wall time."""

    seconds: float
    commits: float
    writes: float
    holds: float
    wait_seconds: float
    held_seconds: float

    @property
    def per_commit(self) -> float:
        return self.writes / self.commits if self.commits else 0.0

    @property
    def busy(self) -> float:
        """The share of the run's wall time the host-wide write lock was held."""
        return self.held_seconds / self.seconds if self.seconds else 0.0

    @property
    def wait_us(self) -> float:
        return 1e6 * self.wait_seconds / self.holds if self.holds else 0.0

    @property
    def held_us(self) -> float:
        return 1e6 * self.held_seconds / self.holds if self.holds else 0.0


def store_stats(base: str) -> dict[str, float] | None:
    """STORE_STATS from the server's /metrics; None where it serves none
    (another store, metrics off, the bare app)."""
    try:
        with urllib.request.urlopen(base + "/metrics", timeout=10) as resp:
            text = resp.read().decode()
    except (OSError, ValueError):
        return None
    found = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name in STORE_STATS:
            found[name] = float(value)
    return found if len(found) == len(STORE_STATS) else None


def with_write_path(base: str, measure: Callable[[], Run], clock=time.monotonic) -> Run:
    """`measure()`, with what the write path did meanwhile when it wrote."""
    before, started = store_stats(base), clock()
    run = measure()
    seconds, after = clock() - started, store_stats(base)
    if before and after:
        path = WritePath(seconds, *(after[name] - before[name] for name in STORE_STATS))
        if path.writes > 0:
            run.write_path = path
    return run


def parse_wrk(out: str, expect: int = 0) -> Run:
    """The Run in wrk's output (report.lua's BENCH_JSON line).

    With `expect` (a scenario whose every answer must be that status, e.g. a
    400), the status errors are the answers of any other status, counted by
    expect.lua; otherwise wrk's own count of answers >= 400.
    """
    match = re.search(r"^BENCH_JSON (\{.*\})$", out, re.M)
    if not match:
        raise BenchError(f"no BENCH_JSON line in wrk's output:\n{out[-2000:]}")
    r = json.loads(match.group(1))
    seconds = r["duration_us"] / 1e6
    return Run(
        requests=r["requests"],
        rps=r["requests"] / seconds if seconds else 0.0,
        p50_ms=r["p50_us"] / 1000,
        p99_ms=r["p99_us"] / 1000,
        socket_errors=r["connect_errors"] + r["read_errors"] + r["write_errors"] + r["timeouts"],
        status_errors=r["unexpected"] if expect else r["status_errors"],
    )


def run_wrk(
    args: list[str], duration: int, connections: int, threads: int, expect: int = 0, server: int | None = None
) -> Run:
    """One wrk run; with `server` (a gunicorn master's pid) also what the
    run cost that server in CPU per request, and how idle the machine was."""
    cmd = [
        "wrk",
        "-t",
        str(threads),
        "-c",
        str(connections),
        "-d",
        f"{duration}s",
        "--timeout",
        WRK_TIMEOUT,
        *args,
    ]
    before = _usage(server) if server else None
    # spawn: wrk dies with us, whatever stops the bench.
    process = spawn(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        out, _ = process.communicate(timeout=duration + WRK_GRACE)
    except subprocess.TimeoutExpired:
        stop_process(process, ((signal.SIGKILL, 10.0),))
        raise BenchError(f"wrk overran {duration + WRK_GRACE}s: {' '.join(cmd)}") from None
    if process.returncode != 0:
        raise BenchError(f"wrk failed ({process.returncode}): {' '.join(cmd)}\n{out[-2000:]}")
    run = parse_wrk(out, expect)
    if before is not None:
        after = _usage(server)
        machine = after.machine - before.machine
        # The requests wrk counted; the few it sent that were still in
        # flight when it stopped cost CPU too, a rounding error here.
        if run.requests:
            run.cpu_us = (after.ticks - before.ticks) / os.sysconf("SC_CLK_TCK") * 1e6 / run.requests
            run.switches = switches_between(before.switches, after.switches) / run.requests
        if machine > 0:
            run.idle, run.steal = (after.idle - before.idle) / machine, (after.steal - before.steal) / machine
    return run


class Usage(NamedTuple):
    """What a server and the machine have used so far (run_wrk takes two)."""

    ticks: int  # the server's CPU ticks (server_ticks)
    idle: int  # the machine's idle, stolen and all ticks (machine_ticks)
    steal: int
    machine: int
    switches: dict[tuple[int, int], int]  # its threads' context switches (thread_switches)


def _usage(server: int) -> Usage:
    pids = [server, *worker_pids(server)]  # one listing for both readings
    return Usage(server_ticks(server, pids), *machine_ticks(), thread_switches(pids))


# --- CPU and memory, from /proc ---------------------------------------------------


def rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _stat_ticks(pid: int, first: int) -> int:
    """Two adjacent tick fields of /proc/<pid>/stat, counted after the
    command's closing ")" (11: utime + stime, 13: cutime + cstime); 0 for
    a process that is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
        return int(fields[first]) + int(fields[first + 1])
    except (OSError, IndexError, ValueError):
        return 0


def cpu_ticks(pids: list[int]) -> int:
    return sum(_stat_ticks(pid, 11) for pid in pids)  # utime + stime


def server_ticks(master: int, pids: list[int] | None = None) -> int:
    """CPU ticks a gunicorn server has used so far: its master, its live
    workers (`pids`, the master's included, when already listed), and (the
    master's cutime + cstime) every worker it has reaped, so a worker
    recycled during a run (max_requests) still counts in full."""
    return cpu_ticks(pids or [master, *worker_pids(master)]) + _stat_ticks(master, 13)


def thread_switches(pids: list[int]) -> dict[tuple[int, int], int]:
    """Context switches (voluntary + involuntary) so far of every live thread
    of `pids`, by (pid, thread id), from /proc/<pid>/task/<tid>/status.

    Every time a thread blocks (a lock, the GIL, a socket, an fsync) or is
    preempted counts one: how often a request hands the CPU over, which
    CPU time alone does not show (README, Benchmarks, "Fourteenth pass")."""
    counts = {}
    for pid in pids:
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue  # gone
        for tid in tids:
            try:
                status = Path(f"/proc/{pid}/task/{tid}/status").read_text()
            except OSError:
                continue
            found = re.findall(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)$", status, re.M)
            if found:
                counts[(pid, int(tid))] = sum(map(int, found))
    return counts


def switches_between(before: dict[tuple[int, int], int], after: dict[tuple[int, int], int]) -> int:
    """The switches made in between: a thread born meanwhile counts all of
    its own (also under a reused id, whose count starts below the old
    thread's); one that ended meanwhile (a recycled worker's) is missing
    from `after` and its last ones are lost, a slight undercount, never a
    negative."""
    total = 0
    for thread, count in after.items():
        earlier = before.get(thread, 0)
        total += count - earlier if count >= earlier else count
    return total


def machine_ticks() -> tuple[int, int, int]:
    """(idle + iowait, steal, all) ticks of every CPU so far, from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return fields[3] + fields[4], fields[7], sum(fields[:8])  # guest time is inside user


def settle(masters: list[int], timeout: float = 15.0) -> None:
    """Wait (bounded) until the servers' workers are idle.

    wrk stops sending at the end of a run, but requests already queued (logins
    waiting on scrypt) keep the CPU busy: without this the next run, on any
    server, would be measured on a busy machine.
    """
    pids = [pid for master in masters for pid in sorted(worker_pids(master))]
    hz = os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    before = cpu_ticks(pids)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = cpu_ticks(pids)
        if now - before <= 0.02 * hz:  # under 10% of one core over 200 ms
            return
        before = now


def sample_rss(master: int) -> dict[int, int]:
    return {pid: kib for pid in worker_pids(master) if (kib := rss_kib(pid)) is not None}


# --- password hashing -----------------------------------------------------------


def hash_cost(n: int, r: int, p: int, count: int = 5) -> float:
    """Median milliseconds for one scrypt hash with the server's parameters."""
    times = []
    for _ in range(count):
        start = time.perf_counter()
        hashlib.scrypt(
            b"password", salt=os.urandom(16), n=n, r=r, p=p, maxmem=256 * n * r + 1024 * 1024, dklen=32
        )
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


# --- profiling (optional) ---------------------------------------------------------


def py_spy() -> str:
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def start_profilers(pids: list[int], seconds: int, prefix: Path) -> list[tuple[subprocess.Popen, Path]]:
    """py-spy every worker for `seconds` (wall clock, collapsed stacks per function)."""
    spies = []
    for pid in pids:
        raw = prefix.with_name(f"{prefix.name}_{pid}.folded")
        cmd = [py_spy(), "record", "--pid", str(pid), "--duration", str(seconds), "--rate", "250"]
        cmd += ["--format", "raw", "--function", "--output", str(raw)]
        spies.append((spawn(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), raw))
    return spies


def top_self(raws: list[Path], n: int = 10) -> tuple[list[tuple[str, float]], float]:
    """Top `n` leaf functions of the threads busy with a request, and the app's share.

    Only stacks under gunicorn's ThreadWorker.handle count: idle pool threads
    and the main thread's poll loop are left out, whatever py-spy thinks of them.
    """
    self_time: Counter = Counter()
    in_app = 0
    for raw in raws:
        if not raw.exists():
            continue
        for line in raw.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if "ThreadWorker.handle (" not in stack or not count.isdigit():
                continue
            self_time[stack.split(";")[-1]] += int(count)
            if "App.__call__ (" in stack:
                in_app += int(count)
    total = sum(self_time.values()) or 1
    return [(name, 100 * c / total) for name, c in self_time.most_common(n)], 100 * in_app / total


# --- the rounds -------------------------------------------------------------------


@dataclasses.dataclass
class Results:
    runs: dict[tuple[str, str], list[Run]] = dataclasses.field(default_factory=dict)  # (scenario, target)
    memory: list[dict[int, int]] = dataclasses.field(default_factory=list)  # ours' workers, per round
    failed: list[str] = dataclasses.field(default_factory=list)

    def add(self, scenario: str, target: str, run: Run) -> None:
        self.runs.setdefault((scenario, target), []).append(run)


def round_order(cells: list, round_no: int) -> list:
    """The cells of round `round_no` (from 1): scenario by scenario as
    given, each scenario's targets rotated by one place a round (A B C,
    then B C A, then C A B), so that no target always runs first after the
    churn or a scenario change and none always last: a median then holds no
    bias of place."""
    groups: dict[str, list] = {}
    for cell in cells:
        groups.setdefault(cell[0], []).append(cell)
    ordered = []
    for group in groups.values():
        turn = (round_no - 1) % len(group)
        ordered += group[turn:] + group[:turn]
    return ordered


def interleave(
    rounds: int,
    cells: list[tuple[str, str, Callable[[], Run], bool]],
    *,
    before_round: Callable[[int], None],
    after_round: Callable[[int], None],
    after_run: Callable[[], None],
    log: Callable[[str], None],
) -> Results:
    """Run every cell once per round, scenario by scenario, each on its
    targets in turn, so the figures of one scenario come from the same
    moment of the machine. A cell is (scenario, target, run it, whether a
    bad status fails the bench). The hooks: `before_round` (fresh tokens),
    `after_round` (churn, memory), `after_run` (let the servers settle)."""
    results = Results()
    for round_no in range(1, rounds + 1):
        before_round(round_no)
        for scenario, target, run_cell, strict in round_order(cells, round_no):
            run = run_cell()
            after_run()
            results.add(scenario, target, run)
            log(
                f"  round {round_no} {scenario:<14} {target:<14} {run.rps:>10,.1f} req/s  "
                f"p50 {run.p50_ms:7.2f} ms  p99 {run.p99_ms:8.2f} ms"
                + (f"  bad status {run.status_errors}" if run.status_errors else "")
                + (f"  socket errors {run.socket_errors}" if run.socket_errors else "")
            )
            if run.requests == 0 or (strict and run.status_errors):
                results.failed.append(f"round {round_no} {scenario} {target}")
        after_round(round_no)
    return results
