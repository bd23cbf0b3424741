"""`pgq watch`: a live view of depth per priority and state, claim rate and oldest age.

Two halves: `sample`/`Frame` collect numbers (no rich here: a frame is plain data, and
`--json` prints it as is), and `view`/`plain`/`run` show frames: `view` with rich for a
terminal, `plain` as text for a pipe (rich would cut it to 80 columns). This module is a
presentation module like `render.py`; it never imports Typer and never raises SystemExit:
Ctrl-C ends `run` normally, so the command exits 0.

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

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from ..cli import output as render
from ..core.checks import MAX_PRIORITY
from ..core.queue import Queue, QueueStats
from ..core.states import EFFECTIVE_STATES
from ..core.translate import translated
from . import queries as ops_queries
from . import thresholds as health

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
    def oldest_ready_age_s(self) -> float | None:
        ages = [r.oldest_ready_age_s for r in self.stats.rows if r.oldest_ready_age_s is not None]
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
            "oldest_ready_age_s": self.oldest_ready_age_s,
            "rows": [r.to_json() for r in self.stats.rows],
        }


def counters(q: Queue) -> Counters | None:
    with translated():
        row = q.conn.execute(
            ops_queries.TABLE_COUNTERS, {"table": f"{q.schema}.messages"}
        ).fetchone()
    return None if row is None else Counters(int(row[0]), int(row[1]), int(row[2]))


def should_estimate(q: Queue) -> bool:
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


def _per_second(rate: float | None) -> str:
    return "…" if rate is None else f"{rate:,.1f}/s"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _rates_scope(queue: str | None) -> str:
    # The counters are the table's: under --queue they still count every queue.
    return "" if queue is None else " (rates: all queues)"


def view(frame: Frame, *, queue: str | None = None, title: str = "pgq watch") -> RenderableType:
    """A frame as a rich renderable: a summary line and a table per queue and priority."""
    when = datetime.fromtimestamp(frame.wall, UTC).strftime("%H:%M:%S")
    summary = Text.assemble(
        (f"{title}  ", "bold"),
        f"{when} UTC  frame {frame.number}  ",
        "claims ",
        (_per_second(frame.claim_rate), "bold green"),
        "  sends ",
        _per_second(frame.send_rate),
        "  acks ",
        _per_second(frame.ack_rate),
        _rates_scope(queue),
        "  oldest ready ",
        (_age(frame.oldest_ready_age_s), "bold yellow"),
        ("  (estimated counts)" if frame.estimated else ""),
    )
    table = Table(
        title=f"priority {MAX_PRIORITY} is most urgent, claimed first", title_justify="left"
    )
    table.add_column("queue")
    table.add_column("prio", justify="right")
    for state in EFFECTIVE_STATES:
        table.add_column(state, justify="right")
    table.add_column("oldest", justify="right")
    table.add_column("paused")
    table.add_column("ready", justify="left")
    widest = max((r.ready for r in frame.stats.rows), default=0)
    for r in frame.stats.rows:
        bar = "█" * (round(20 * r.ready / widest) if widest else 0)
        table.add_row(
            r.queue,
            str(r.priority),
            *(f"{getattr(r, s):,}" for s in EFFECTIVE_STATES),
            _age(r.oldest_ready_age_s),
            "yes" if r.paused else "",
            Text(bar, style="green"),
        )
    parts: list[RenderableType] = [summary, table]
    if not frame.stats.rows:
        parts.append(Text("(no messages)"))
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)


def plain(frame: Frame, *, queue: str | None = None) -> str:
    """A frame as text for a pipe or a log: never cut to a terminal's width.

    A summary line, then the columns of `pgq stats` (a header line, one tab-separated line
    per queue and priority), then an empty line.
    """
    when = datetime.fromtimestamp(frame.wall, UTC).isoformat(timespec="milliseconds")
    def rate(value: float | None) -> str:
        return "-" if value is None else _per_second(value)

    summary = (
        f"frame {frame.number}  {when}  claims {rate(frame.claim_rate)}  "
        f"sends {rate(frame.send_rate)}  acks {rate(frame.ack_rate)}"
        f"{_rates_scope(queue)}  oldest ready {_age(frame.oldest_ready_age_s)}"
        + ("  (estimated counts)" if frame.estimated else "")
    )
    lines = [summary, "\t".join(render.STATS_HEADERS)]
    for r in frame.stats.rows:
        age = "" if r.oldest_ready_age_s is None else f"{r.oldest_ready_age_s:.1f}"
        cells = (r.queue, r.priority, r.ready, r.leased, r.expired, r.delayed, r.dead, age,
                 r.max_read_ct, "yes" if r.paused else "no")
        lines.append("\t".join(map(str, cells)))
    return "\n".join(lines) + "\n\n"


def run(
    q: Queue,
    *,
    queue: str | None = None,
    interval: float = 1.0,
    iterations: int | None = None,
    estimate: bool | None = None,
    console: Console | None = None,
    live: bool = True,
    emit: Callable[[Frame], None] | None = None,
    on_frame: Callable[[Frame], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> list[Frame]:
    """Sample every `interval` seconds, `iterations` times (None: until Ctrl-C).

    Each frame goes to `emit` (JSON lines) if given, else is shown: drawn in place with
    rich Live when `live`, else written as `plain` text to stdout. Whatever goes to stdout
    is flushed frame by frame, so a pipe (`pgq watch --json | jq`) sees each frame as it
    comes. `on_frame` is called after each frame is shown. Returns the frames (the last
    two only, when running unbounded). Ctrl-C ends the loop and returns normally.
    """
    use_estimate = should_estimate(q) if estimate is None else estimate
    console = console or Console()
    frames: list[Frame] = []
    previous: Frame | None = None
    display: Live | None = None
    try:
        while iterations is None or len(frames) < iterations:
            if previous is not None:
                sleep(interval)
            frame = sample(q, queue=queue, estimate=use_estimate, previous=previous)
            if emit is not None:
                emit(frame)
                sys.stdout.flush()
            elif live:
                if display is None:
                    display = Live(view(frame, queue=queue), console=console, auto_refresh=False)
                    display.start()
                display.update(view(frame, queue=queue), refresh=True)
            else:
                sys.stdout.write(plain(frame, queue=queue))
                sys.stdout.flush()
            frames.append(frame)
            if iterations is None:
                del frames[:-2]
            if on_frame is not None:
                on_frame(frame)
            previous = frame
    except KeyboardInterrupt:
        pass
    finally:
        if display is not None:
            display.stop()
    return frames
