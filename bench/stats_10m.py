"""`pgq stats` exact vs `--estimate` (plain and Prometheus formats) at 10k and 10M messages.

    .venv/bin/python bench/stats_10m.py                       # local server, 10k and 10M
    .venv/bin/python bench/stats_10m.py --dsn "$DSN" --rows 10000,5000000 --repeats 5

For each size: a scratch schema `pgq_bench_stats_<random>` is migrated with the real
migrator and filled with one set-based `INSERT ... SELECT ... generate_series` per million
rows (4 queues, priorities 1..10; 97% ready, 1% leased, 1% expired, 0.5% delayed, 0.5%
dead; a 50-byte payload), then ANALYZEd. Then, in each of --repeats rounds (the order of
the variants rotated per round, after one untimed warm-up round), every variant runs as
the installed CLI would be run by cron:

    PGQ_DSN=$DSN pgq stats --schema <scratch> --format plain
    PGQ_DSN=$DSN pgq stats --schema <scratch> --format plain --estimate
    PGQ_DSN=$DSN pgq stats --schema <scratch> --format prometheus
    PGQ_DSN=$DSN pgq stats --schema <scratch> --format prometheus --estimate

timed on the wall clock around the process ("cli", Python start-up included), and the
collection alone in this process ("collect": `health.collect`, what the SQL costs, on an
open connection). Medians are printed with the ratio exact / estimate, and how far the
estimated ready total is from the exact one. The schema is dropped after each size, also
when the run fails. Not part of the test suite.
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
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import checks, migrate
from pgq_cli.core.errors import PgqError
from pgq_cli.core.queue import Queue
from pgq_cli.ops import thresholds as health

DEFAULT_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
CHUNK = 1_000_000
VARIANTS: dict[str, list[str]] = {
    "plain exact": ["--format", "plain"],
    "plain --estimate": ["--format", "plain", "--estimate"],
    "prometheus exact": ["--format", "prometheus"],
    "prometheus --estimate": ["--format", "prometheus", "--estimate"],
}

# One row per g: queue q0..q3, priority 1..10, and the state mix of a busy queue: of every
# 200 rows 4 leased (half live, half expired), 1 delayed, 1 dead, 194 ready.
LOAD = """
INSERT INTO {messages} (queue, priority, state, vt, read_ct, enqueued_at, lease, payload)
SELECT 'q' || (g %% 4),
       1 + (g / 4) %% 10,
       s.state,
       CASE s.state
           WHEN 'leased' THEN now() + CASE WHEN g %% 2 = 0 THEN interval '1 hour'
                                           ELSE interval '-1 minute' END
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


@dataclass
class Timing:
    cli_ms: list[float] = field(default_factory=list)
    collect_ms: list[float] = field(default_factory=list)
    # Set when a run failed (e.g. the 30 s statement timeout): what happened, and after how
    # long. A failed variant is not run again in later rounds.
    failed: str | None = None


def _command(schema: str, variant: list[str]) -> list[str]:
    pgq = str(Path(sys.executable).parent / "pgq")
    return [pgq, "stats", "--schema", schema, *variant]


def _run_cli(schema: str, variant: list[str], dsn: str) -> tuple[float, str | None]:
    """Wall milliseconds, and why it failed (None: exit 0)."""
    env = {**os.environ, "PGQ_DSN": dsn}
    started = time.perf_counter()
    done = subprocess.run(
        _command(schema, variant), env=env, stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE, text=True, check=False,
    )
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        return elapsed, f"exit {done.returncode}: {done.stderr.strip()[:120]}"
    return elapsed, None


def _collect(q: Queue, estimate: bool) -> tuple[float, health.Snapshot | None, str | None]:
    started = time.perf_counter()
    try:
        snapshot = health.collect(q, estimate=estimate)
    except PgqError as exc:
        return (time.perf_counter() - started) * 1000, None, exc.message[:120]
    return (time.perf_counter() - started) * 1000, snapshot, None


def _load(conn: psycopg.Connection[Any], schema: str, rows: int) -> float:
    migrate.migrate(conn, schema)
    statement = sql.SQL(LOAD).format(messages=sql.Identifier(schema, "messages"))
    started = time.perf_counter()
    for first in range(1, rows + 1, CHUNK):
        last = min(first + CHUNK - 1, rows)
        conn.execute(statement, {"first": first, "last": last, "rows": rows})
        print(f"  loaded {last:,} of {rows:,} rows ({time.perf_counter() - started:.0f} s)",
              file=sys.stderr)
    conn.execute(sql.SQL("ANALYZE {}").format(sql.Identifier(schema, "messages")))
    return time.perf_counter() - started


def _drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _ready_total(snapshot: health.Snapshot) -> int:
    return sum(r.ready for r in snapshot.stats.rows)


