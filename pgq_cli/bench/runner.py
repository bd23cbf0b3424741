"""`pgq bench` as a library: claim latency and claim+ack throughput under growing backlogs.

Owns: a scratch schema (`pgq_bench_<random>`, migrated with the real migrator, dropped
afterwards unless `keep`), building in-flight and delayed backlogs with set-based SQL,
timing the claim on the client around its round trip, running concurrent consumers, and
counting over-claims (a claim that returned more than qty rows) and duplicate leases (a
message handed out again while an earlier lease of it was still live).

The pgq side calls the public `Queue.claim`/`Queue.ack`, so the numbers are those of the
code users run. The naive side (`compare_naive`) is the vt-filter design described in
docs/design.md, with its SQL in `pgq_cli/bench/schema.py`. It never prints and never
imports Typer or rich; progress is a callback. It never touches a real queue: everything
lives in the scratch schema.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, LiteralString

import psycopg
from psycopg import sql

from ..core import migrate as migrator
from ..core import queries
from ..core.checks import MAX_PRIORITY, MIN_PRIORITY
from ..core.errors import NothingDone, PgqError
from ..core.queue import Queue
from ..core.translate import translated
from . import DEFAULT_INFLIGHT
from . import schema as bench_sql

BENCH_QUEUE = "bench"
DELAYED_QUEUE = "bench-delayed"
# Long enough that no lease taken during a run can expire during it: any message handed
# out twice in a run is then a duplicate lease, never a legitimate redelivery.
BENCH_VT_S = 3600.0
WARMUP_CLAIMS = 5

OpenConnection = Callable[[], psycopg.Connection[Any]]
# (what is happening now, steps done, steps in all)
ProgressCallback = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BenchConfig:
    inflight: tuple[int, ...] = DEFAULT_INFLIGHT
    delayed: int = 0  # > 0: one more level, this many delayed messages in a queue of its own
    ready: int = 10_000  # ready messages under the backlog while latency is sampled
    qty: int = 1
    samples: int = 200
    naive_samples: int | None = None  # None: as many as `samples`
    consumers: int = 4
    messages: int = 10_000  # drained by the consumers at each level
    max_seconds: float = 10.0  # a throughput run stops after this long, drained or not
    compare_naive: bool = False
    explain: bool = False
    keep: bool = False
    # > 0: also measure the claim of a fair queue whose ready work is spread over this
    # many keys (pgq_cli/bench/fair.py), beside the ordinary claim at the same sizes.
    keys: int = 0
    # With keys: this many more ready messages on one key (for both designs, in the fair
    # queue all on the key "hot").
    hot_key: int = 0

    def __post_init__(self) -> None:
        if not self.inflight or any(n < 0 for n in self.inflight):
            raise ValueError("inflight sizes must be >= 0")
        for name in ("qty", "samples", "consumers"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.delayed < 0 or self.ready < 0 or self.messages < 0:
            raise ValueError("delayed, ready and messages must be >= 0")
        if self.keys < 0 or self.hot_key < 0 or (self.hot_key and not self.keys):
            raise ValueError("keys and hot_key must be >= 0, and hot_key needs keys")
        if self.naive_samples is not None and self.naive_samples < 1:
            raise ValueError("naive_samples must be >= 1")
        if not self.max_seconds > 0:
            raise ValueError("max_seconds must be > 0")


@dataclass(frozen=True)
class Latency:
    """Client-side claim round trip, milliseconds."""

    samples: int
    p50: float
    p95: float
    p99: float
    max: float


@dataclass(frozen=True)
class Throughput:
    consumers: int
    qty: int
    messages: int  # claimed and acked
    seconds: float
    msgs_per_s: float
    drained: bool  # False: stopped by max_seconds


@dataclass(frozen=True)
class LevelResult:
    design: str  # "pgq" or "naive"
    backlog_kind: str  # "inflight" or "delayed"
    backlog: int
    latency: Latency
    # p99 here / p99 of the same design at zero backlog (None without a zero level).
    p99_ratio: float | None
    throughput: Throughput | None
    claims: int
    over_claims: int
    duplicate_leases: int
    failed_acks: int


@dataclass(frozen=True)
class BenchResult:
    schema: str
    kept: bool
    server_version: str
    config: BenchConfig
    levels: tuple[LevelResult, ...]
    explain: dict[str, str] = field(default_factory=dict)

    @property
    def claims(self) -> int:
        return sum(level.claims for level in self.levels)

    @property
    def over_claims(self) -> int:
        return sum(level.over_claims for level in self.levels)

    @property
    def duplicate_leases(self) -> int:
        return sum(level.duplicate_leases for level in self.levels)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "kept": self.kept,
            "server_version": self.server_version,
            "config": {**asdict(self.config), "inflight": list(self.config.inflight)},
            "levels": [asdict(level) for level in self.levels],
            "claims": self.claims,
            "over_claims": self.over_claims,
            "duplicate_leases": self.duplicate_leases,
            "explain": self.explain,
        }


# ----------------------------------------------------------------------------- accounting


@dataclass
class ClaimLog:
    """Every claim one worker made: for over-claim and duplicate-lease accounting."""

    qty: int
    claims: int = 0
    over_claims: int = 0
    failed_acks: int = 0
    # (msg_id, monotonic time of the claim's return)
    leases: list[tuple[int, float]] = field(default_factory=list)

    def record(self, msg_ids: Sequence[int], at: float) -> None:
        self.claims += 1
        if len(msg_ids) > self.qty:
            self.over_claims += 1
        self.leases.extend((msg_id, at) for msg_id in msg_ids)


def count_duplicate_leases(leases: Iterable[tuple[int, float]], vt: float) -> int:
    """How many times a message was handed out while an earlier lease of it was live."""
    duplicates = 0
    live_until: dict[int, float] = {}
    for msg_id, at in sorted(leases, key=lambda lease: lease[1]):
        if at < live_until.get(msg_id, -math.inf):
            duplicates += 1
        live_until[msg_id] = at + vt
    return duplicates


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted, non-empty sequence."""
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


