"""The bench's settings, from the environment (see scripts/bench/__init__.py)."""

from __future__ import annotations

import ast
import dataclasses
import os
import re
import sys
from pathlib import Path

from scripts.bench.scenarios import SHIP_COUNT, Scenario, choose

# The commit before the sessions merge (3418605): what session_cost compares with.
DEFAULT_BASELINE = "3418605^1"

ROOT = Path(__file__).resolve().parents[2]


def env_int(env, name: str, default: int) -> int:
    raw = env.get(name, "")
    try:
        value = int(raw) if raw else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    if value < 0:
        raise ValueError(f"{name} must not be negative")
    return value


# BENCH_LAYOUTS: each `WORKERSxTHREADS`, bounded so a typo can't fork a hundred workers.
MAX_WORKERS, MAX_THREADS = 16, 64


def parse_layouts(raw: str | None, shipped: tuple[str, str] | None = None) -> tuple[str, ...]:
    """BENCH_LAYOUTS, e.g. `2x16,4x8`: the worker layouts ours and the ceiling
    also run under, beside the shipped one (left out if named). ValueError
    on anything else."""
    shipped = shipped or shipped_layout()
    found: list[str] = []
    for item in (raw or "").split(","):
        item = item.strip().lower()
        if not item:
            continue
        match = re.fullmatch(r"(\d+)x(\d+)", item)
        if not match or not (1 <= int(match[1]) <= MAX_WORKERS and 1 <= int(match[2]) <= MAX_THREADS):
            raise ValueError(
                f"BENCH_LAYOUTS: {item!r} is not WORKERSxTHREADS with 1-{MAX_WORKERS} workers"
                f" and 1-{MAX_THREADS} threads (e.g. 2x16)"
            )
        workers, threads = str(int(match[1])), str(int(match[2]))  # "02x16" is 2x16
        layout = f"{workers}x{threads}"
        if layout not in found and (workers, threads) != tuple(shipped):
            found.append(layout)
    return tuple(found)


# BENCH_CEILING_WORK: the µs of CPU each ceiling+work twin burns per PUT;
# "own" is ours' in-process cost, measured at the start of the run.
OWN_WORK = "own"
MAX_WORK_US = 100_000


def parse_work(raw: str | None) -> tuple[str, ...]:
    """BENCH_CEILING_WORK, e.g. `own` (the default), `own,150` or `off`:
    the update_ship ceilings that also burn CPU per PUT. ValueError on
    anything else."""
    raw = OWN_WORK if raw is None else raw
    if raw.strip().lower() in ("", "off", "0"):
        return ()
    found: list[str] = []
    for item in raw.split(","):
        item = item.strip().lower()
        if item != OWN_WORK:
            if not re.fullmatch(r"\d+", item) or not 1 <= int(item) <= MAX_WORK_US:
                raise ValueError(
                    f"BENCH_CEILING_WORK: {item!r} is not {OWN_WORK} or a whole number of µs"
                    f" from 1 to {MAX_WORK_US} (e.g. own,250), nor off"
                )
            item = str(int(item))
        if item not in found:
            found.append(item)
    return tuple(found)


def shipped_layout(conf: Path = ROOT / "gunicorn.conf.py") -> tuple[str, str]:
    """(workers, threads) as gunicorn.conf.py sets them: the environment's
    WEB_CONCURRENCY / GUNICORN_THREADS, else the file's own defaults, read
    from its `int(os.environ.get(NAME, "default"))` lines without running it
    (it makes a metrics directory and a key when run), so bare and the
    baseline always get ours' layout."""
    defaults = {}
    for node in ast.walk(ast.parse(conf.read_text())):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "get" and len(node.args) == 2:
            name, default = node.args
            if isinstance(name, ast.Constant) and isinstance(default, ast.Constant):
                defaults[name.value] = default.value
    try:
        return tuple(os.environ.get(name, defaults[name]) for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"))
    except KeyError as missing:
        raise ValueError(f"{conf} no longer sets {missing} with a default") from None


@dataclasses.dataclass(frozen=True)
class Config:
    rounds: int
    duration: int
    connections: int
    threads: int
    login_connections: int
    warmup: int
    churn: int
    ship: int
    profile: bool
    scenarios: list[Scenario]
    reports: Path
    baseline: str  # session_cost's "before": a git ref or a checkout directory
    scale: int  # ships in the twins' stores (0: no twins)
    revoked: int  # revoked ids in them
    sessions: int  # sessions per user in them
    pg: bool  # also on PostgreSQL
    layouts: tuple[str, ...] = ()  # BENCH_LAYOUTS: other worker layouts for ours and the ceiling
    work: tuple[str, ...] = ()  # BENCH_CEILING_WORK: µs per PUT (or "own") for ceiling+work twins

    @classmethod
    def from_env(cls, env=os.environ) -> Config:
        """ValueError on a bad value: the caller exits 2 with its message."""
        scale = env_int(env, "BENCH_SCALE", 0)
        if scale and scale <= SHIP_COUNT:
            raise ValueError(f"BENCH_SCALE must be above {SHIP_COUNT} (the seed's ships), or 0")
        return cls(
            rounds=max(1, env_int(env, "BENCH_ROUNDS", 3)),
            duration=max(1, env_int(env, "BENCH_DURATION", 5)),
            connections=max(1, env_int(env, "BENCH_CONNECTIONS", 32)),
            threads=max(1, env_int(env, "BENCH_THREADS", 2)),
            login_connections=max(1, env_int(env, "BENCH_LOGIN_CONNECTIONS", 4)),
            warmup=env_int(env, "BENCH_WARMUP", 1),
            churn=env_int(env, "BENCH_CHURN", 20),
            ship=max(1, min(SHIP_COUNT, env_int(env, "BENCH_SHIP", 2))),
            profile=env.get("BENCH_PROFILE", "") not in ("", "0"),
            scenarios=choose(env.get("BENCH_SCENARIOS"), scale),
            reports=Path(env.get("BENCH_REPORTS") or ROOT / "reports"),
            baseline=env.get("BENCH_BASELINE") or DEFAULT_BASELINE,
            scale=scale,
            revoked=env_int(env, "BENCH_REVOKED", 1_000_000),
            sessions=env_int(env, "BENCH_SESSIONS", 100),
            pg=env.get("BENCH_PG", "") not in ("", "0"),
            layouts=parse_layouts(env.get("BENCH_LAYOUTS")),
            work=parse_work(env.get("BENCH_CEILING_WORK")),
        )

    def layout(self) -> str:
        workers, threads = shipped_layout()
        return f"{workers} workers x {threads} gthreads"


def machine() -> str:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs ({cpu or 'unknown CPU'}), Python {sys.version.split()[0]}"
