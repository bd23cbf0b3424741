"""What `pgq stats --by-key` and the per-key Prometheus series cost on a large fair queue.

    .venv/bin/python bench/stats_by_key.py                        # 1M and 10M rows
    .venv/bin/python bench/stats_by_key.py --dsn "$DSN" --rows 1000000 --keys 1000 --repeats 3

For each size: a scratch schema `pgq_bench_keys_<random>` is migrated with the real
migrator and filled with one set-based `INSERT ... SELECT ... generate_series` per million
rows into one queue, `jobs`: a tenth of the rows under one hot key, the rest spread over
--keys keys, one row in a thousand without a key; priorities 1..10; of every 200 rows 4
leased, 1 delayed, 1 dead, 194 ready. Then the queue is made fair (`Queue.configure_fairness`,
which registers its keys), and the table VACUUM ANALYZEd, as autovacuum would on a real
server (this machine's test server runs with autovacuum off).

In each of --repeats rounds (variants rotated per round, after one untimed warm-up round)
every variant runs as cron would run the installed CLI, timed on the wall clock around the
process (Python start-up included):

    PGQ_DSN=$DSN pgq stats --schema <scratch> -q jobs --format plain  # no keys
    PGQ_DSN=$DSN pgq stats --schema <scratch> -q jobs --by-key --top 20 --format plain
    PGQ_DSN=$DSN pgq stats --schema <scratch> --format prometheus  # + per-key series

and the library calls alone on an open connection (`Queue.depth_by_key`,
`Queue.key_breakdown`: what the SQL costs). Medians and the spread are printed. The schema
is dropped after each size, also when the run fails. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
QUEUE = "jobs"
CHUNK = 1_000_000
CLI_VARIANTS: dict[str, list[str]] = {
    "stats (no keys)": ["-q", QUEUE, "--format", "plain"],
    "stats --by-key": ["-q", QUEUE, "--by-key", "--top", "20", "--format", "plain"],
    "stats prometheus": ["--format", "prometheus"],
}

# One row per g. Every tenth row belongs to the hot key; one in a thousand has no key.
LOAD = """
INSERT INTO {messages} (queue, key, priority, state, vt, read_ct, enqueued_at, lease, payload)
SELECT %(queue)s,
       CASE WHEN g %% 1000 = 7 THEN NULL
            WHEN g %% 10 = 3 THEN 'tenant-hot'
            ELSE 'tenant-' || (g %% %(keys)s) END,
       1 + (g / 7) %% 10,
       s.state,
       CASE s.state
           WHEN 'leased' THEN now() + interval '1 hour'
           WHEN 'delayed' THEN now() + interval '1 day'
           ELSE now() - interval '1 hour'
       END,
       CASE WHEN s.state = 'ready' THEN 0 ELSE 1 END,
       now() - make_interval(secs => (%(rows)s - g) / 1000.0),
       CASE WHEN s.state = 'leased' THEN gen_random_uuid() END,
       jsonb_build_object('n', g, 'pad', 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx')
FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g,
LATERAL (SELECT CASE
    WHEN g %% 200 < 4 THEN 'leased'
    WHEN g %% 200 = 4 THEN 'delayed'
    WHEN g %% 200 = 5 THEN 'dead'
    ELSE 'ready'
END AS state) AS s
"""


def _load(conn: psycopg.Connection[Any], schema: str, rows: int, keys: int) -> float:
    migrate.migrate(conn, schema)
    statement = sql.SQL(LOAD).format(messages=sql.Identifier(schema, "messages"))
    started = time.perf_counter()
    for first in range(1, rows + 1, CHUNK):
        last = min(first + CHUNK - 1, rows)
        conn.execute(
            statement,
            {"queue": QUEUE, "keys": keys, "first": first, "last": last, "rows": rows},
        )
        print(f"  loaded {last:,} of {rows:,} rows ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    Queue(conn, schema).configure_fairness(QUEUE, fair=True)
    conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, "messages")))
    return time.perf_counter() - started


def _run_cli(schema: str, variant: list[str], dsn: str) -> float:
    pgq = str(Path(sys.executable).parent / "pgq")
    started = time.perf_counter()
    done = subprocess.run(
        [pgq, "stats", "--schema", schema, *variant], env={**os.environ, "PGQ_DSN": dsn},
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, check=False,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        raise SystemExit(f"pgq stats {shlex.join(variant)}: exit {done.returncode}: "
                         f"{done.stderr.strip()[:200]}")
    return elapsed


def _timed(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return (time.perf_counter() - started) * 1000


def measure(dsn: str, rows: int, keys: int, repeats: int) -> dict[str, Any]:
    schema = f"pgq_bench_keys_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            print(f"{rows:,} rows over {keys:,} keys into {schema}", file=sys.stderr)
            load_s = _load(conn, schema, rows, keys)
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))",
                (f"{schema}.messages",),
            ).fetchone()
            q = Queue(conn, schema)
            library: dict[str, Callable[[], object]] = {
                "Queue.depth_by_key": lambda: q.depth_by_key(QUEUE, top=20),
                "Queue.key_breakdown": lambda: q.key_breakdown(),
            }
            timings: dict[str, list[float]] = {n: [] for n in [*CLI_VARIANTS, *library]}
            names = list(timings)
            for round_ in range(repeats + 1):  # round 0: warm-up, untimed
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for name in order:
                    ms = (_run_cli(schema, CLI_VARIANTS[name], dsn) if name in CLI_VARIANTS
                          else _timed(library[name]))
                    if round_:
                        timings[name].append(ms)
                print(f"  round {round_}/{repeats} done", file=sys.stderr)
        return {"rows": rows, "keys": keys, "load_s": load_s,
                "size": size[0] if size else "?", "timings": timings}
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(schema)))


def report(results: list[dict[str, Any]], argv: list[str], server: str, repeats: int) -> str:
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                          text=True, check=False, cwd=Path(__file__).parent).stdout.strip()
    lines = [
        f"pgq stats per key on one fair queue; {server}; pgq at {head or '?'}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "command: " + shlex.join([".venv/bin/python", "bench/stats_by_key.py", *argv]),
        f"medians of {repeats} rounds (min-max), variants rotated, one warm-up round first; "
        "CLI rows include Python start-up",
        "",
    ]
    header = f"{'rows':>12} {'keys':>7}  {'variant':<22} {'median ms':>10} {'min-max ms':>17}"
    lines += [header, "-" * len(header)]
    for r in results:
        for name, ms in r["timings"].items():
            spread = f"{min(ms):.0f}-{max(ms):.0f}"
            lines.append(f"{r['rows']:>12,} {r['keys']:>7,}  {name:<22} "
                         f"{statistics.median(ms):>10.0f} {spread:>17}")
    lines.append("")
    for r in results:
        lines.append(f"{r['rows']:,} rows: loaded, made fair and vacuumed in "
                     f"{r['load_s']:.0f} s; table + indexes {r['size']}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--rows", default="1000000,10000000",
                        help="comma-separated table sizes (default 1000000,10000000)")
    parser.add_argument("--keys", type=int, default=10_000,
                        help="keys besides the hot one (default 10000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.repeats < 1 or args.keys < 1:
        parser.error("--rows, --keys and --repeats need values of 1 or more")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    server = f"PostgreSQL {row[0] if row else '?'}"
    results = [measure(args.dsn, rows, args.keys, args.repeats) for rows in sizes]
    print(report(results, sys.argv[1:], server, args.repeats))


if __name__ == "__main__":
    main()
