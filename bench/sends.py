"""Sends per second on one server: one-row `Queue.send` and batched `Queue.send_many` (COPY).

    .venv/bin/python bench/sends.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

For 1 and 4 producers (one thread and connection each): N single sends (one autocommit
INSERT, one commit each), then N messages in `send_many` batches of `--batch` (one
transaction and one COPY per batch). msgs/s is N over the wall time; the median of
`--rounds` rounds is reported. `pgq bench` measures the claim side; docs/scale-out.md
puts the two together. Everything lives in a scratch schema dropped at the end.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable

import psycopg
from psycopg import sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue


def _timed(producers: int, work: Callable[[Queue], None], dsn: str, schema: str) -> float:
    barrier = threading.Barrier(producers + 1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            with psycopg.connect(dsn, autocommit=True) as conn:
                queue = Queue(conn, schema)
                barrier.wait()
                work(queue)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=run) for _ in range(producers)]
    for thread in threads:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    schema = f"pgq_bench_sends_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        migrate.migrate(conn, schema)
    payload = json.dumps({"job": "x" * 100})
    try:
        for producers in (1, 4):
            share = args.messages // producers

            def single(queue: Queue, share: int = share) -> None:
                for _ in range(share):
                    queue.send(payload)

            def batched(queue: Queue, share: int = share) -> None:
                for start in range(0, share, args.batch):
                    queue.send_many([payload] * min(args.batch, share - start))

            for name, work in (("send", single), (f"send_many({args.batch})", batched)):
                rates = [
                    share * producers / _timed(producers, work, args.dsn, schema)
                    for _ in range(args.rounds)
                ]
                print(f"producers={producers} {name}: {statistics.median(rates):,.0f} msg/s "
                      f"(rounds: {', '.join(f'{r:,.0f}' for r in rates)})", flush=True)
                with psycopg.connect(args.dsn, autocommit=True) as conn:
                    conn.execute(sql.SQL("TRUNCATE {}").format(
                        sql.Identifier(schema, "messages")))
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
