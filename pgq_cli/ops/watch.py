"""`pgq watch`: a live view of depth per priority and state, claim rate and oldest age.

Data only: `sample` collects one `Frame` (plain numbers; `--json` prints it as is) and
`run` samples every interval and hands each frame to a callback. Showing frames (rich Live
on a terminal, text on a pipe) is the CLI's `output.watch_frames`. This module never prints,
never imports Typer or rich, and never raises SystemExit: Ctrl-C ends `run` normally, so
the command exits 0.

Rates come from the table's cumulative row counters in `pg_stat_user_tables` (see
`ops_queries.TABLE_COUNTERS`) between two frames: rows updated are claims (one per
message claimed, plus the rarer requeues, extends and expired leases returned), rows
inserted are sends, rows deleted are acks and purges. Two limits, both PostgreSQL's:
- they count every queue of the schema, also under `--queue` (the view says so);
- a session publishes its counts when it goes idle, but at most once a second; what it
  did within a second of its last report waits until its next transaction after that
  second, or, if it stays idle, about 10 s (PostgreSQL 15+). A busy consumer's claims
  therefore show within a second or so, the last burst of one that went quiet later.
Over several frames nothing is lost or counted twice: the counters are cumulative.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from . import queries as ops_queries
from . import thresholds as health

# The CLI shows AUTO_ESTIMATE_ROWS in `pgq watch --help`: this module loads no psycopg
# itself (`translated` comes with the first frame).
if TYPE_CHECKING:
    from ..core.queue import Queue, QueueStats

# Above this many rows (planner statistics) watch estimates instead of counting, so that a
# refresh every second stays cheap; `--exact` / `--estimate` override it.
AUTO_ESTIMATE_ROWS = 1_000_000


@dataclass(frozen=True)
class Counters:
    inserted: int
    updated: int
    deleted: int


@dataclass(frozen=True)
class Frame:
    number: int
    at: float  # monotonic seconds
    wall: float  # unix time
    stats: QueueStats
    estimated: bool
    counters: Counters | None
    # Since the previous frame (None on the first): seconds, rows claimed (updated), sent
    # (inserted) and acked (deleted), and those per second.
    seconds: float | None
    claimed: int | None
    sent: int | None
    acked: int | None
    claim_rate: float | None
    send_rate: float | None
    ack_rate: float | None

    @property
    def oldest_ready_age(self) -> float | None:
        ages = [r.oldest_ready_age for r in self.stats.rows if r.oldest_ready_age is not None]
        return max(ages) if ages else None

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.number,
            "at": datetime.fromtimestamp(self.wall, UTC).isoformat(timespec="milliseconds"),
            "estimated": self.estimated,
            "seconds": self.seconds,
            "claimed": self.claimed,
            "sent": self.sent,
            "acked": self.acked,
            "claim_rate": self.claim_rate,
            "send_rate": self.send_rate,
            "ack_rate": self.ack_rate,
            "oldest_ready_age": self.oldest_ready_age,
            "rows": [r.to_json() for r in self.stats.rows],
        }


def counters(q: Queue) -> Counters | None:
    from ..core.translate import translated

    with translated():
        row = q.conn.execute(
            ops_queries.TABLE_COUNTERS, {"table": f"{q.schema}.messages"}
        ).fetchone()
    return None if row is None else Counters(int(row[0]), int(row[1]), int(row[2]))


def should_estimate(q: Queue) -> bool:
    from ..core.translate import translated

    with translated():
        row = q.conn.execute(
            ops_queries.TABLE_ROWS_ESTIMATE, {"table": f"{q.schema}.messages"}
        ).fetchone()
    return bool(row and int(row[0]) > AUTO_ESTIMATE_ROWS)


def _delta(now: int, before: int) -> int:
    # Counters drop when statistics are reset; a negative count would be nonsense.
    return max(now - before, 0)


def _rate(count: int | None, seconds: float | None) -> float | None:
    if count is None or seconds is None:
        return None
    return count / seconds if seconds > 0 else 0.0


def sample(
    q: Queue,
    *,
    queue: str | None,
    estimate: bool,
    previous: Frame | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Frame:
    """One frame: stats, then the counters, and rates against `previous`. Read-only."""
    snapshot = health.collect(q, queue=queue, estimate=estimate)
    now = clock()
    current = counters(q)
    seconds: float | None = None
    claimed = sent = acked = None
    if previous is not None and previous.counters is not None and current is not None:
        seconds = now - previous.at
        claimed = _delta(current.updated, previous.counters.updated)
        sent = _delta(current.inserted, previous.counters.inserted)
        acked = _delta(current.deleted, previous.counters.deleted)
    return Frame(
        number=previous.number + 1 if previous else 1,
        at=now,
        wall=snapshot.collected_at,
        stats=snapshot.stats,
        estimated=estimate,
        counters=current,
        seconds=seconds,
        claimed=claimed,
        sent=sent,
        acked=acked,
        claim_rate=_rate(claimed, seconds),
        send_rate=_rate(sent, seconds),
        ack_rate=_rate(acked, seconds),
    )


def run(
    q: Queue,
    *,
    emit: Callable[[Frame], None],
    queue: str | None = None,
    interval: float = 1.0,
    iterations: int | None = None,
    estimate: bool | None = None,
    on_frame: Callable[[Frame], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Frame]:
    """Sample every `interval` seconds, `iterations` times (None: until Ctrl-C).

    Each frame goes to `emit` (the CLI shows it); `on_frame` is called after that. Returns
    the frames (the last two only, when running unbounded). Ctrl-C ends the loop and
    returns normally.
    """
    use_estimate = should_estimate(q) if estimate is None else estimate
    frames: list[Frame] = []
    previous: Frame | None = None
    try:
        while iterations is None or len(frames) < iterations:
            if previous is not None:
                sleep(interval)
            frame = sample(q, queue=queue, estimate=use_estimate, previous=previous)
            emit(frame)
            frames.append(frame)
            if iterations is None:
                del frames[:-2]
            if on_frame is not None:
                on_frame(frame)
            previous = frame
    except KeyboardInterrupt:
        pass
    return frames