def measure(dsn: str, rows: int, repeats: int) -> dict[str, Any]:
    schema = f"pgq_bench_stats_{uuid.uuid4().hex[:8]}"
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            print(f"{rows:,} rows into {schema}", file=sys.stderr)
            load_s = _load(conn, schema, rows)
            size = conn.execute(
                "SELECT pg_size_pretty(pg_total_relation_size(%s::regclass))",
                (f"{schema}.messages",),
            ).fetchone()
            # The same statement timeout as the CLI's, so that both fail alike.
            conn.execute(
                "SELECT set_config('statement_timeout', %s, false)",
                (f"{checks.DEFAULT_STATEMENT_TIMEOUT_MS}ms",),
            )
            q = Queue(conn, schema)
            timings = {name: Timing() for name in VARIANTS}
            names = list(VARIANTS)
            snapshots: dict[bool, health.Snapshot] = {}
            for round_ in range(repeats + 1):  # round 0: warm-up, untimed
                order = names[round_ % len(names):] + names[:round_ % len(names)]
                for name in order:
                    t = timings[name]
                    if t.failed:
                        continue
                    estimate = "--estimate" in VARIANTS[name]
                    cli_ms, cli_failed = _run_cli(schema, VARIANTS[name], dsn)
                    collect_ms, snapshot, collect_failed = _collect(q, estimate)
                    if snapshot is not None:
                        snapshots[estimate] = snapshot
                    if cli_failed or collect_failed:
                        t.failed = (
                            f"cli {cli_ms / 1000:.1f} s {cli_failed or 'ok'}; "
                            f"collect {collect_ms / 1000:.1f} s {collect_failed or 'ok'}"
                        )
                    elif round_:
                        t.cli_ms.append(cli_ms)
                        t.collect_ms.append(collect_ms)
                print(f"  round {round_}/{repeats} done", file=sys.stderr)
        exact = _ready_total(snapshots[False]) if False in snapshots else None
        estimated = _ready_total(snapshots[True]) if True in snapshots else None
        return {
            "rows": rows,
            "schema": schema,
            "load_s": load_s,
            "size": size[0] if size else "?",
            "timings": timings,
            "ready_exact": exact,
            "ready_estimated": estimated,
        }
    finally:
        _drop(dsn, schema)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _revision() -> str:
    """The commit measured, and which of the files that decide the result were modified."""
    root = Path(__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, check=True,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "pgq_cli/ops/thresholds.py",
             "pgq_cli/ops/queries.py", "pgq_cli/ops/prometheus.py", "pgq_cli/core/queue.py",
             "pgq_cli/core/queries.py"],
            cwd=root, check=True, capture_output=True, text=True,
        ).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    changed = [line[3:] for line in dirty if line.strip()]
    return f"pgq at {head}" + (f" + uncommitted {', '.join(changed)}" if changed else "")


def report(results: list[dict[str, Any]], argv: list[str], server: str, repeats: int) -> str:
    lines = [
        f"pgq stats latency, exact vs --estimate; {server}; {_revision()}; "
        f"{datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}",
        "command: " + shlex.join([".venv/bin/python", "bench/stats_10m.py", *argv]),
        f"medians of {repeats} rounds (variants rotated per round, one warm-up round first)",
        "cli: wall time of `PGQ_DSN=$DSN pgq stats --schema <scratch> <variant>` "
        "(Python start-up included);",
        "collect: health.collect() on an open connection (the SQL alone), same "
        f"statement_timeout as the CLI ({checks.DEFAULT_STATEMENT_TIMEOUT_MS / 1000:g} s)",
        "",
    ]
    for r in results:
        lines.append(
            f"{r['rows']:,} rows: loaded in {r['load_s']:.0f} s, table + indexes {r['size']}"
        )
    lines.append("")
    header = f"{'rows':>12}  {'variant':<22} {'cli ms':>10} {'collect ms':>11}"
    lines += [header, "-" * len(header)]
    for r in results:
        for name, t in r["timings"].items():
            if t.failed:
                lines.append(f"{r['rows']:>12,}  {name:<22} FAILED ({t.failed})")
                continue
            lines.append(
                f"{r['rows']:>12,}  {name:<22} {_median(t.cli_ms):>10.1f} "
                f"{_median(t.collect_ms):>11.2f}"
            )
    lines.append("")
    lines.append("exact / estimate, median (above 1: the estimate is faster):")
    for r in results:
        t = r["timings"]
        for fmt in ("plain", "prometheus"):
            exact, est = t[f"{fmt} exact"], t[f"{fmt} --estimate"]
            if exact.failed or est.failed:
                lines.append(f"{r['rows']:>12,}  {fmt:<10}  n/a (a run failed)")
                continue
            cli = _median(exact.cli_ms) / _median(est.cli_ms)
            collect = _median(exact.collect_ms) / _median(est.collect_ms)
            lines.append(f"{r['rows']:>12,}  {fmt:<10}  cli {cli:6.2f}x   collect {collect:8.2f}x")
    lines.append("")
    lines.append("ready total, exact vs estimated:")
    for r in results:
        exact, est = r["ready_exact"], r["ready_estimated"]
        if exact is None or est is None:
            lines.append(f"{r['rows']:>12,}  n/a (a run failed)")
            continue
        error = (est - exact) / exact * 100 if exact else 0.0
        lines.append(f"{r['rows']:>12,}  exact {exact:,}  estimated {est:,}  ({error:+.2f}%)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_BENCH_DSN", DEFAULT_DSN))
    parser.add_argument("--rows", default="10000,10000000",
                        help="comma-separated table sizes (default 10000,10000000)")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    sizes = [int(s.replace("_", "")) for s in args.rows.split(",") if s.strip()]
    if not sizes or min(sizes) < 1 or args.repeats < 1:
        parser.error("--rows needs sizes of 1 or more, --repeats 1 or more")
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        row = conn.execute("SELECT current_setting('server_version')").fetchone()
    server = f"PostgreSQL {row[0] if row else '?'}"
    results = [measure(args.dsn, rows, args.repeats) for rows in sizes]
    print(report(results, sys.argv[1:], server, args.repeats))


if __name__ == "__main__":
    main()
