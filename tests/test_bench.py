"""`make bench` itself, run briefly: the tool works; no speed is asserted.

One round of one second on a few scenarios, cheap scrypt, little churn: the
bench must exit 0, report a positive ratio for each scenario and target and
draw a PNG; its PUTs must change the row each time.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from devtools.gunicorn import PROJECT_ROOT
from scripts.bench.config import shipped_layout
from tests.support.bodies import STAR_DESTROYER
from tests.support.loopback import QuietHandler, serving

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


def result_rows(markdown: str) -> dict[tuple[str, str], list[str]]:
    """(scenario, target) -> the cells of its row in the results table."""
    found = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 13 and re.fullmatch(r"\d+\.\d+", cells[9]):
            found[(cells[0], cells[1])] = cells
    return found


def ratios(markdown: str) -> dict[tuple[str, str], float]:
    """(scenario, target) -> req/s ÷ the ceiling's."""
    return {key: float(cells[9]) for key, cells in result_rows(markdown).items()}


def write_path_rows(markdown: str) -> dict[tuple[str, str], list[float]]:
    """(scenario, target) -> writes/commit, lock busy %, wait µs, held µs (the write-path table)."""
    found = {}
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 6 and re.fullmatch(r"\d+\.\d\d", cells[2]):
            found[(cells[0], cells[1])] = [float(c.replace(",", "")) for c in cells[2:]]
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
    targets = {t for s, t in found if s == "update_ship"}
    # The write also on synchronous=normal, and on the ceiling burning ours' own CPU per PUT.
    assert targets == {"ours", "normal", "ceiling", "ceiling+ours", "bare"}, md
    own = re.search(r"Ours in-process, no server: (\d+) µs of CPU", md)
    assert own and int(own[1]) > 0, md
    assert re.search(
        r"^\| get_ship \| bare \| [\d,.]+ \| [\d.]+ \| [\d.]+ \| [\d,]+ \| [\d.]+ \| \d+ \| 1\.000 \|",
        md,
        re.M,
    ), md
    # What each request cost its server in CPU and in hand-overs of the CPU,
    # and how idle the machine was, on every target.
    for (scenario, target), cells in result_rows(md).items():
        cpu, switches, idle = int(cells[5].replace(",", "")), float(cells[6]), int(cells[7])
        assert cpu > 0 and switches > 0 and 0 <= idle <= 100, (scenario, target, cells)
    assert ratios(result.stdout) == found  # the same table on stdout
    # What the write path did, from each app's /metrics: only where it wrote,
    # never on the bare app or a read.
    assert "## Write path (from each server's /metrics)" in md
    writes = write_path_rows(md)
    assert set(writes) == {
        ("update_ship", "ours"),
        ("update_ship", "normal"),
        ("update_ship_eddsa", "eddsa"),
    }, md
    for key, (per_commit, busy, wait_us, held_us) in writes.items():
        assert per_commit >= 1 and 0 < busy <= 100 and wait_us >= 0 and held_us > 0, (key, writes[key])
    assert "scrypt N=16, r=8, p=1" in md and "ms per hash" in md
    assert re.search(r"^\| \d+ \| [\d.]+ \| [\d.]+ \| [\d.]+ \| [+-]\d+ \|$", md, re.M), md  # worker RSS rows

    png = tmp_path / "bench.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_scenario_is_refused(tmp_path):
    result = run_bench(tmp_path, BENCH_SCENARIOS="get_ship,nope")
    assert result.returncode == 2
    assert "nope" in result.stderr


def test_a_bad_layout_is_refused(tmp_path):
    result = run_bench(tmp_path, BENCH_LAYOUTS="2x16,0x8")
    assert result.returncode == 2
    assert "BENCH_LAYOUTS: '0x8'" in result.stderr


