"""pgq beside the seed design, its own SQL in a bare loop, and PgQueuer: one claim+ack
workload, same server, same run.

    .venv/bin/pip install -e '.[test,bench]'
    .venv/bin/python bench/peers.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

For each (consumers, qty) in {1, 4} x {1, 50}, each round: every system gets N messages of
priorities 1..10 (same payloads, untimed), its table is VACUUMed (ANALYZE included; the
:5432 server of the bench runs has autovacuum off, so nothing else would), then its
consumers claim and ack until the queue is drained; msg/s is N over the wall time of the
drain. The systems take turns within each round, the order rotated by one per round, so a
noisy neighbour hits all of them. Reported: the median of the rounds with the lowest and
highest round beside it, and the ratios pgq / seed and pgq / PgQueuer; and, steadier on a
loaded machine, the median [min-max] of the per-round pgq / seed ratios (the two ran in the
same round, minutes apart at most).

- pgq: the library, `Queue.claim` + `Queue.ack`, one thread and connection per consumer.
- pgq-sql: the statements `Queue.claim` and `Queue.ack` send (queries.CLAIM_UNLESS_DUE,
  and RETURN_DUE + CLAIM pipelined when that finds nothing; queries.ACK), from a bare
  psycopg loop with tuple rows and no validation: what pgq's SQL costs with no library
  around it.
- seed: the design pgq grew from (`pgq_cli.bench.schema`, the same one `pgq bench
  --compare-naive` runs): no state column, a `(queue_name, priority DESC, msg_id)` index,
  `vt <= now()` as a row filter, the CTE claim with FOR UPDATE SKIP LOCKED and a DELETE ack.
  It has no leases to fence, no dead letters, no pause, and its claim slows down with the
  in-flight backlog (`pgq bench --compare-naive`); here the backlog is empty, its best case.
- PgQueuer (PyPI `pgqueuer`): its `Queries.dequeue` + `Queries.log_jobs(..., "successful")`
  (its claim, and its ack: delete plus a log row), one asyncio task and connection per
  consumer. No QueueManager poll loop or handler, so its sleep machinery is not measured.

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
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from pgq_cli.bench import schema as bench_sql
from pgq_cli.core import migrate, queries
from pgq_cli.core.queue import RETURN_DUE_BATCH, Queue

QUEUE = "peers"
VT_S = 300.0
SHAPES = ((1, 1), (1, 50), (4, 1), (4, 50))


def _payloads(n: int) -> list[tuple[int, str]]:
    """(priority, payload): mixed priorities 1..10, the same for every system."""
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


def _vacuum(conn: psycopg.Connection[Any], schema: str, table: str) -> None:
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema, table)))


def _drop(dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


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
            _vacuum(conn, self.schema, "messages")

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
        _drop(self.dsn, self.schema)


class PgqSql(Pgq):
    """pgq's own statements with no library: the most pgq's SQL can do from Python."""

    name = "pgq-sql"

    def _consumer(self, qty: int) -> int:
        def q(template: LiteralString) -> bytes:
            return (
                sql.SQL(template)
                .format(
                    messages=sql.Identifier(self.schema, "messages"),
                    queues=sql.Identifier(self.schema, "queues"),
                )
                .as_bytes(None)
            )

        # What Queue.claim sends: the guarded claim; on nothing, return-due + claim.
        claim_unless_due, return_due = q(queries.CLAIM_UNLESS_DUE), q(queries.RETURN_DUE)
        claim, ack = q(queries.CLAIM), q(queries.ACK)
        params = {"queue": QUEUE, "qty": qty, "vt": VT_S, "min_priority": 1,
                  "max_priority": 10, "batch": max(qty, RETURN_DUE_BATCH)}
        ack_params: dict[str, Any] = {"lease": None}
        done = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn, conn.cursor() as cur:
            while True:
                ids = [row[0] for row in cur.execute(claim_unless_due, params).fetchall()]
                if not ids:
                    with conn.pipeline():
                        conn.execute(return_due, params)
                        cur.execute(claim, params)
                    ids = [row[0] for row in cur.fetchall()]
                if not ids:
                    return done
                ack_params["ids"] = ids
                cur.execute(ack, ack_params)
                done += len(ids)


class Seed:
    """The seed design (`pgq_cli.bench.schema`, NAIVE_*): vt filter, CTE claim, DELETE ack."""

    name = "seed"

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"pgq_bench_peers_seed_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(dsn, autocommit=True) as conn, conn.transaction():
            conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(self.schema)))
            conn.execute(self._q(bench_sql.CREATE_NAIVE))
            conn.execute(self._q(bench_sql.CREATE_NAIVE_INDEX))

    def _q(self, template: LiteralString) -> sql.Composed:
        return sql.SQL(template).format(naive=sql.Identifier(self.schema, "naive_messages"))

    def fill(self, n: int) -> None:
        copy_in = sql.SQL("COPY {} (queue_name, priority, message) FROM STDIN").format(
            sql.Identifier(self.schema, "naive_messages")
        )
        with psycopg.connect(self.dsn, autocommit=True) as conn:
            with conn.transaction(), conn.cursor() as cur, cur.copy(copy_in) as copy:
                for priority, payload in _payloads(n):
                    copy.write_row((QUEUE, priority, payload))
            _vacuum(conn, self.schema, "naive_messages")

    def _consumer(self, qty: int) -> int:
        claim, ack = self._q(bench_sql.NAIVE_CLAIM), self._q(bench_sql.NAIVE_ACK)
        params = {"queue": QUEUE, "qty": qty, "vt": VT_S}
        ack_params: dict[str, Any] = {}
        done = 0
        with psycopg.connect(self.dsn, autocommit=True) as conn, conn.cursor() as cur:
            while True:
                ids = [row[0] for row in cur.execute(claim, params).fetchall()]
                if not ids:
                    return done
                ack_params["ids"] = ids
                cur.execute(ack, ack_params)
                done += len(ids)

    def drain(self, consumers: int, qty: int) -> float:
        return _drain_threads(consumers, lambda: self._consumer(qty))

    def close(self) -> None:
        _drop(self.dsn, self.schema)


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
                await conn.execute(
                    sql.SQL("VACUUM (ANALYZE) {}").format(
                        sql.Identifier(self.schema, "pgqueuer")
                    )
                )

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
        _drop(self.dsn, self.schema)


SYSTEMS: dict[str, Callable[[str], Any]] = {
    "pgq": Pgq,
    "pgq-sql": PgqSql,
    "seed": Seed,
    "pgqueuer": PgQueuer,
}


def _spread(values: list[float], digits: int = 1) -> dict[str, float]:
    return {
        "median": round(statistics.median(values), digits),
        "min": round(min(values), digits),
        "max": round(max(values), digits),
    }


def per_round_text(spread: dict[str, float]) -> str:
    return f"{spread['median']:.2f} [{spread['min']:.2f}-{spread['max']:.2f}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""), help="server to use")
    parser.add_argument("--messages", type=int, default=2000,
                        help="messages per drain at qty 1")
    parser.add_argument("--batch-messages", type=int, default=0,
                        help="messages per drain at qty > 1 (default: 10 x --messages, so "
                        "that a drain is not over in a few dozen claims)")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median is reported)")
    parser.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help=f"comma-separated subset of {','.join(SYSTEMS)} (pgq and seed are always run)",
    )
    parser.add_argument(
        "--shapes",
        default=",".join(f"{c}x{q}" for c, q in SHAPES),
        help="comma-separated CONSUMERSxQTY, e.g. 1x1,4x50",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or PGQ_DSN")
    wanted = {"pgq", "seed", *args.systems.split(",")}
    unknown = wanted - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown system {sorted(unknown)}")
    shapes = [tuple(int(part) for part in shape.split("x")) for shape in args.shapes.split(",")]
    batch_messages = args.batch_messages or 10 * args.messages
    systems: list[Any] = []
    results: list[dict[str, Any]] = []
    try:
        for name, make in SYSTEMS.items():
            if name in wanted:
                systems.append(make(args.dsn))
        for consumers, qty in shapes:
            messages = args.messages if qty == 1 else batch_messages
            rates: dict[str, list[float]] = {s.name: [] for s in systems}
            for round_ in range(args.rounds):
                shift = round_ % len(systems)
                for system in systems[shift:] + systems[:shift]:
                    system.fill(messages)
                    rate = messages / system.drain(consumers, qty)
                    rates[system.name].append(rate)
                    print(f"consumers={consumers} qty={qty} round={round_} "
                          f"{system.name}: {rate:,.0f} msg/s", file=sys.stderr)
            median = {name: statistics.median(r) for name, r in rates.items()}
            results.append({
                "consumers": consumers,
                "qty": qty,
                "messages": messages,
                "msgs_per_s": {name: _spread(r) for name, r in rates.items()},
                "pgq_over_seed": round(median["pgq"] / median["seed"], 3),
                "pgq_over_seed_per_round": _spread(
                    [p / s for p, s in zip(rates["pgq"], rates["seed"], strict=True)], digits=3
                ),
                **({"pgq_over_pgqueuer": round(median["pgq"] / median["pgqueuer"], 3)}
                   if "pgqueuer" in median else {}),
            })
    finally:
        for system in systems:
            system.close()
    if args.json:
        print(json.dumps({"rounds": args.rounds, "results": results}))
        return 0
    names = [s.name for s in systems]
    print(f"msg/s, median [min-max] of {args.rounds} rounds; messages a drain: "
          f"{args.messages} at qty 1, {batch_messages} at qty > 1")
    print(f"{'consumers':>9} {'qty':>4} " + " ".join(f"{n:>22}" for n in names)
          + f" {'pgq/seed':>9} {'per round':>19} {'pgq/pgqueuer':>13}")
    for r in results:
        cells = []
        for n in names:
            s = r["msgs_per_s"][n]
            cells.append(f"{s['median']:>8,.0f} [{s['min']:,.0f}-{s['max']:,.0f}]".rjust(22))
        over_pgqueuer = r.get("pgq_over_pgqueuer")
        print(f"{r['consumers']:>9} {r['qty']:>4} " + " ".join(cells)
              + f" {r['pgq_over_seed']:>9.2f} "
              + f"{per_round_text(r['pgq_over_seed_per_round']):>19} "
              + (f"{over_pgqueuer:>13.2f}" if over_pgqueuer is not None else f"{'-':>13}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
