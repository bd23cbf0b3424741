"""`pgq watch`: a live view of depth per priority and state, claim rate and oldest age.

Two halves: `sample`/`Frame` collect numbers (no rich here: a frame is plain data, and
`--json` prints it as is), and `view`/`run` draw frames with rich. This module is a
presentation module like `render.py`; it never imports Typer and never raises SystemExit:
Ctrl-C ends `run` normally, so the command exits 0.

Rates come from the table's cumulative row counters in `pg_stat_user_tables` (see
`ops_queries.TABLE_COUNTERS`) between two frames: updates per second are claims (plus
the rarer requeues, extends and expired leases returned), inserts are sends, deletes are
acks and purges. They cover every queue of the schema, and the statistics system
publishes a busy session's counts about once a second, so a rate trails by up to that.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from . import health, ops_queries
from .errors import translated
from .queue import MAX_PRIORITY, Queue, QueueStats

# Above this many rows (planner statistics) watch estimates instead of counting, so that a
# refresh every second stays cheap; `--exact` / `--estimate` override it.
AUTO_ESTIMATE_ROWS = 1_000_000
STATES = ("ready", "leased", "expired", "delayed", "dead")


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
    # Per second since the previous frame; None on the first frame.
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


def _rate(now: int, before: int, seconds: float) -> float:
    # Counters drop when statistics are reset; a negative rate would be nonsense.
    return max(now - before, 0) / seconds if seconds > 0 else 0.0


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
    claim = send = ack = None
    if previous is not None and previous.counters is not None and current is not None:
        seconds = now - previous.at
        claim = _rate(current.updated, previous.counters.updated, seconds)
        send = _rate(current.inserted, previous.counters.inserted, seconds)
        ack = _rate(current.deleted, previous.counters.deleted, seconds)
    return Frame(
        number=previous.number + 1 if previous else 1,
        at=now,
        wall=snapshot.collected_at,
        stats=snapshot.stats,
        estimated=estimate,
        counters=current,
        claim_rate=claim,
        send_rate=send,
        ack_rate=ack,
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


def view(frame: Frame, *, title: str = "pgq watch") -> RenderableType:
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
        "  oldest ready ",
        (_age(frame.oldest_ready_age_s), "bold yellow"),
        ("  (estimated counts)" if frame.estimated else ""),
    )
    table = Table(
        title=f"priority {MAX_PRIORITY} is most urgent, claimed first", title_justify="left"
    )
    table.add_column("queue")
    table.add_column("prio", justify="right")
    for state in STATES:
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
            *(f"{getattr(r, s):,}" for s in STATES),
            _age(r.oldest_ready_age_s),
            "yes" if r.paused else "",
            Text(bar, style="green"),
        )
    parts: list[RenderableType] = [summary, table]
    if not frame.stats.rows:
        parts.append(Text("(no messages)"))
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)


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

    Each frame goes to `emit` (JSON lines) if given, else is drawn: in place with rich
    Live when `live`, else printed one after another. `on_frame` is called after each
    frame is shown. Returns the frames (the last two only, when running unbounded).
    Ctrl-C ends the loop and returns normally.
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
            elif live:
                if display is None:
                    display = Live(view(frame), console=console, auto_refresh=False)
                    display.start()
                display.update(view(frame), refresh=True)
            else:
                console.print(view(frame))
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
