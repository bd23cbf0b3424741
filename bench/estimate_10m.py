"""`pgq stats --estimate` against exact at 10M skewed rows: time, and the error per group.

    .venv/bin/python bench/estimate_10m.py build   [--dsn DSN] [--rows 10000000]
    .venv/bin/python bench/estimate_10m.py measure [--dsn DSN] [--repeats 5]
    .venv/bin/python bench/estimate_10m.py drop    [--dsn DSN]

`build` creates the database `pgq_est10m` on the server of --dsn (default the local
127.0.0.1:5432) and fills `pgq.messages`, migrated with the real migrator, with set-based
`INSERT ... SELECT ... generate_series` (1M rows a statement) in the skew that broke the
old estimate: 3 queues holding 80% / 15% / 5% of the rows, priorities 1..10;
- ready: ~96%, the largest class; priority 10 of q2 is tiny (~1 in 50 of its share);
- leased: 1% (half expired), dead: 1%;
- delayed: ~29k (1 row in 345), spread over (queue, priority) geometrically, so that
  priority p holds 2^(p-1)/1023 of them: groups from ~3 rows to ~4,800.
Then `VACUUM ANALYZE`, as autovacuum would after a bulk load (autovacuum is off on the
bench server). Then the oldest 5% of the table is deleted (messages acked at the head of
the line) and left unvacuumed: whole blocks of dead tuples, as between two autovacuum
runs on a busy server; only `ANALYZE` runs again.

`measure` runs, --repeats times after one warm-up, `pgq stats --format json` exact and
`--estimate` as processes (wall time, Python start-up included), and `thresholds.collect`
on an open connection (the SQL alone); prints the medians and, per state, the largest
error of an estimated cell against the exact count, how many estimated cells came out
above and below (a systematic bias shows as one sign everywhere) and how many fell outside
their stated bound (about 1 in 20 may). A number not flagged must equal the exact count.
Not part of the suite.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue
from pgq_cli.ops import thresholds as health

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
DATABASE = "pgq_est10m"
CHUNK = 1_000_000
STATES = ("ready", "leased", "expired", "delayed", "dead")

LOAD = """
INSERT INTO pgq.messages (queue, priority, state, vt, read_ct, enqueued_at, lease, payload)
SELECT CASE WHEN h.q < 16 THEN 'q0' WHEN h.q < 19 THEN 'q1' ELSE 'q2' END,
       CASE WHEN s.state = 'delayed'
            THEN 1 + floor(log(2, 1 + h.d::numeric))::int
            WHEN h.q = 19 AND h.p = 9 AND h.d %% 50 <> 0 THEN 9
            ELSE 1 + h.p END,
       s.state,
       CASE s.state
           WHEN 'leased' THEN now() + CASE WHEN h.d %% 2 = 0 THEN interval '1 hour'
                                           ELSE interval '-1 minute' END
           WHEN 'delayed' THEN now() + interval '1 day'
           ELSE now() - interval '1 hour'
       END,
       CASE WHEN s.state = 'ready' THEN 0 ELSE 1 END,
       now() - make_interval(secs => (%(rows)s - g) / 1000.0),
       CASE WHEN s.state = 'leased' THEN gen_random_uuid() END,
       jsonb_build_object('n', g, 'pad', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
-- Queue, priority and the delayed spread from hashes of g: independent of the state.
LATERAL (SELECT abs(hashint8(g)) %% 20 AS q,
                abs(hashint8(g + 1000000007)) %% 10 AS p,
                abs(hashint8(g + 2000000014)) %% 1023 AS d) AS h,
LATERAL (SELECT CASE
    WHEN g %% 345 = 0 THEN 'delayed'
    WHEN g %% 100 = 1 THEN 'leased'
    WHEN g %% 100 = 2 THEN 'dead'
    ELSE 'ready'
END AS state) AS s
"""


def _admin(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True)


def _bench_dsn(dsn: str) -> str:
    info = psycopg.conninfo.conninfo_to_dict(dsn)
    info["dbname"] = DATABASE
    return psycopg.conninfo.make_conninfo(**info)


def build(dsn: str, rows: int) -> None:
    with _admin(dsn) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DATABASE)))
    started = time.perf_counter()
    with _admin(_bench_dsn(dsn)) as conn:
        migrate.migrate(conn, "pgq")
        for first in range(1, rows + 1, CHUNK):
            last = min(first + CHUNK - 1, rows)
            conn.execute(LOAD, {"first": first, "last": last, "rows": rows})
            print(f"loaded {last:,} rows ({time.perf_counter() - started:.0f} s)", flush=True)
        conn.execute("VACUUM ANALYZE pgq.messages")
        print(f"vacuumed ({time.perf_counter() - started:.0f} s)", flush=True)
        # The head of the line acked: the oldest 5% of rows, deleted, not vacuumed.
        conn.execute("DELETE FROM pgq.messages WHERE msg_id <= %s", (rows // 20,))
        conn.execute("ANALYZE pgq.messages")
        print(f"built in {time.perf_counter() - started:.0f} s", flush=True)


def _run(dsn: str, estimate: bool) -> tuple[float, list[dict[str, Any]]]:
    pgq = str(Path(sys.executable).parent / "pgq")
    cmd = [pgq, "stats", "--format", "json", *(["--estimate"] if estimate else [])]
    started = time.perf_counter()
    done = subprocess.run(cmd, env={**os.environ, "PGQ_DSN": _bench_dsn(dsn)},
                          capture_output=True, text=True, check=True)
    elapsed = (time.perf_counter() - started) * 1000
    return elapsed, [json.loads(line) for line in done.stdout.splitlines()]


def _collect_ms(dsn: str, estimate: bool) -> float:
    with psycopg.connect(_bench_dsn(dsn), autocommit=True) as conn:
        q = Queue(conn, "pgq")
        started = time.perf_counter()
        health.collect(q, estimate=estimate)
        return (time.perf_counter() - started) * 1000


def measure(dsn: str, repeats: int) -> None:
    cli: dict[bool, list[float]] = {False: [], True: []}
    collect: dict[bool, list[float]] = {False: [], True: []}
    rows: dict[bool, list[dict[str, Any]]] = {}
    for round_ in range(repeats + 1):
        for estimate in ((False, True) if round_ % 2 else (True, False)):
            ms, rows[estimate] = _run(dsn, estimate)
            c_ms = _collect_ms(dsn, estimate)
            if round_:
                cli[estimate].append(ms)
                collect[estimate].append(c_ms)
    for estimate in (False, True):
        name = "--estimate" if estimate else "exact"
        print(f"{name:<11} cli {statistics.median(cli[estimate]):8.0f} ms   "
              f"collect {statistics.median(collect[estimate]):8.1f} ms")
    exact = {(r["queue"], r["priority"]): r for r in rows[False]}
    print(f"{'state':<8} {'cells':>5} {'estimated':>9} {'exact total':>12} "
          f"{'max abs err':>11} {'max rel err':>11} {'above':>5} {'below':>5} "
          f"{'outside bound':>13}")
    for state in STATES:
        cells = est_cells = above = below = worst_abs = outside = 0
        worst_rel = 0.0
        total = 0
        for r in rows[True]:
            truth = exact.get((r["queue"], r["priority"]), {}).get(state, 0)
            got = r[state]
            total += truth
            cells += 1
            bound = r["estimate_bounds"].get(state)
            if bound is None:
                assert got == truth, (r, truth)  # not flagged: exact
                continue
            est_cells += 1
            above += got > truth
            below += got < truth
            outside += abs(got - truth) > bound
            worst_abs = max(worst_abs, abs(got - truth))
            if truth:
                worst_rel = max(worst_rel, abs(got - truth) / truth)
        print(f"{state:<8} {cells:>5} {est_cells:>9} {total:>12,} {worst_abs:>11,} "
              f"{worst_rel:>10.2%} {above:>5} {below:>5} {outside:>13}")


def drop(dsn: str) -> None:
    with _admin(dsn) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(DATABASE)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("action", choices=("build", "measure", "drop"))
    parser.add_argument("--dsn", default=os.environ.get("PGQ_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    if args.action == "build":
        build(args.dsn, args.rows)
    elif args.action == "measure":
        measure(args.dsn, args.repeats)
    else:
        drop(args.dsn)


if __name__ == "__main__":
    main()
