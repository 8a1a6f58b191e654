"""The bench's pieces, without servers: wrk output parsing, the scenario
table, the report's rows and tables (scripts/bench/)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from devtools.gunicorn import GUNICORN_CONF, NO_CONF, PROJECT_ROOT
from scripts.bench import measure, report
from scripts.bench.config import parse_layouts, parse_work, shipped_layout
from scripts.bench.measure import (
    STORE_STATS,
    BenchError,
    Run,
    WritePath,
    parse_wrk,
    store_stats,
    with_write_path,
)
from scripts.bench.run import plain_gunicorn
from scripts.bench.scenarios import BENCH_DIR, SCENARIOS, Context, choose
from tests.support.bodies import STAR_DESTROYER
from tests.support.loopback import QuietHandler, serving


def wrk_output(**fields) -> str:
    values = {
        "requests": 3000,
        "duration_us": 2_000_000,
        "bytes": 1,
        "p50_us": 1500,
        "p90_us": 4000,
        "p99_us": 12_345,
        "max_us": 20_000,
        "connect_errors": 1,
        "read_errors": 2,
        "write_errors": 0,
        "status_errors": 7,
        "timeouts": 3,
        "unexpected": 5,
    } | fields
    return "Running 2s test @ http://127.0.0.1:1\n  2 threads\nBENCH_JSON " + json.dumps(values) + "\n"


def test_wrk_output_becomes_a_run():
    run = parse_wrk(wrk_output())
    assert run == Run(requests=3000, rps=1500.0, p50_ms=1.5, p99_ms=12.345, socket_errors=6, status_errors=7)


def test_an_expected_status_counts_only_the_other_answers():
    # session_cost expects 400s: wrk's own count (every answer >= 400) would be all of them.
    assert parse_wrk(wrk_output(status_errors=3000), expect=400).status_errors == 5


def test_wrk_output_without_the_report_line_is_an_error():
    with pytest.raises(BenchError, match="BENCH_JSON"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


class FakeTarget:
    def __init__(self, kind="ours", url="http://127.0.0.1:9", ships=15, layout="") -> None:
        self.kind, self.name, self.url, self.ships, self.layout = kind, kind, url, ships, layout
        self.access, self.refresh = "ACCESS", "REFRESH"


@pytest.fixture
def ctx(tmp_path) -> Context:
    return Context(2, tmp_path / "ship.json", tmp_path / "login.json", tmp_path / "empty.json")


@pytest.mark.parametrize("scenario", list(SCENARIOS.values()), ids=list(SCENARIOS))
def test_every_scenario_carries_an_existing_script_and_the_common_arguments(scenario, ctx):
    target = FakeTarget(scenario.targets[0])
    args = scenario.wrk_args(target, ctx)
    assert args[0] == "-s" and Path(args[1]).parent == BENCH_DIR and Path(args[1]).is_file()
    assert args[2] == target.url and args[3] == "--"
    method, path, body, token, expect = args[4:9]
    assert method == scenario.method and path.startswith("/")
    assert body == ("-" if scenario.body is None else str(scenario.body(ctx)))
    assert token == {"access": "ACCESS", "refresh": "REFRESH", None: "-"}[scenario.token]
    assert int(expect) == scenario.expect
    assert scenario.runs_on(target) and scenario.targets


def test_the_session_cost_scenario_compares_after_with_before_on_an_authenticated_400(ctx):
    scenario = SCENARIOS["session_cost"]
    assert scenario.targets == ("after", "before")
    assert (scenario.method, scenario.expect, scenario.token) == ("POST", 400, "access")
    assert scenario.body(ctx) == ctx.empty_file
    assert not scenario.runs_on(FakeTarget("ours"))


def test_scenarios_are_chosen_by_name_and_unknown_names_are_refused():
    assert [s.name for s in choose("get_ship, login")] == ["get_ship", "login"]
    assert [s.name for s in choose(None)] == list(SCENARIOS)
    with pytest.raises(ValueError, match="nope"):
        choose("get_ship,nope")


def test_layouts_are_workers_x_threads_and_the_shipped_one_is_left_out():
    assert parse_layouts("2x16, 4X8,2x16,3x8", shipped=("3", "8")) == ("2x16", "4x8")
    assert parse_layouts("", shipped=("3", "8")) == parse_layouts(None, shipped=("3", "8")) == ()


@pytest.mark.parametrize("bad", ["0x8", "2x0", "17x1", "2x65", "2x", "x8", "two", "2x8x1", "-1x8"])
def test_a_layout_out_of_bounds_or_shape_is_refused(bad):
    with pytest.raises(ValueError, match="BENCH_LAYOUTS"):
        parse_layouts(f"2x16,{bad}", shipped=("3", "8"))


def run(
    rps: float, p99: float = 10.0, status_errors: int = 0, cpu_us=None, idle=None, steal=None, switches=None
) -> Run:
    return Run(
        requests=int(rps),
        rps=rps,
        p50_ms=1.0,
        p99_ms=p99,
        socket_errors=0,
        status_errors=status_errors,
        cpu_us=cpu_us,
        idle=idle,
        steal=steal,
        switches=switches,
    )


def test_rows_carry_medians_p99_and_ratios_to_the_references_that_ran():
    runs = {
        ("get_ship", "ours"): [
            run(900, cpu_us=700, idle=0.1, switches=6.0),
            run(1000, p99=20, cpu_us=600, switches=9.0),
            run(1100),
        ],
        ("get_ship", "ceiling"): [run(2000), run(2000), run(2000)],
        ("get_ship", "bare"): [run(4000), run(4000), run(4000)],
    }
    rows = report.summarize([SCENARIOS["get_ship"]], ["ours", "ceiling", "bare", "pg"], runs)
    assert [r.target for r in rows] == ["ours", "ceiling", "bare"]  # pg did not run it
    ours = rows[0]
    assert (ours.rps, ours.p99) == (1000, 10.0)
    assert ours.ratios == {"bare": 0.25, "ceiling": 0.5, "ours": 1.0}
    assert ours.ranges["bare"] == (900 / 4000, 1100 / 4000)
    table = report.results_table(rows)
    # CPU, switches and idle: the median of the rounds that measured them.
    assert (ours.cpu_us, ours.switches, ours.idle) == (650, 7.5, 0.1)
    assert (
        "| get_ship | ours | 1,000 | 1.00 | 10.0 | 650 | 7.5 | 10 | 0.250 | 0.500 | 1.000 | 0.225–0.275 | 0 |"
        in table
    )
    assert "| get_ship | ceiling | 2,000 | 1.00 | 10.0 | — | — | — | 0.500 |" in table


def test_a_reference_that_did_not_run_reads_as_a_dash():
    runs = {("session_cost", "after"): [run(500)], ("session_cost", "before"): [run(1000)]}
    table = report.results_table(report.summarize([SCENARIOS["session_cost"]], ["after", "before"], runs))
    assert "| session_cost | after | 500 | 1.00 | 10.0 | — | — | — | — | — | — | — | 0 |" in table


def test_the_report_says_how_much_cpu_the_host_stole():
    runs = {
        ("get_ship", "ours"): [run(1, steal=0.02), run(1, steal=0.10)],
        ("get_ship", "bare"): [run(1, steal=0.04), run(1)],
    }
    assert report.steal_text(runs) == "CPU stolen by the host during the runs: median 4.0%, max 10.0%"
    assert report.steal_text({("get_ship", "ours"): [run(1)]}) == "CPU stolen by the host: not measured"


def test_server_ticks_keep_the_cpu_of_a_worker_that_was_reaped():
    # A worker recycled during a run (max_requests) leaves the live workers;
    # its CPU is then in its master's cutime, and must still count.
    from scripts.bench.measure import server_ticks

    hz = os.sysconf("SC_CLK_TCK")
    before = server_ticks(os.getpid())
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass"
    subprocess.run([sys.executable, "-c", burn], check=True, timeout=30)  # a child that ran and was reaped
    assert server_ticks(os.getpid()) - before >= 0.25 * hz


def test_machine_ticks_are_idle_and_stolen_within_all():
    from scripts.bench.measure import machine_ticks

    idle, steal, total = machine_ticks()
    assert 0 <= idle + steal <= total and total > 0


def test_thread_switches_count_each_time_a_thread_blocks():
    # Two threads hand a turn back and forth 100 times: each wait blocks, so
    # the process's threads switch at least that often in between.
    from scripts.bench.measure import switches_between, thread_switches

    ping, pong = threading.Event(), threading.Event()

    def partner():
        for _ in range(100):
            ping.wait(10)
            ping.clear()
            pong.set()

    before = thread_switches([os.getpid()])
    assert (os.getpid(), threading.get_native_id()) in before
    other = threading.Thread(target=partner)
    other.start()
    for _ in range(100):
        ping.set()
        pong.wait(10)
        pong.clear()
    other.join(10)
    after = thread_switches([os.getpid()])
    assert switches_between(before, after) >= 100


def test_switches_between_count_a_new_thread_whole_and_never_go_negative():
    from scripts.bench.measure import switches_between

    before = {(1, 1): 10, (1, 2): 50}  # thread 2 ends before the second reading
    after = {(1, 1): 15, (1, 3): 7}  # thread 3 was born in between
    assert switches_between(before, after) == 5 + 7
    # A new thread under an ended one's id counts from zero.
    assert switches_between({(1, 4): 900}, {(1, 4): 3}) == 3
    assert switches_between({}, {}) == 0


def test_the_pair_reports_after_over_before_with_each_round_and_the_p99s():
    runs = {
        ("session_cost", "after"): [run(900, p99=30), run(1000, p99=31), run(1200, p99=32)],
        ("session_cost", "before"): [run(1000, p99=20), run(1000, p99=21), run(1000, p99=22)],
    }
    text = report.pair_text(runs, "session_cost", "after", "before")
    assert "**after ÷ before = 1.000**" in text
    assert "per round: 0.900, 1.000, 1.200; range 0.900–1.200" in text
    assert "| after | 1,000 | 1.00 | 31.0 | 30.0, 31.0, 32.0 |" in text
    assert "| before | 1,000 | 1.00 | 21.0 | 20.0, 21.0, 22.0 |" in text
    assert report.pair_text({}, "session_cost", "after", "before") == "(not measured)"


def test_the_deep_page_is_the_last_full_page_of_the_targets_store(ctx):
    page = SCENARIOS["page_deep"]
    assert page.request_path(FakeTarget(ships=15), ctx) == "/api/ships?limit=50&offset=0"
    assert page.request_path(FakeTarget(ships=100_000), ctx) == "/api/ships?limit=50&offset=99950"


def test_the_ceiling_answers_each_benchmarked_query_with_its_canned_page():
    import falcon.testing

    from benchmarks.ceiling import create_app

    bodies = {
        "list": b"[all]",
        "queries": {"limit=50&offset=0": b"[page]"},
        "ships": {1: b"{one}"},
        "put": b"{put}",
        "login": b"{tokens}",
        "refresh": b"{token}",
    }
    client = falcon.testing.TestClient(create_app(bodies))
    assert client.simulate_get("/api/ships").content == b"[all]"
    assert client.simulate_get("/api/ships", query_string="limit=50&offset=0").content == b"[page]"
    assert client.simulate_get("/api/ships", query_string="limit=5").status_code == 404
    assert client.simulate_put("/api/ships/1", body=b"{}").content == b"{put}"


def test_each_round_rotates_every_scenarios_targets_by_one_place():
    order = []

    def cell(scenario, target):
        return (scenario, target, lambda: order.append((scenario, target)) or run(1000), True)

    cells = [
        cell("get", "ours"),
        cell("get", "ceiling"),
        cell("get", "bare"),
        cell("put", "ours"),
        cell("put", "normal"),
    ]
    results = measure.interleave(
        4,
        cells,
        before_round=lambda _: None,
        after_round=lambda _: None,
        after_run=lambda: None,
        log=lambda _: None,
    )
    rounds = [order[i : i + 5] for i in range(0, 20, 5)]
    assert [[t for s, t in r if s == "get"] for r in rounds] == [
        ["ours", "ceiling", "bare"],
        ["ceiling", "bare", "ours"],
        ["bare", "ours", "ceiling"],
        ["ours", "ceiling", "bare"],
    ]
    assert [[t for s, t in r if s == "put"] for r in rounds] == [["ours", "normal"], ["normal", "ours"]] * 2
    assert all([s for s, _ in r] == ["get"] * 3 + ["put"] * 2 for r in rounds)  # scenario by scenario
    assert {key: len(runs) for key, runs in results.runs.items()} == {(s, t): 4 for s, t, _, _ in cells}


def test_the_ceiling_burns_the_cpu_it_is_given_per_put_and_answers_the_same_bytes(monkeypatch):
    import falcon.testing

    from benchmarks import ceiling
    from benchmarks.ceiling import create_app, iterations_for

    assert iterations_for(0) == iterations_for(-5) == 0
    assert iterations_for(50) >= 1
    # Calibrated from the fastest sample: samples of 1,000 iterations that
    # took 40, 10 and 20 ms of CPU make 100 iterations per ms, so 2 ms is 200.
    readings = iter([0.0, 0.040, 1.0, 1.010, 2.0, 2.020])
    assert iterations_for(2000, sample=1000, tries=3, clock=lambda: next(readings)) == 200
    burnt = []
    monkeypatch.setattr(ceiling, "busy_loop", burnt.append)
    monkeypatch.setattr(ceiling, "iterations_for", lambda us: int(us) * 3)
    bodies = {"list": b"[]", "queries": {}, "ships": {}, "put": b"{put}", "login": b"{}", "refresh": b"{}"}
    client = falcon.testing.TestClient(create_app(bodies, work_us=200))
    assert client.simulate_put("/api/ships/1", body=b"{}").content == b"{put}"
    assert client.simulate_get("/api/ships").content == b"[]"
    assert burnt == [600]  # the PUT burnt its iterations, the GET none


@pytest.mark.parametrize("bad", ["abc", "-1", "nan", "2000000"])
def test_the_ceiling_refuses_a_work_that_is_not_microseconds(tmp_path, monkeypatch, bad):
    from benchmarks.ceiling import BODIES_ENV, WORK_ENV, get_app

    bodies = {"list": "[]", "queries": {}, "ships": {}, "put": "{}", "login": "{}", "refresh": "{}"}
    (tmp_path / "bodies.json").write_text(json.dumps(bodies))
    monkeypatch.setenv(BODIES_ENV, str(tmp_path / "bodies.json"))
    monkeypatch.setenv(WORK_ENV, bad)
    with pytest.raises(RuntimeError, match=WORK_ENV):
        get_app()


def test_ceiling_work_is_own_by_default_and_may_add_microseconds_or_be_off():
    assert parse_work(None) == ("own",)
    assert parse_work("own, 150,0150,OWN") == ("own", "150")
    assert parse_work("250") == ("250",)
    assert parse_work("") == parse_work("off") == parse_work("0") == ()


@pytest.mark.parametrize("bad", ["-5", "abc", "1.5", "100001", "own,0"])
def test_a_ceiling_work_that_is_not_own_or_microseconds_is_refused(bad):
    with pytest.raises(ValueError, match="BENCH_CEILING_WORK"):
        parse_work(bad)


def test_ours_in_process_cost_is_measured_on_real_puts_in_a_process_of_its_own(tmp_path):
    from scripts.bench.inprocess import put_cpu_us

    ship = tmp_path / "ship.json"
    ship.write_text(json.dumps(STAR_DESTROYER))
    env = {"FLEET_SECRET_KEY": "s" * 40, "FLEET_SCRYPT_N": "16"}
    assert put_cpu_us(ship, 2, threads=2, env=env, requests=40) > 0


def affinity_after_pinning(monkeypatch, value: str | None) -> set[int]:
    """What pin_like_a_worker leaves a fresh thread (affinity is per thread
    on Linux, so pytest's own stays as it was)."""
    from scripts.bench.inprocess import pin_like_a_worker

    if value is None:
        monkeypatch.delenv("FLEET_PIN_WORKERS", raising=False)
    else:
        monkeypatch.setenv("FLEET_PIN_WORKERS", value)
    seen: list[set[int]] = []

    def pin() -> None:
        pin_like_a_worker()
        seen.append(os.sched_getaffinity(0))

    thread = threading.Thread(target=pin)
    thread.start()
    thread.join()
    return seen[0]


def test_ours_in_process_runs_on_one_cpu_as_a_pinned_worker_does(monkeypatch):
    assert affinity_after_pinning(monkeypatch, None) == {min(os.sched_getaffinity(0))}


def test_ours_in_process_keeps_every_cpu_when_workers_are_not_pinned(monkeypatch):
    assert affinity_after_pinning(monkeypatch, "off") == os.sched_getaffinity(0)


def test_an_in_process_put_that_fails_fails_the_measurement_with_its_answer(tmp_path):
    from scripts.bench.inprocess import put_cpu_us

    ship = tmp_path / "ship.json"
    ship.write_text(json.dumps({**STAR_DESTROYER, "length": "long"}))
    env = {"FLEET_SECRET_KEY": "s" * 40, "FLEET_SCRYPT_N": "16"}
    with pytest.raises(BenchError, match="in-process PUT answered 400"):
        put_cpu_us(ship, 2, threads=2, env=env, requests=10)


def check_filled(url: str) -> None:
    """What the store's own reads see after fill(): every row, and the
    blocklist and sessions answering as the app asks them."""
    import sqlite3
    import time

    from fleet_api.store import ListQuery, open_store

    store = open_store(url)
    try:
        assert store.find_ships(ListQuery(limit=1)).total == 200
        assert store.get_ship(200)["model"] == "Model 000200"
        assert store.get_ship(1)["model"] == "T-65 X-Wing"  # the seed's ships stay as they are
        users = store.list_users()
        assert len(users) == 2  # data.json's
        sessions = store.list_sessions(users[0].id, time.time())
        assert len(sessions) == 7
        user, revoked = store.token_subject(users[0].id, "not-revoked", sessions[0].id, time.time())
        assert user == users[0] and not revoked
        assert store.create_ship(dict(STAR_DESTROYER))["id"] == 201  # ids go on after the filled ones
    finally:
        store.close()
    if url.startswith("sqlite"):
        db = sqlite3.connect(url.removeprefix("sqlite:///"))
        (jti,) = db.execute("SELECT jti FROM revoked_tokens LIMIT 1").fetchone()
        assert db.execute("SELECT count(*) FROM revoked_tokens").fetchone() == (1000,)
        db.close()
    else:
        import psycopg

        with psycopg.connect(url) as conn:
            (jti,) = conn.execute("SELECT jti FROM revoked_tokens LIMIT 1").fetchone()
            assert conn.execute("SELECT count(*) FROM revoked_tokens").fetchone() == (1000,)
    store = open_store(url)
    try:
        assert store.is_token_revoked(jti)
    finally:
        store.close()


def test_fill_bulk_loads_ships_revocations_and_sessions_through_the_stores_schema(tmp_path):
    from fleet_api.passwords import PasswordHasher
    from fleet_api.settings import DEFAULT_DATA
    from scripts.bench.fill import fill

    url = f"sqlite:///{tmp_path}/fleet.db"
    filled = fill(url, 200, 1000, 7, PasswordHasher(16), DEFAULT_DATA)
    assert (filled.ships, filled.revoked, filled.sessions) == (200, 1000, 14)
    assert "200 ships, 1,000 revoked ids, 14 sessions in" in filled.describe()
    check_filled(url)
    with pytest.raises(RuntimeError, match="not a new store"):
        fill(url, 200, 10, 1, PasswordHasher(16), DEFAULT_DATA)


def test_fill_bulk_loads_a_postgresql_store_with_copy():
    from devtools.postgres import running_postgres
    from fleet_api.passwords import PasswordHasher
    from fleet_api.settings import DEFAULT_DATA
    from scripts.bench.fill import fill

    with running_postgres() as dsn:
        filled = fill(dsn, 200, 1000, 7, PasswordHasher(16), DEFAULT_DATA)
        assert (filled.ships, filled.revoked, filled.sessions) == (200, 1000, 14)
        check_filled(dsn)


@pytest.mark.parametrize(
    "chosen, names",
    [
        ("get_ship", ["ours", "ceiling", "bare"]),
        ("update_ship", ["ours", "normal", "ceiling", "bare"]),
        ("refresh_eddsa", ["ours", "eddsa", "ceiling"]),
    ],
)
def test_only_the_targets_the_chosen_scenarios_run_on_are_made(tmp_path, monkeypatch, chosen, names):
    from scripts.bench.run import Bench, make_targets

    monkeypatch.delenv("FLEET_STORE", raising=False)
    bench = Bench(work=tmp_path, reports=tmp_path, server_env={})
    try:
        make_targets(bench, choose(chosen))
        assert [t.name for t in bench.targets] == names
        ours = bench.target("ours").server.command()
        assert ours[ours.index("-c") + 1] == str(GUNICORN_CONF) and "--workers" not in ours
        if "bare" in names:
            bare = bench.target("bare").server.command()
            # Plain gunicorn: an empty config, since with no -c gunicorn reads ./gunicorn.conf.py.
            assert bare[bare.index("-c") + 1] == str(NO_CONF) and bare[-1] == "benchmarks.ceiling:get_app()"
            assert bare[bare.index("--worker-class") + 1] == "gthread"
        if "normal" in names:
            assert bench.target("normal").store_url.endswith("?synchronous=normal")
    finally:
        bench.stop()


def test_a_ceiling_work_twin_runs_on_the_write_only_with_its_microseconds(tmp_path, monkeypatch):
    from benchmarks.ceiling import WORK_ENV
    from scripts.bench.run import CEILING_APP, Bench, make_targets

    monkeypatch.delenv("FLEET_STORE", raising=False)
    bench = Bench(work=tmp_path, reports=tmp_path, server_env={})
    try:
        make_targets(bench, choose("get_ship,update_ship"), work={"own": 312.54, "150": 150.0})
        names = [t.name for t in bench.targets]
        assert names == ["ours", "normal", "ceiling", "ceiling+ours", "ceiling+150us", "bare"]
        for name, us in (("ceiling+ours", "312.5"), ("ceiling+150us", "150.0")):
            twin = bench.target(name)
            assert twin.kind == "work" and not twin.is_app
            assert twin.server.env[WORK_ENV] == us and twin.server.app == CEILING_APP
            assert twin.server.env["BENCH_CEILING_BODIES"] == str(bench.bodies_file)
        runs = {
            s.name: [t.name for t in bench.targets if s.runs_on(t)] for s in choose("get_ship,update_ship")
        }
        assert runs["get_ship"] == ["ours", "ceiling", "bare"]
        assert runs["update_ship"] == names
    finally:
        bench.stop()


def test_a_layout_twin_of_ours_and_the_ceiling_runs_where_ours_runs(tmp_path, monkeypatch):
    from scripts.bench.run import Bench, make_targets

    monkeypatch.delenv("FLEET_STORE", raising=False)
    bench = Bench(work=tmp_path, reports=tmp_path, server_env={"WEB_CONCURRENCY": "5"})
    try:
        make_targets(bench, choose("update_ship,refresh_eddsa"), layouts=("2x16",))
        names = [t.name for t in bench.targets]
        assert names == ["ours", "eddsa", "normal", "ceiling", "bare", "ours/2x16", "ceiling/2x16"]
        for name in ("ours/2x16", "ceiling/2x16"):
            twin = bench.target(name)
            assert twin.layout == "2x16" and twin.kind == name.split("/")[0]
            # The layout wins over the environment's, through gunicorn.conf.py.
            env = twin.server.env
            assert (env["WEB_CONCURRENCY"], env["GUNICORN_THREADS"]) == ("2", "16")
            command = twin.server.command()
            assert command[command.index("-c") + 1] == str(GUNICORN_CONF) and "--workers" not in command
        assert bench.target("ceiling/2x16").server.env["BENCH_CEILING_BODIES"] == str(bench.bodies_file)
        runs = {
            s.name: [t.name for t in bench.targets if s.runs_on(t)]
            for s in choose("update_ship,refresh_eddsa")
        }
        assert runs["update_ship"] == ["ours", "normal", "ceiling", "bare", "ours/2x16", "ceiling/2x16"]
        assert runs["refresh_eddsa"] == ["eddsa", "ceiling"]  # the eddsa pair is not a layout's
    finally:
        bench.stop()


def test_the_layout_table_sets_each_layout_beside_the_shipped_one():
    runs = {
        ("update_ship", "ours"): [run(1000, cpu_us=900, idle=0.08, switches=14.0)],
        ("update_ship", "ceiling"): [run(4000)],
        ("update_ship", "ours/2x16"): [run(1200, p99=8.0, cpu_us=800, idle=0.05)],
        ("update_ship", "ceiling/2x16"): [run(3000)],
        ("get_ship", "ours"): [run(5000)],  # no twin ran it: no rows
    }
    names = ["ours", "ceiling", "ours/2x16", "ceiling/2x16"]
    rows = report.summarize([SCENARIOS["get_ship"], SCENARIOS["update_ship"]], names, runs)
    table = report.layout_table(rows, ("2x16",), "3x8").splitlines()
    assert table[2:] == [
        "| update_ship | 3x8 (shipped) | 1,000 | 10.0 | 900 | 14.0 | 8 | 4,000 | 0.250 | 1.000 | 1.000 |",
        "| update_ship | 2x16 | 1,200 | 8.00 | 800 | — | 5 | 3,000 | 0.400 | 1.200 | 0.750 |",
    ]


# --- the worker layout bare and the baseline copy ----------------------------------
def _gunicorn_layout(env: dict) -> tuple[str, str]:
    """(workers, threads) as gunicorn itself reads gunicorn.conf.py."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("gunicorn")), "-c", "gunicorn.conf.py", "--print-config"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    found = dict(re.findall(r"^(workers|threads)\s+=\s+(\d+)$", done.stdout, re.M))
    return found["workers"], found["threads"]


@pytest.mark.parametrize(
    "override", [{}, {"WEB_CONCURRENCY": "3", "GUNICORN_THREADS": "5"}], ids=["defaults", "env"]
)
def test_bare_gets_the_layout_gunicorn_reads_from_our_config(monkeypatch, override):
    env = {k: v for k, v in os.environ.items() if k not in ("WEB_CONCURRENCY", "GUNICORN_THREADS")}
    env |= {"FLEET_METRICS": "off", **override}  # metrics off: no directory made for a config print
    for name in ("WEB_CONCURRENCY", "GUNICORN_THREADS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in override.items():
        monkeypatch.setenv(name, value)
    workers, threads = _gunicorn_layout(env)

    assert shipped_layout() == (workers, threads)
    assert plain_gunicorn() == ["--workers", workers, "--threads", threads, "--worker-class", "gthread"]


# --- the write path, from /metrics --------------------------------------------------


def stats(commits, writes, holds, wait, held) -> dict[str, float]:
    return dict(zip(STORE_STATS, (commits, writes, holds, wait, held), strict=True))


def test_with_write_path_keeps_what_the_counters_moved_by_over_the_run(monkeypatch):
    scrapes = iter([stats(10, 30, 12, 0.5, 1.0), stats(110, 430, 112, 0.9, 3.0)])
    monkeypatch.setattr(measure, "store_stats", lambda base: next(scrapes))
    times = iter([100.0, 104.0])
    run = with_write_path("http://x", lambda: Run(1, 1.0, 1.0, 1.0, 0, 0), clock=lambda: next(times))

    assert run.write_path == WritePath(4.0, 100, 400, 100, pytest.approx(0.4), 2.0)
    assert run.write_path.per_commit == 4.0
    assert run.write_path.busy == 0.5  # 2 s held in a 4 s run
    assert run.write_path.wait_us == pytest.approx(4_000)
    assert run.write_path.held_us == 20_000


@pytest.mark.parametrize("after", [None, stats(10, 30, 12, 0.5, 1.0)])
def test_with_write_path_keeps_nothing_without_counters_or_writes(monkeypatch, after):
    scrapes = iter([stats(10, 30, 12, 0.5, 1.0), after])
    monkeypatch.setattr(measure, "store_stats", lambda base: next(scrapes))
    assert with_write_path("http://x", lambda: Run(1, 1.0, 1.0, 1.0, 0, 0)).write_path is None


def test_store_stats_reads_the_five_counters_off_a_metrics_page():
    page = "\n".join(
        ["# HELP store_commits_total x", "store_commits_total 3.0", 'http_requests_total{a="b"} 9.0']
        + [f"{name} {i}.5" for i, name in enumerate(STORE_STATS[1:], start=1)]
    ).encode()

    class Metrics(QuietHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/metrics" else 404)
            self.end_headers()
            self.wfile.write(page)

    with serving(Metrics) as base:
        assert store_stats(base) == stats(3.0, 1.5, 2.5, 3.5, 4.5)
        assert store_stats(base + "/elsewhere") is None  # a 404: no counters


def test_the_write_path_table_has_a_row_per_target_that_wrote():
    path = WritePath(5.0, 100, 350, 110, 0.22, 1.1)
    runs = {
        ("update_ship", "ours"): [Run(1, 1.0, 1.0, 1.0, 0, 0, write_path=path)] * 3,
        ("update_ship", "bare"): [Run(1, 1.0, 1.0, 1.0, 0, 0)],
    }
    table = report.write_path_table(runs)
    assert table.splitlines()[2:] == ["| update_ship | ours | 3.50 | 22 | 2,000 | 10,000 |"]
    assert report.write_path_table({("get_ship", "ours"): [Run(1, 1.0, 1.0, 1.0, 0, 0)]}) == ""
