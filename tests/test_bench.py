"""`make bench` itself, run briefly: the tool works; no speed is asserted.

One round of one second on two scenarios, cheap scrypt, little churn: the
bench must exit 0, report a positive ratio for each scenario and draw a PNG.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from devtools.gunicorn import PROJECT_ROOT

SCENARIOS = ["get_ship", "update_ship", "update_ship_eddsa"]

pytestmark = pytest.mark.skipif(not shutil.which("wrk"), reason="wrk not installed (apt-get install wrk)")


def run_bench(tmp_path, **extra) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "BENCH_ROUNDS": "1",
        "BENCH_DURATION": "1",
        "BENCH_WARMUP": "0",
        "BENCH_CHURN": "2",
        "BENCH_CONNECTIONS": "8",
        "BENCH_SCENARIOS": ",".join(SCENARIOS),
        "BENCH_REPORTS": str(tmp_path),
        "FLEET_SCRYPT_N": "16",
        **extra,
    }
    env.pop("BENCH_PROFILE", None)
    return subprocess.run(
        [sys.executable, "-m", "scripts.bench"],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def ratios(markdown: str) -> dict[tuple[str, str], float]:
    """(scenario, target) -> req/s ÷ the ceiling's, from the rows of the results table."""
    found = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 10 and re.fullmatch(r"\d+\.\d+", cells[6]):
            found[(cells[0], cells[1])] = float(cells[6])
    return found


def test_bench_reports_ratios_and_chart(tmp_path):
    result = run_bench(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr

    md = (tmp_path / "bench.md").read_text()
    found = ratios(md)
    apps = {"update_ship_eddsa": "eddsa"}
    assert {(s, apps.get(s, "ours")) for s in SCENARIOS} <= set(found), md
    assert {s for s, _ in found} == set(SCENARIOS), md
    assert all(r > 0 for r in found.values()), found
    assert found[("get_ship", "ceiling")] == 1.0
    assert ratios(result.stdout) == found  # the same table on stdout
    assert "scrypt N=16, r=8, p=1" in md and "ms per hash" in md
    assert re.search(r"^\| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [+-]\d+ \|$", md, re.M), md  # worker RSS rows

    png = tmp_path / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_scenario_is_refused(tmp_path):
    result = run_bench(tmp_path, BENCH_SCENARIOS="get_ship,nope")
    assert result.returncode == 2
    assert "nope" in result.stderr


def test_missing_wrk_says_how_to_install(tmp_path):
    result = run_bench(tmp_path, PATH=str(tmp_path))  # no wrk on this PATH
    assert result.returncode == 2
    assert "apt-get install wrk" in result.stderr


def worktrees() -> set[str]:
    out = subprocess.run(
        ["git", "-C", str(PROJECT_ROOT), "worktree", "list", "--porcelain"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return {line.split(" ", 1)[1] for line in out.splitlines() if line.startswith("worktree ")}


def test_session_cost_runs_a_baseline_checkout_side_by_side_and_removes_it(tmp_path):
    # HEAD stands in for the commit before sessions: any clone has it.
    before = worktrees()
    result = run_bench(tmp_path, BENCH_SCENARIOS="session_cost", BENCH_BASELINE="HEAD")
    assert result.returncode == 0, result.stdout + result.stderr
    md = (tmp_path / "bench.md").read_text()
    ratio = re.search(r"\*\*after ÷ before = (\d+\.\d+)\*\*", md)
    assert ratio and float(ratio.group(1)) > 0, md
    assert "both answer the same 400 body" in md
    assert re.search(r"^\| (after|before) \| [\d,.]+ \| [\d.]+ \| [\d.]+ \| [\d., ]+ \|$", md, re.M), (
        md
    )  # p99s
    assert worktrees() == before  # the temporary checkout is gone


def test_an_unavailable_baseline_is_reported_and_the_rest_of_the_bench_runs(tmp_path):
    result = run_bench(tmp_path, BENCH_SCENARIOS="session_cost,get_ship", BENCH_BASELINE="no-such-ref")
    assert result.returncode == 1
    assert "session_cost: not measured: baseline 'no-such-ref' unavailable" in result.stderr
    md = (tmp_path / "bench.md").read_text()
    assert "**not measured: baseline 'no-such-ref' unavailable" in md
    assert ("get_ship", "ours") in ratios(md)