def summarize(latencies_ms: Sequence[float]) -> Latency:
    values = sorted(latencies_ms)
    if not values:
        return Latency(0, math.nan, math.nan, math.nan, math.nan)
    return Latency(
        samples=len(values),
        p50=percentile(values, 0.50),
        p95=percentile(values, 0.95),
        p99=percentile(values, 0.99),
        max=values[-1],
    )


# ----------------------------------------------------------------------------- designs


class Design:
    """One claim design under test: how to claim, ack and build its backlogs."""

    name = ""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def q(self, template: LiteralString) -> sql.Composed:
        return sql.SQL(template).format(
            messages=sql.Identifier(self.schema, "messages"),
            naive=sql.Identifier(self.schema, "naive_messages"),
            queues=sql.Identifier(self.schema, "queues"),
            fair_claim=sql.Identifier(self.schema, "fair_claim"),
        )

    def claim(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> list[int]:
        raise NotImplementedError

    def ack(self, conn: psycopg.Connection[Any], ids: list[int]) -> int:
        """Ack ids; return how many of them could not be acked."""
        raise NotImplementedError

    def add_backlog(self, conn: psycopg.Connection[Any], kind: str, queue: str, n: int) -> None:
        raise NotImplementedError

    def top_up_ready(self, conn: psycopg.Connection[Any], queue: str, n: int) -> None:
        raise NotImplementedError

    def explain(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> str:
        raise NotImplementedError

    def table(self) -> str:
        raise NotImplementedError


def _explain(
    conn: psycopg.Connection[Any], statement: sql.Composable, params: dict[str, Any]
) -> str:
    """EXPLAIN (ANALYZE, BUFFERS) of a data-modifying statement, rolled back."""
    query = sql.SQL("EXPLAIN (ANALYZE, BUFFERS) ") + statement
    lines: list[str] = []
    try:
        with conn.transaction():
            lines = [str(row[0]) for row in conn.execute(query, params).fetchall()]
            raise _Rollback
    except _Rollback:
        pass
    return "\n".join(lines)


class _Rollback(Exception):
    """Raised inside a transaction block to roll it back on purpose."""


class PgqDesign(Design):
    """The real thing: `Queue.claim` and `Queue.ack` on the migrated scratch schema."""

    name = "pgq"

    def __init__(self, schema: str) -> None:
        super().__init__(schema)
        # One Queue per connection, as an application keeps it.
        self._queues: dict[int, Queue] = {}

    def _queue(self, conn: psycopg.Connection[Any]) -> Queue:
        found = self._queues.get(id(conn))
        if found is None or found.conn is not conn:
            found = self._queues[id(conn)] = Queue(conn, self.schema)
        return found

    def claim(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> list[int]:
        found = self._queue(conn).claim(queue=queue, qty=qty, vt=BENCH_VT_S)
        return [m.msg_id for m in found]

    def ack(self, conn: psycopg.Connection[Any], ids: list[int]) -> int:
        try:
            self._queue(conn).ack(ids)
        except NothingDone as exc:
            return len(ids) - len(exc.done)
        return 0

    def add_backlog(self, conn: psycopg.Connection[Any], kind: str, queue: str, n: int) -> None:
        template = bench_sql.ADD_LEASED if kind == "inflight" else bench_sql.ADD_DELAYED
        conn.execute(self.q(template), {"queue": queue, "count": n})

    def top_up_ready(self, conn: psycopg.Connection[Any], queue: str, n: int) -> None:
        row = conn.execute(self.q(bench_sql.COUNT_READY), {"queue": queue}).fetchone()
        have = int(row[0]) if row else 0
        if have < n:
            conn.execute(self.q(bench_sql.ADD_READY), {"queue": queue, "count": n - have})

    def explain(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> str:
        # The claim's own statements, not copies: the one it sends when nothing is due, and
        # the two it sends when something is (queries.RETURN_DUE then queries.CLAIM).
        params = {
            "queue": queue,
            "qty": qty,
            "vt": BENCH_VT_S,
            "batch": qty,
            "min_priority": MIN_PRIORITY,
            "max_priority": MAX_PRIORITY,
        }
        fast = _explain(conn, self.q(queries.CLAIM_UNLESS_DUE), params)
        due = _explain(conn, self.q(queries.RETURN_DUE), params)
        claim = _explain(conn, self.q(queries.CLAIM), params)
        return (
            f"-- nothing due: claim in one statement\n{fast}\n"
            f"-- something due, step 1: return due work\n{due}\n-- step 2: claim\n{claim}"
        )

    def table(self) -> str:
        return f"{self.schema}.messages"


class NaiveDesign(Design):
    """The vt-filter design of docs/design.md (bench_sql.NAIVE_*)."""

    name = "naive"

    def claim(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> list[int]:
        rows = conn.execute(
            self.q(bench_sql.NAIVE_CLAIM), {"queue": queue, "qty": qty, "vt": BENCH_VT_S}
        ).fetchall()
        return [int(r[0]) for r in rows]

    def ack(self, conn: psycopg.Connection[Any], ids: list[int]) -> int:
        cur = conn.execute(self.q(bench_sql.NAIVE_ACK), {"ids": ids})
        return len(ids) - cur.rowcount

    def add_backlog(self, conn: psycopg.Connection[Any], kind: str, queue: str, n: int) -> None:
        # In-flight and delayed look alike here: a vt in the future.
        conn.execute(self.q(bench_sql.NAIVE_ADD_INVISIBLE), {"queue": queue, "count": n})

    def top_up_ready(self, conn: psycopg.Connection[Any], queue: str, n: int) -> None:
        row = conn.execute(self.q(bench_sql.NAIVE_COUNT_READY), {"queue": queue}).fetchone()
        have = int(row[0]) if row else 0
        if have < n:
            conn.execute(self.q(bench_sql.NAIVE_ADD_READY), {"queue": queue, "count": n - have})

    def explain(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> str:
        params = {"queue": queue, "qty": qty, "vt": BENCH_VT_S}
        return _explain(conn, self.q(bench_sql.NAIVE_CLAIM), params)

    def table(self) -> str:
        return f"{self.schema}.naive_messages"


# ----------------------------------------------------------------------------- measuring


def sample_latency(
    conn: psycopg.Connection[Any], design: Design, queue: str, qty: int, samples: int
) -> tuple[list[float], ClaimLog]:
    """Time `samples` claims on the client (ack untimed after each); return ms and the log."""
    log = ClaimLog(qty)
    timings: list[float] = []
    for index in range(WARMUP_CLAIMS + samples):
        started = time.perf_counter()
        ids = design.claim(conn, queue, qty)
        finished = time.perf_counter()
        log.record(ids, time.monotonic())
        if index >= WARMUP_CLAIMS:
            timings.append((finished - started) * 1000.0)
        if ids:
            log.failed_acks += design.ack(conn, ids)
    return timings, log


def _open_all(open_conn: OpenConnection, count: int) -> list[psycopg.Connection[Any]]:
    """`count` connections, or none: those opened before a failure are closed."""
    conns: list[psycopg.Connection[Any]] = []
    try:
        conns.extend(open_conn() for _ in range(count))
    except BaseException:
        for opened in conns:
            opened.close()
        raise
    return conns


def run_consumers(
    open_conn: OpenConnection,
    design: Design,
    queue: str,
    *,
    consumers: int,
    qty: int,
    max_seconds: float,
    messages: int | None = None,
) -> tuple[Throughput, ClaimLog]:
    """`consumers` threads, each on its own connection, claim+ack until `messages` are done,
    the queue is empty or time is up."""
    logs = [ClaimLog(qty) for _ in range(consumers)]
    budget = threading.Semaphore(math.ceil(messages / qty)) if messages is not None else None
    errors: list[BaseException] = []
    acked = [0] * consumers
    drained = [False] * consumers
    conns = _open_all(open_conn, consumers)
    start_line = threading.Barrier(consumers + 1)
    deadline = [0.0]

    def consume(slot: int) -> None:
        conn, log = conns[slot], logs[slot]
        try:
            start_line.wait()
            while time.monotonic() < deadline[0]:
                if budget is not None and not budget.acquire(blocking=False):
                    drained[slot] = True  # this run's share of messages is done
                    return
                ids = design.claim(conn, queue, qty)
                log.record(ids, time.monotonic())
                if not ids:
                    drained[slot] = True
                    return
                failed = design.ack(conn, ids)
                log.failed_acks += failed
                acked[slot] += len(ids) - failed
        except BaseException as exc:  # reported after join, with the others
            errors.append(exc)

    threads = [threading.Thread(target=consume, args=(i,), daemon=True) for i in range(consumers)]
    try:
        for thread in threads:
            thread.start()
        deadline[0] = time.monotonic() + max_seconds
        started = time.perf_counter()
        start_line.wait()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
    finally:
        for conn in conns:
            conn.close()
    if errors:
        raise errors[0]
    merged = ClaimLog(qty)
    for log in logs:
        merged.claims += log.claims
        merged.over_claims += log.over_claims
        merged.failed_acks += log.failed_acks
        merged.leases.extend(log.leases)
    total = sum(acked)
    throughput = Throughput(
        consumers=consumers,
        qty=qty,
        messages=total,
        seconds=round(elapsed, 4),
        msgs_per_s=round(total / elapsed, 1) if elapsed > 0 else 0.0,
        drained=all(drained),
    )
    return throughput, merged


# ----------------------------------------------------------------------------- the run


@dataclass(frozen=True)
class _Level:
    kind: str  # "inflight" or "delayed"
    size: int
    queue: str


def _levels(config: BenchConfig) -> list[_Level]:
    levels = [_Level("inflight", n, BENCH_QUEUE) for n in sorted(set(config.inflight))]
    if config.delayed:
        levels.append(_Level("delayed", config.delayed, DELAYED_QUEUE))
    return levels


def scratch_schema_name() -> str:
    return f"pgq_bench_{uuid.uuid4().hex[:10]}"


def create_scratch(conn: psycopg.Connection[Any], schema: str, *, naive: bool) -> None:
    """Migrate a fresh scratch schema with the real migrator (and the naive table, with the
    storage parameters the migrations gave the real one)."""
    migrator.migrate(conn, schema)
    if naive:
        design = NaiveDesign(schema)
        with translated(), conn.transaction():
            conn.execute(design.q(bench_sql.CREATE_NAIVE))
            conn.execute(design.q(bench_sql.CREATE_NAIVE_INDEX))
            real = {"table": f"{schema}.messages"}
            for name, value in conn.execute(bench_sql.STORAGE_PARAMETERS, real).fetchall():
                conn.execute(
                    sql.SQL(bench_sql.SET_STORAGE_PARAMETER).format(
                        naive=sql.Identifier(*design.table().split(".")),
                        name=sql.Identifier(name),
                        value=sql.Literal(value),
                    )
                )


def drop_scratch(conn: psycopg.Connection[Any], schema: str) -> None:
    if not schema.startswith("pgq_bench_"):  # never anything but a scratch schema
        raise ValueError(f"refusing to drop {schema!r}: not a bench scratch schema")
    with translated():
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def _vacuum(conn: psycopg.Connection[Any], design: Design) -> None:
    # As autovacuum would leave a table that has settled: statistics fresh, hint bits set.
    schema_name, table_name = design.table().split(".")
    conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(sql.Identifier(schema_name, table_name)))


def _prepare_level(
    conn: psycopg.Connection[Any],
    design: Design,
    level: _Level,
    ready: int,
    built: dict[tuple[str, str], int],
) -> None:
    """Grow the level's backlog to its size (levels build on each other), top up ready work."""
    have = built.get((design.name, level.queue), 0)
    with translated():
        if level.size > have:
            design.add_backlog(conn, level.kind, level.queue, level.size - have)
            built[(design.name, level.queue)] = level.size
        design.top_up_ready(conn, level.queue, ready)
        _vacuum(conn, design)


def _measure_level(
    open_conn: OpenConnection,
    conn: psycopg.Connection[Any],
    design: Design,
    level: _Level,
    config: BenchConfig,
    samples: int,
    step: Callable[[str], None],
) -> LevelResult:
    """Latency on `conn`, then throughput with `config.consumers` connections of their own."""
    step(f"{design.name}: {samples} claims at {level.size:,} {level.kind}")
    with translated():
        timings, log = sample_latency(conn, design, level.queue, config.qty, samples)
    step(f"{design.name}: {config.consumers} consumers at {level.size:,} {level.kind}")
    throughput = None
    if config.messages:
        with translated():
            design.top_up_ready(conn, level.queue, config.messages)
            throughput, consumer_log = run_consumers(
                open_conn,
                design,
                level.queue,
                consumers=config.consumers,
                qty=config.qty,
                max_seconds=config.max_seconds,
                messages=config.messages,
            )
        log.claims += consumer_log.claims
        log.over_claims += consumer_log.over_claims
        log.failed_acks += consumer_log.failed_acks
        log.leases.extend(consumer_log.leases)
    return LevelResult(
        design=design.name,
        backlog_kind=level.kind,
        backlog=level.size,
        latency=summarize(timings),
        p99_ratio=None,
        throughput=throughput,
        claims=log.claims,
        over_claims=log.over_claims,
        duplicate_leases=count_duplicate_leases(log.leases, BENCH_VT_S),
        failed_acks=log.failed_acks,
    )


def _clean_up(
    open_conn: OpenConnection,
    conn: psycopg.Connection[Any],
    schema: str,
    *,
    keep: bool,
    failing: bool,
) -> None:
    """Drop the scratch schema (on a fresh connection if the run's one is broken) and close.

    When the run is already failing, a failed drop is not allowed to hide the first error.
    """
    try:
        if not keep:
            try:
                drop_scratch(conn, schema)
            except (psycopg.Error, PgqError):
                with open_conn() as fresh:
                    drop_scratch(fresh, schema)
    except Exception:
        if not failing:
            raise
    finally:
        conn.close()


def _designs(config: BenchConfig, schema: str) -> list[Design]:
    designs: list[Design] = [PgqDesign(schema)]
    if config.compare_naive:
        designs.append(NaiveDesign(schema))
    if config.keys:
        from .fair import FairDesign  # it builds on PgqDesign, defined here

        designs.append(FairDesign(schema, keys=config.keys, hot_key=config.hot_key))
    return designs


def run(
    open_conn: OpenConnection,
    config: BenchConfig,
    *,
    progress: ProgressCallback | None = None,
    schema: str | None = None,
) -> BenchResult:
    """Create a scratch schema, measure every level for each design, drop it (unless keep).

    `open_conn` opens a new autocommit connection (one for setup and latency, one per
    consumer). Each backlog statement is its own transaction; nothing outside the scratch
    schema is read or written.
    """
    schema = schema or scratch_schema_name()
    designs = _designs(config, schema)
    levels = _levels(config)
    total_steps = 1 + len(levels) * len(designs) * 3 + (1 if config.explain else 0)
    done = [0]

    def step(what: str) -> None:
        if progress is not None:
            progress(what, done[0], total_steps)
        done[0] += 1

    results: list[LevelResult] = []
    explain: dict[str, str] = {}
    conn = open_conn()
    try:
        step(f"migrating scratch schema {schema}")
        create_scratch(conn, schema, naive=config.compare_naive)
        version = conn.execute("SHOW server_version").fetchone()
        server_version = str(version[0]) if version else "?"
        built: dict[tuple[str, str], int] = {}
        zero_p99: dict[str, float] = {}
        for level in levels:
            for design in designs:
                samples = config.samples
                if design.name == "naive" and config.naive_samples is not None:
                    samples = config.naive_samples
                step(f"{design.name}: building {level.size:,} {level.kind}")
                ready = max(config.ready, (samples + WARMUP_CLAIMS) * config.qty)
                if design.name == "pgq":
                    ready += config.hot_key  # as many as the fair design's (pgq_cli/bench/fair.py)
                _prepare_level(conn, design, level, ready, built)
                result = _measure_level(open_conn, conn, design, level, config, samples, step)
                if level.kind == "inflight" and level.size == 0:
                    zero_p99[design.name] = result.latency.p99
                baseline = zero_p99.get(design.name)
                if baseline:
                    ratio = round(result.latency.p99 / baseline, 3)
                    result = dataclasses.replace(result, p99_ratio=ratio)
                results.append(result)
        if config.explain:
            largest = max(levels, key=lambda lv: lv.size)
            step(f"EXPLAIN at {largest.size:,} {largest.kind}")
            with translated():
                for design in designs:
                    design.top_up_ready(conn, largest.queue, config.qty)
                    explain[design.name] = design.explain(conn, largest.queue, config.qty)
    finally:
        _clean_up(open_conn, conn, schema, keep=config.keep, failing=sys.exc_info()[1] is not None)
    return BenchResult(
        schema=schema,
        kept=config.keep,
        server_version=server_version,
        config=config,
        levels=tuple(results),
        explain=explain,
    )
