"""pgq beside PgQueuer and a raw-SQL ceiling: the same claim+ack workload, same server, same run.

    .venv/bin/pip install -e '.[bench]'
    .venv/bin/python bench/peers.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

For each (consumers, qty) in {1, 4} x {1, 50}: enqueue N messages of mixed priority
(untimed), then the consumers claim and ack until the queue is drained; msgs/s is N over
the wall time of the drain. The three systems take turns within each round (order rotated
per round) and the median of the rounds is reported, so a noisy neighbour hits all three.

- pgq: the library API, `Queue.claim` + `Queue.ack`, one thread and connection per consumer.
- PgQueuer: its own `Queries.dequeue` + `Queries.log_jobs(..., "successful")` (its claim
  and its ack, which deletes the job and writes its log row), one asyncio task and
  connection per consumer, as PgQueuer runs. No handler, no QueueManager poll loop.
- ceiling: pgq's own claim statements (return-due + claim, pipelined) and the ack DELETE,
  sent from a bare psycopg loop: tuple rows, no validation, no dataclasses. What pgq's
  SQL costs with no library around it.

Everything lives in scratch schemas that are dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate, queries
from pgq_cli.core.queue import RETURN_DUE_BATCH, Queue

QUEUE = "peers"
VT_S = 300.0


def _payloads(n: int) -> list[tuple[int, str]]:
    """(priority, payload): mixed priorities 1..10."""
    return [(1 + i % 10, json.dumps({"n": i})) for i in range(n)]


def _drain_threads(consumers: int, work: Callable[[], int]) -> float:
    """Run `work` (claim+ack until empty; returns messages done) on N threads; wall seconds."""
    barrier = threading.Barrier(consumers + 1)
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait()
            work()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    started = time.perf_counter()
    barrier.wait()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return time.perf_counter() - started


class Pgq:
    name = "pgq"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"pgq_bench_peers_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.migrate(conn, self.schema)

    def fill(self, n: int) -> None:
        by_priority: dict[int, list[str]] = {}
        for priority, payload in _payloads(n):
            by_priority.setdefault(priority, []).append(payload)
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            q = Queue(conn, self.schema)
            for priority, payloads in by_priority.items():
                q.send_many(payloads, queue=QUEUE, priority=priority)
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(
                sql.Identifier(self.schema, "messages")))

    def _consumer(self, qty: int) -> int:
        done = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            q = Queue(conn, self.schema)
            while found := q.claim(queue=QUEUE, qty=qty, vt=VT_S):
                q.ack([m.msg_id for m in found])
                done += len(found)
        return done

    def drain(self, consumers: int, qty: int) -> float:
        return _drain_threads(consumers, lambda: self._consumer(qty))

    def close(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema)))


class Ceiling(Pgq):
    """pgq's statements with no library: the most pgq's SQL can do from Python."""

    name = "ceiling"

    def _consumer(self, qty: int) -> int:
        def q(template: Any) -> sql.Composed:
            return sql.SQL(template).format(
                messages=sql.Identifier(self.schema, "messages"),
                queues=sql.Identifier(self.schema, "queues"),
            )

        return_due, claim, ack = q(queries.RETURN_DUE), q(queries.CLAIM), q(queries.ACK)
        params = {"queue": QUEUE, "qty": qty, "vt": VT_S, "min_priority": 1,
                  "max_priority": 10, "batch": max(qty, RETURN_DUE_BATCH)}
        done = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn, conn.cursor() as cur:
            while True:
                with conn.pipeline():
                    conn.execute(return_due, params)
                    cur.execute(claim, params)
                ids = [row[0] for row in cur.fetchall()]
                if not ids:
                    return done
                conn.execute(ack, {"ids": ids, "lease": None})
                done += len(ids)


class PgQueuer:
    name = "pgqueuer"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"pgq_bench_peers_pgqueuer_{uuid.uuid4().hex[:8]}"
        # PgQueuer reads where its objects live from the environment.
        os.environ["PGQUEUER_SCHEMA"] = self.schema
        asyncio.run(self._install())

    async def _queries(self, conn: psycopg.AsyncConnection[Any]) -> Any:
        from pgqueuer.adapters.persistence.queries import Queries

        return Queries.from_psycopg_connection(conn)

    async def _install(self) -> None:
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            await (await self._queries(conn)).install()

    def fill(self, n: int) -> None:
        async def fill() -> None:
            async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
                items = _payloads(n)
                await (await self._queries(conn)).enqueue(
                    [QUEUE] * n, [p.encode() for _, p in items], [pr for pr, _ in items]
                )
                await conn.execute(f'VACUUM ANALYZE "{self.schema}".pgqueuer')

        asyncio.run(fill())

    async def _consumer(self, qty: int) -> int:
        from pgqueuer.domain.types import QueueEntrypoint, QueueManagerId
        from pgqueuer.ports.repository import EntrypointExecutionParameter

        entrypoints = {QueueEntrypoint(QUEUE): EntrypointExecutionParameter(concurrency_limit=0)}
        manager = QueueManagerId(uuid.uuid4())
        done = 0
        async with await psycopg.AsyncConnection.connect(self.dsn, autocommit=True) as conn:
            queries_ = await self._queries(conn)
            while jobs := await queries_.dequeue(
                batch_size=qty,
                entrypoints=entrypoints,
                queue_manager_id=manager,
                global_concurrency_limit=None,
                heartbeat_timeout=timedelta(seconds=VT_S),
            ):
                await queries_.log_jobs([(job, "successful", None) for job in jobs])
                done += len(jobs)
        return done

    def drain(self, consumers: int, qty: int) -> float:
        async def drain() -> float:
            started = time.perf_counter()
            await asyncio.gather(*(self._consumer(qty) for _ in range(consumers)))
            return time.perf_counter() - started

        return asyncio.run(drain())

    def close(self) -> None:
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(self.schema)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""), help="server to use")
    parser.add_argument("--messages", type=int, default=5000, help="messages per drain")
    parser.add_argument("--rounds", type=int, default=3, help="rounds (median is reported)")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or PGQ_DSN")
    systems: list[Any] = [Pgq(args.dsn), PgQueuer(args.dsn), Ceiling(args.dsn)]
    results: list[dict[str, Any]] = []
    try:
        for consumers in (1, 4):
            for qty in (1, 50):
                rates: dict[str, list[float]] = {s.name: [] for s in systems}
                for round_ in range(args.rounds):
                    turn = systems[round_ % 3 :] + systems[: round_ % 3]
                    for system in turn:
                        system.fill(args.messages)
                        seconds = system.drain(consumers, qty)
                        rates[system.name].append(args.messages / seconds)
                        print(f"consumers={consumers} qty={qty} round={round_} "
                              f"{system.name}: {args.messages / seconds:,.0f} msg/s",
                              file=sys.stderr)
                median = {name: statistics.median(r) for name, r in rates.items()}
                results.append({
                    "consumers": consumers,
                    "qty": qty,
                    "msgs_per_s": {k: round(v, 1) for k, v in median.items()},
                    "pgq_over_pgqueuer": round(median["pgq"] / median["pgqueuer"], 3),
                    "pgq_over_ceiling": round(median["pgq"] / median["ceiling"], 3),
                })
    finally:
        for system in systems:
            system.close()
    if args.json:
        print(json.dumps({"messages": args.messages, "rounds": args.rounds, "results": results}))
        return 0
    print(f"{'consumers':>9} {'qty':>4} {'pgq':>10} {'pgqueuer':>10} {'ceiling':>10} "
          f"{'pgq/pgqueuer':>13} {'pgq/ceiling':>12}")
    for r in results:
        m = r["msgs_per_s"]
        print(f"{r['consumers']:>9} {r['qty']:>4} {m['pgq']:>10,.0f} {m['pgqueuer']:>10,.0f} "
              f"{m['ceiling']:>10,.0f} {r['pgq_over_pgqueuer']:>13.2f} "
              f"{r['pgq_over_ceiling']:>12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
