"""`make bench`: wrk against Fleet API and its ceilings, interleaved.

Run as `python -m scripts.bench`. The pieces, each in its own module:

  scenarios.py  one row per scenario: its wrk script (benchmarks/*.lua),
                request, body, token and the targets it runs on
  run.py        the targets: gunicorns started side by side on free
                loopback ports (devtools.gunicorn), stopped by PID
  measure.py    wrk runs (each scenario's targets in turn, rotated one
                place each round), their parsing, CPU and RSS from /proc,
                scrypt's cost, py-spy profiles
  report.py     rows, ratios, tables, the chart and reports/bench.md
  inprocess.py  ours' own CPU per PUT, no server (for ceiling+ours)
  config.py     the environment below
  cli.py        main(): the three in order

The table reports medians of the rounds, p50/p99, and each target's ratio to
the references that ran the same scenario. Login is dominated by scrypt by
design. After each round a few logins and logouts (token revocations) run,
then each of our workers' RSS is read from /proc, to show memory does not
grow across rounds.

Output: the tables on stdout, reports/bench.md and reports/bench.png.
Exit 0 when every run completed with only the expected answers, 1 when a
run failed (bad statuses, no requests), 2 on bad usage or a missing wrk.

Environment (all optional):
  BENCH_ROUNDS       rounds; each runs every scenario on its targets (default 3)
  BENCH_DURATION     seconds per wrk run                               (default 5)
  BENCH_CONNECTIONS  wrk connections                                   (default 32)
  BENCH_THREADS      wrk threads                                       (default 2)
  BENCH_SCENARIOS    comma-separated subset of scenarios.SCENARIOS     (default all)
  BENCH_LOGIN_CONNECTIONS  wrk connections for login (default 4: each
                     login holds a core for one scrypt, more only queue)
  BENCH_WARMUP       seconds of mixed traffic on each server first     (default 1)
  BENCH_CHURN        logins + logouts between rounds                   (default 20)
  BENCH_SHIP         ship id the writes replace                        (default 2)
  BENCH_REPORTS      report directory                                  (default reports/)
  BENCH_PROFILE      1: also py-spy one worker during get_ship and update_ship
                     (needs py-spy; top 10 in bench.md, stacks in
                     reports/profile_*.folded)
  BENCH_LAYOUTS      comma-separated WORKERSxTHREADS, e.g. 2x16: ours and the
                     ceiling also run under each, side by side with the
                     shipped layout (a "Worker layouts" table in bench.md)
  BENCH_CEILING_WORK comma-separated `own` and/or µs, e.g. own,150: update_ship
                     also on the ceiling burning that much CPU per PUT
                     (`own`: ours' in-process cost, inprocess.py); off: none
                                                                       (default own)
  FLEET_SECRET_KEY   signing key (random 48 characters when unset)
  FLEET_STORE, FLEET_SCRYPT_N, WEB_CONCURRENCY, GUNICORN_THREADS  passed to the servers
Note: with FLEET_STORE set, ship BENCH_SHIP in that store is replaced by the
bench's body.
"""
