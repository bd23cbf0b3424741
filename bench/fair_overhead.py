"""Ordinary (non-fair) queues after fair claiming landed: claim+ack and send beside the
build before it, in one run.

    python bench/fair_overhead.py --dsn "$DSN" --before 32b1344 --rounds 7 --messages 3000

The build before is exported with `git archive REV pgq_cli sql` into a temporary
directory; each side runs in its own subprocess (PYTHONPATH pointing at its package) on a
scratch schema of its own, migrated by its own migrator. Rounds alternate before/after,
so load on the (shared) machine hits both alike. Each round: one producer sends
--messages messages with `Queue.send` (one INSERT each, timed), then one consumer claims
and acks them one at a time with `Queue.claim`/`Queue.ack` (timed). Reported: the median
msg/s of each side and after/before; and, steadier on a loaded machine, the median (and
min-max) of the per-round ratios, each round's after over the before run next to it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import psycopg
from psycopg import sql

REPO = Path(__file__).resolve().parents[1]

WORKER = r"""
import sys, time, psycopg
from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue
dsn, schema, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
with psycopg.connect(dsn, autocommit=True) as conn:
    migrate.migrate(conn, schema)
    q = Queue(conn, schema)
    started = time.perf_counter()
    for i in range(count):
        q.send('{"n": %d}' % i, queue="hot")
    send_s = time.perf_counter() - started
    conn.execute(f"VACUUM (ANALYZE) {schema}.messages")
    done = 0
    started = time.perf_counter()
    while done < count:
        found = q.claim(queue="hot")
        q.ack([m.msg_id for m in found])
        done += len(found)
    claim_s = time.perf_counter() - started
print(count / send_s, count / claim_s)
"""


def export_before(rev: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", rev, "pgq_cli", "sql"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def one_round(package_root: Path, dsn: str, schema: str, messages: int) -> tuple[float, float]:
    env = {**os.environ, "PYTHONPATH": str(package_root)}
    out = subprocess.run(
        [sys.executable, "-c", WORKER, dsn, schema, str(messages)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        cwd=package_root,
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--before", default="32b1344", help="git revision of the build before")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    schemas = {"before": "pgq_bench_fair_before", "after": "pgq_bench_fair_after"}
    results: dict[str, list[tuple[float, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory() as tmp:
        roots = {"before": export_before(args.before, Path(tmp)), "after": REPO}
        try:
            for n in range(args.rounds):
                order = ("before", "after") if n % 2 == 0 else ("after", "before")
                for side in order:
                    results[side].append(
                        one_round(roots[side], args.dsn, schemas[side], args.messages)
                    )
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                for schema in schemas.values():
                    conn.execute(
                        sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
                    )
    print(f"rounds {args.rounds}, {args.messages} messages each, before = {args.before}")
    for index, what in ((0, "send (one INSERT each)"), (1, "claim+ack (one at a time)")):
        before = statistics.median(r[index] for r in results["before"])
        after = statistics.median(r[index] for r in results["after"])
        print(
            f"{what:28s} before {before:8.0f} msg/s   after {after:8.0f} msg/s   "
            f"after/before {after / before:.3f}"
        )
        pairs = zip(results["after"], results["before"], strict=True)
        paired = [after_round[index] / before_round[index] for after_round, before_round in pairs]
        print(
            f"{'':28s} per-round after/before: median {statistics.median(paired):.3f} "
            f"[{min(paired):.3f}-{max(paired):.3f}]"
        )
        for side in ("before", "after"):
            print(f"    {side:6s} rounds: " + ", ".join(f"{r[index]:.0f}" for r in results[side]))


if __name__ == "__main__":
    main()
