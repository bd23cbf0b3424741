"""Claim+ack through PgBouncer (transaction pooling) beside a direct connection, same run.

    .venv/bin/python bench/pooler.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Needs the `pgbouncer` binary (Debian package `pgbouncer`); it starts one in front of
`--dsn` itself (tests/helpers_pgbouncer.py: `pool_mode = transaction`, `--pool-size`
server connections), as the tests do, and stops it at the end.

For each (consumers, qty) in {1, 4} x {1, 50}: enqueue N messages of mixed priority
(untimed), then the consumers drain them with `Queue.claim` + `Queue.ack`, one thread and
one `connect.connect` connection each; msgs/s is N over the wall time of the drain.
Three ways of connecting take turns within each round (order rotated per round) and the
median of the rounds is reported:

- direct: a server session (prepared statements, settings set once, as without a pooler);
- direct, pooler mode: the same connection with `PGQ_POOLER=transaction` behaviour (no
  prepared statements, settings sent with every statement): what pgq's pooler mode costs;
- pgbouncer: through the pooler, detected.

Everything lives in a scratch schema dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import sql

from pgq_cli.core import connect, migrate, pooler
from pgq_cli.core.queue import Queue

# The tests' PgBouncer fixture, so the bench runs the same pooler set-up they prove.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from helpers_pgbouncer import PgBouncer

QUEUE = "pooler"
VT_S = 300.0


def _drain(target: connect.Target, schema: str, consumers: int, qty: int) -> float:
    """Claim+ack until empty on `consumers` threads; wall seconds."""
    barrier = threading.Barrier(consumers + 1)
    errors: list[BaseException] = []

    def consume() -> None:
        try:
            with connect.connect(target, "pgq bench pooler") as conn:
                queue = Queue(conn, schema, pool_mode=target.pool_mode)
                barrier.wait()
                while found := queue.claim(queue=QUEUE, qty=qty, vt=VT_S):
                    queue.ack([m.msg_id for m in found])
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=consume) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def _fill(dsn: str, schema: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        queue = Queue(conn, schema, pool_mode="none")
        for priority in range(1, 11):
            payloads = [json.dumps({"n": i}) for i in range(priority - 1, n, 10)]
            queue.send_many(payloads, queue=QUEUE, priority=priority)
        conn.execute(sql.SQL("VACUUM ANALYZE {}").format(sql.Identifier(schema, "messages")))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True, help="an admin DSN of the server")
    parser.add_argument("--messages", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool-size", type=int, default=2, help="PgBouncer server connections")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    schema = f"pgq_bench_pooler_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        migrate.migrate(conn, schema)
    results: list[dict[str, object]] = []
    try:
        with PgBouncer(args.dsn, pool_size=args.pool_size) as bouncer:
            ways = {
                "direct": connect.Target(args.dsn, "--dsn", pool_mode="none"),
                "direct, pooler mode": connect.Target(
                    args.dsn, "--dsn", pool_mode=pooler.TRANSACTION
                ),
                "pgbouncer": connect.Target(bouncer.dsn(args.dsn), "--dsn"),
            }
            for consumers in (1, 4):
                for qty in (1, 50):
                    rates: dict[str, list[float]] = {name: [] for name in ways}
                    for round_ in range(args.rounds):
                        names = list(ways)
                        names = names[round_ % len(names):] + names[: round_ % len(names)]
                        for name in names:
                            _fill(args.dsn, schema, args.messages)
                            seconds = _drain(ways[name], schema, consumers, qty)
                            rates[name].append(args.messages / seconds)
                    row: dict[str, object] = {"consumers": consumers, "qty": qty}
                    row.update({name: round(statistics.median(r)) for name, r in rates.items()})
                    results.append(row)
                    if not args.json:
                        print(
                            f"consumers={consumers} qty={qty}: "
                            + ", ".join(f"{k} {row[k]:,} msg/s" for k in ways)
                            + f" (pgbouncer/direct {row['pgbouncer'] / row['direct']:.2f}x)",  # type: ignore[operator]
                            flush=True,
                        )
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    if args.json:
        print(json.dumps({"messages": args.messages, "rounds": args.rounds,
                          "pool_size": args.pool_size, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