def test_a_layout_runs_ours_and_the_ceiling_beside_the_shipped_layout(tmp_path):
    result = run_bench(tmp_path, BENCH_SCENARIOS="get_ship", BENCH_LAYOUTS="1x2")
    assert result.returncode == 0, result.stdout + result.stderr
    md = (tmp_path / "bench.md").read_text()
    assert {("get_ship", "ours/1x2"), ("get_ship", "ceiling/1x2")} <= set(ratios(md)), md
    assert "## Worker layouts (BENCH_LAYOUTS)" in md
    row = re.search(
        r"^\| get_ship \| 1x2 \| [\d,.]+ \| [\d.]+ \| [\d,]+ \| [\d.]+ \| \d+ \| [\d,.]+ \| (\d+\.\d+) \|",
        md,
        re.M,
    )
    assert row and float(row.group(1)) > 0, md
    assert re.search(r"^\| get_ship \| \d+x\d+ \(shipped\) \| .* \| 1\.000 \| 1\.000 \|$", md, re.M), md
    # The twins booted the layout's one worker; the shipped ours its own count.
    for name in ("ours_1x2", "ceiling_1x2"):
        assert (tmp_path / f"bench-{name}.log").read_text().count("Booting worker") == 1, name
    assert (tmp_path / "bench-ours.log").read_text().count("Booting worker") == int(shipped_layout()[0])


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


def record_requests(script: str, *args: str, seconds: int = 1) -> list[tuple[str, str, dict]]:
    """Run a bench script with wrk against a server that records each
    request (method, path, JSON body) and answers 200 {}."""
    seen: list[tuple[str, str, dict]] = []

    class Recorder(QuietHandler):
        protocol_version = "HTTP/1.1"

        def answer(self):
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            seen.append((self.command, self.path, json.loads(body) if body else {}))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        do_GET = do_PUT = answer

    with serving(Recorder) as url:
        script_path = str(PROJECT_ROOT / "benchmarks" / script)
        result = subprocess.run(
            ["wrk", "-t", "2", "-c", "2", "-d", f"{seconds}s", "-s", script_path, url, "--", *args],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert result.returncode == 0 and "BENCH_JSON" in result.stdout, result.stdout + result.stderr
    return seen


@pytest.mark.parametrize("script, extra", [("put.lua", []), ("mixed.lua", ["15"])])
def test_the_bench_writes_change_the_ship_on_every_request(tmp_path, script, extra):
    body = tmp_path / "ship.json"
    body.write_text(json.dumps({**STAR_DESTROYER, "crew": 5}))
    seen = record_requests(script, "PUT", "/api/ships/2", str(body), "token", "0", *extra)
    puts = [b for method, path, b in seen if method == "PUT" and path == "/api/ships/2"]
    assert len(puts) > 5, seen[:5]
    crews = [b["crew"] for b in puts]
    assert len(set(crews)) == len(crews)  # never the same body twice
    assert all({**b, "crew": 5} == {**STAR_DESTROYER, "crew": 5} for b in puts)  # only the crew moves


def test_scale_mode_fills_a_twin_store_and_reports_it_beside_the_15_ship_figures(tmp_path):
    result = run_bench(
        tmp_path,
        BENCH_SCALE="200",
        BENCH_REVOKED="1000",
        BENCH_SESSIONS="5",
        BENCH_SCENARIOS="page_deep,mixed",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    md = (tmp_path / "bench.md").read_text()
    assert "- filled ours@200: 200 ships, 1,000 revoked ids, 10 sessions in" in md
    row = re.search(
        r"^\| page_deep \| ours \| [\d,.]+ \| [\d.]+ \| ours@200 \| [\d,.]+ \| [\d.]+ \| (\d+\.\d+) \|$",
        md,
        re.M,
    )
    assert row and float(row.group(1)) > 0, md
    assert ("page_deep", "ours@200") in ratios(md)
    assert ("mixed", "ours@200") not in ratios(md)  # the blend of ships 1..15 does not scale


def test_a_scale_below_the_seed_is_refused(tmp_path):
    result = run_bench(tmp_path, BENCH_SCALE="10")
    assert result.returncode == 2
    assert "BENCH_SCALE must be above 15" in result.stderr


def test_bench_pg_runs_the_scenarios_on_a_throwaway_postgresql_too(tmp_path):
    result = run_bench(
        tmp_path, BENCH_PG="1", BENCH_SCALE="200", BENCH_REVOKED="1000", BENCH_SCENARIOS="update_ship"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    md = (tmp_path / "bench.md").read_text()
    found = ratios(md)
    assert {("update_ship", "pg"), ("update_ship", "pg@200"), ("update_ship", "ours@200")} <= set(found), md
    assert "- filled pg@200: 200 ships, 1,000 revoked ids, 200 sessions in" in md
    assert re.search(r"^\| update_ship \| pg \| [\d,.]+ \| [\d.]+ \| pg@200 \|", md, re.M), md
    assert re.search(r"^pg: gunicorn pid \d+", result.stdout, re.M)
