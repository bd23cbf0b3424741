"""The fused consumer loop (`Queue.work`) beside the seed design's two-statement loop.

    .venv/bin/python bench/work_loop.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

For each shape (consumers x qty; default 1 x 1 and 1 x 10): fill the queue with N messages
of priorities 1..10 (untimed), VACUUM ANALYZE, then drain it; msgs/s is N over the wall
time of the drain. The systems take turns within each round, the order rotated per round,
and the median of the rounds is reported with the spread (min-max), so a noisy neighbour
hits all of them.

- seed: the design pgq grew from (no state column, a `(queue_name, priority DESC, msg_id)`
  index, `vt <= now()` as a row filter, the CTE claim FOR UPDATE SKIP LOCKED, a DELETE
  ack; the same SQL `pgq bench --compare-naive` runs), as a bare psycopg loop with tuple
  rows: claim, then ack, two statements and two commits per batch.
- pgq claim+ack: the library's `Queue.claim` then `Queue.ack`.
- pgq work: `Queue.work` with a handler that does nothing: the ack rides in the statement
  that claims the next batch, one statement and one commit per batch.

Everything lives in a scratch schema dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import uuid
from typing import Any

import psycopg

# The same drain harness as peers.py (N threads released at once, wall time of the
# slowest); bench/ is on sys.path when this runs as `python bench/work_loop.py`.
from peers import _drain_threads
from psycopg import sql

from pgq_cli.bench import schema as bench_sql
from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

QUEUE = "work_loop"
VT_S = 300.0


class Scratch:
    """One scratch schema holding pgq's tables and the seed design's table."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"pgq_bench_work_{uuid.uuid4().hex[:8]}"
        self.messages = sql.Identifier(self.schema, "messages")
        self.naive = sql.Identifier(self.schema, "seed_messages")
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.migrate(conn, self.schema)
            conn.execute(sql.SQL(bench_sql.CREATE_NAIVE).format(naive=self.naive))
            conn.execute(sql.SQL(bench_sql.CREATE_NAIVE_INDEX).format(naive=self.naive))

    def naive_sql(self, template: Any) -> sql.Composed:
        return sql.SQL(template).format(naive=self.naive)

    def vacuum(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(self.messages))
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(self.naive))

    def drop(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema)))


def _payloads(n: int) -> list[tuple[int, str]]:
    """(priority, payload): priorities 1..10 interleaved."""
    return [(1 + i % 10, json.dumps({"n": i})) for i in range(n)]


class Seed:
    name = "seed"

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch

    def fill(self, n: int) -> None:
        with psycopg.connect(self.scratch.dsn, autocommit=True) as conn, conn.cursor() as cur:
            copy_sql = sql.SQL("COPY {} (queue_name, priority, message) FROM STDIN")
            with cur.copy(copy_sql.format(self.scratch.naive)) as copy:
                for priority, payload in _payloads(n):
                    copy.write_row((QUEUE, priority, payload))

    def consume(self, qty: int) -> int:
        claim = self.scratch.naive_sql(bench_sql.NAIVE_CLAIM)
        ack = self.scratch.naive_sql(bench_sql.NAIVE_ACK)
        params = {"queue": QUEUE, "qty": qty, "vt": VT_S}
        done = 0
        with psycopg.connect(self.scratch.dsn, autocommit=True) as conn, conn.cursor() as cur:
            while True:
                ids = [row[0] for row in cur.execute(claim, params).fetchall()]
                if not ids:
                    return done
                cur.execute(ack, {"ids": ids})
                done += len(ids)


class PgqClaimAck:
    name = "pgq claim+ack"

    def __init__(self, scratch: Scratch) -> None:
        self.scratch = scratch

    def fill(self, n: int) -> None:
        by_priority: dict[int, list[str]] = {}
        for priority, payload in _payloads(n):
            by_priority.setdefault(priority, []).append(payload)
        with psycopg.connect(self.scratch.dsn, autocommit=True) as conn:
            q = Queue(conn, self.scratch.schema)
            for priority, payloads in by_priority.items():
                q.send_many(payloads, queue=QUEUE, priority=priority)

    def consume(self, qty: int) -> int:
        done = 0
        with psycopg.connect(self.scratch.dsn, autocommit=True) as conn:
            q = Queue(conn, self.scratch.schema)
            while found := q.claim(queue=QUEUE, qty=qty, vt=VT_S):
                q.ack([m.msg_id for m in found])
                done += len(found)
        return done


class PgqWork(PgqClaimAck):
    name = "pgq work"

    def consume(self, qty: int) -> int:
        with psycopg.connect(self.scratch.dsn, autocommit=True) as conn:
            q = Queue(conn, self.scratch.schema)
            return q.work(lambda message: None, queue=QUEUE, qty=qty, vt=VT_S, until_empty=True)


def _shape(text: str) -> tuple[int, int]:
    consumers, _, qty = text.partition("x")
    return int(consumers), int(qty)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""), help="server to use")
    parser.add_argument("--messages", type=int, default=5000, help="messages per drain")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median is reported)")
    parser.add_argument("--shapes", default="1x1,1x10",
                        help="consumers x qty, comma-separated (default 1x1,1x10)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or PGQ_DSN")
    scratch = Scratch(args.dsn)
    systems: list[Any] = [Seed(scratch), PgqClaimAck(scratch), PgqWork(scratch)]
    results: list[dict[str, Any]] = []
    try:
        for consumers, qty in (_shape(s) for s in args.shapes.split(",")):
            rates: dict[str, list[float]] = {s.name: [] for s in systems}
            for round_ in range(args.rounds):
                shift = round_ % len(systems)
                for system in systems[shift:] + systems[:shift]:
                    system.fill(args.messages)
                    scratch.vacuum()
                    seconds = _drain_threads(consumers, lambda s=system, n=qty: s.consume(n))
                    rate = args.messages / seconds
                    rates[system.name].append(rate)
                    print(f"consumers={consumers} qty={qty} round={round_} {system.name}: "
                          f"{rate:,.0f} msg/s", file=sys.stderr)
            median = {name: statistics.median(r) for name, r in rates.items()}
            results.append({
                "consumers": consumers,
                "qty": qty,
                "msgs_per_s": {k: round(v, 1) for k, v in median.items()},
                "spread": {k: [round(min(r)), round(max(r))] for k, r in rates.items()},
                "work_over_seed": round(median["pgq work"] / median["seed"], 3),
                "claim_ack_over_seed": round(median["pgq claim+ack"] / median["seed"], 3),
            })
    finally:
        scratch.drop()
    if args.json:
        print(json.dumps({"messages": args.messages, "rounds": args.rounds, "results": results}))
        return 0
    print(f"{'consumers':>9} {'qty':>4} {'seed':>16} {'pgq claim+ack':>16} {'pgq work':>16} "
          f"{'work/seed':>10} {'claim+ack/seed':>15}")
    for r in results:
        m, s = r["msgs_per_s"], r["spread"]
        cells = [f"{m[k]:,.0f} ({s[k][0]:,}-{s[k][1]:,})" for k in
                 ("seed", "pgq claim+ack", "pgq work")]
        print(f"{r['consumers']:>9} {r['qty']:>4} {cells[0]:>16} {cells[1]:>16} {cells[2]:>16} "
              f"{r['work_over_seed']:>10.2f} {r['claim_ack_over_seed']:>15.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
