"""Per-queue settings stored in the database: max deliveries (dead letters) and pause.

Library code: takes a `Queue` (for its connection and schema), returns frozen dataclasses,
raises the `errors.PgqError` family. Never prints, never imports Typer or rich.

The settings live in `<schema>.queues` (sql/0002), and the claim statement reads them
itself (queries.CLAIM, queries.RETURN_DUE), so they hold for every consumer at once, with
no restart and no daemon. A queue without a row has the defaults: no limit, not paused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from psycopg.rows import dict_row

from . import queries
from .errors import InvalidInput, translated
from .queue import (
    DEFAULT_DEDUP_WINDOW_S,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Queue,
    check_priority,
    check_queue,
    check_seconds,
)

# A limit beyond this is a typo; the column is an integer.
MAX_DELIVERIES_CAP = 1_000_000
# Shell completion offers at most this many names.
COMPLETION_LIMIT = 500


@dataclass(frozen=True)
class QueueSettings:
    queue: str
    max_deliveries: int | None  # None: unlimited
    paused: bool  # the whole queue
    paused_below_priority: int | None  # priorities below this are paused
    updated_at: datetime | None  # None: never configured (defaults)

    def is_paused(self, priority: int) -> bool:
        """Whether claim skips messages of this priority."""
        below = self.paused_below_priority
        return self.paused or (below is not None and priority < below)

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "max_deliveries": self.max_deliveries,
            "paused": self.paused,
            "paused_below_priority": self.paused_below_priority,
            "updated_at": self.updated_at.isoformat() if self.updated_at else None,
        }


@dataclass(frozen=True)
class ConfigResult:
    settings: QueueSettings
    # Waiting messages that had already had max_deliveries and went dead on the spot.
    moved_to_dead: int

    def to_json(self) -> dict[str, Any]:
        return {**self.settings.to_json(), "moved_to_dead": self.moved_to_dead}


@dataclass(frozen=True)
class QueueInfo:
    """One line of `pgq queues`: settings and depth by state."""

    settings: QueueSettings
    ready: int
    leased: int
    expired: int
    delayed: int
    dead: int

    def to_json(self) -> dict[str, Any]:
        data = self.settings.to_json()
        del data["updated_at"]
        return {
            **data,
            "ready": self.ready,
            "leased": self.leased,
            "expired": self.expired,
            "delayed": self.delayed,
            "dead": self.dead,
        }


def _settings(row: dict[str, Any]) -> QueueSettings:
    return QueueSettings(
        queue=row["queue"],
        max_deliveries=row["max_deliveries"],
        paused=bool(row["paused"]),
        paused_below_priority=row["paused_below_priority"],
        updated_at=row.get("updated_at"),
    )


def check_max_deliveries(value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"max deliveries must be a whole number >= 1, not {value!r}",
            hint="or --unlimited to remove the limit",
        )
    if value > MAX_DELIVERIES_CAP:
        raise InvalidInput(f"max deliveries must be at most {MAX_DELIVERIES_CAP}")
    return value


def check_below_priority(value: int | None) -> int | None:
    if value is None:
        return None
    check_priority(value)
    if value == MIN_PRIORITY:
        raise InvalidInput(
            f"--below-priority {MIN_PRIORITY} pauses nothing",
            hint=f"use {MIN_PRIORITY + 1}..{MAX_PRIORITY}, or no option to pause the queue",
        )
    return value


def get(q: Queue, queue: str) -> QueueSettings:
    """The queue's settings (defaults when it has none). Read-only."""
    check_queue(queue)
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q._q(queries.GET_QUEUE), {"queue": queue}).fetchone()
    if row is None:
        return QueueSettings(queue, None, False, None, None)
    return _settings(row)


def configure(q: Queue, queue: str, *, max_deliveries: int | None) -> ConfigResult:
    """Set (or with None remove) the queue's max deliveries.

    One transaction: upsert the setting, then move waiting (ready/delayed) messages that
    have already been delivered that many times to 'dead', so the limit holds for them
    too. Leased ones go dead when they come back.
    """
    check_queue(queue)
    check_max_deliveries(max_deliveries)
    params = {"queue": queue, "max_deliveries": max_deliveries}
    with translated(), q.conn.transaction(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q._q(queries.CONFIGURE_QUEUE), params).fetchone()
        assert row is not None
        moved = 0
        if max_deliveries is not None:
            moved = cur.execute(q._q(queries.SWEEP_OVER_LIMIT), params).rowcount
    return ConfigResult(_settings(row), moved)


@dataclass(frozen=True)
class DedupWindow:
    """How long a queue remembers a send's dedup key (sql/0005)."""

    queue: str
    seconds: float
    is_default: bool  # the queue has not set one: DEFAULT_DEDUP_WINDOW_S

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "dedup_window_s": self.seconds, "default": self.is_default}


def get_dedup_window(q: Queue, queue: str) -> DedupWindow:
    """The queue's dedup window (the default when it has none). Read-only."""
    check_queue(queue)
    with translated():
        row = q.conn.execute(q._q(queries.GET_DEDUP_WINDOW), {"queue": queue}).fetchone()
    if row is None or row[0] is None:
        return DedupWindow(queue, DEFAULT_DEDUP_WINDOW_S, True)
    return DedupWindow(queue, float(row[0]), False)


def set_dedup_window(q: Queue, queue: str, seconds: float) -> DedupWindow:
    """Set how long the queue remembers dedup keys. A shorter window applies at once to
    keys already stored (they expire by their age); purge deletes the expired ones."""
    check_queue(queue)
    check_seconds(seconds, "dedup window", allow_zero=False)
    params = {"queue": queue, "seconds": seconds}
    with translated():
        row = q.conn.execute(q._q(queries.CONFIGURE_DEDUP_WINDOW), params).fetchone()
    assert row is not None
    return DedupWindow(queue, float(row[0]), False)


def pause(q: Queue, queue: str, *, below_priority: int | None = None) -> QueueSettings:
    """Pause the queue (claim yields nothing), or only priorities below `below_priority`.

    Replaces any earlier pause of the queue. Messages already leased are not affected.
    """
    check_queue(queue)
    check_below_priority(below_priority)
    params = {"queue": queue, "paused": below_priority is None, "below": below_priority}
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q._q(queries.PAUSE_QUEUE), params).fetchone()
    assert row is not None
    return _settings(row)


def resume(q: Queue, queue: str) -> QueueSettings:
    """Lift any pause of the queue and wake its waiting claimers (`claim --wait`).

    Resuming a queue that is not paused is not an error: the result is the same.
    """
    check_queue(queue)
    params = {"queue": queue, "channel": q.notify_channel}
    with translated(), q.conn.transaction(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q._q(queries.RESUME_QUEUE), params).fetchone()
        cur.execute(q._q(queries.NOTIFY_READY), params)
    if row is None:
        return QueueSettings(queue, None, False, None, None)
    return _settings(row)


def list_queues(q: Queue) -> list[QueueInfo]:
    """Every queue with settings or messages: its settings and depth by state. Read-only.

    Counting depth reads every message row (like `stats`).
    """
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q._q(queries.LIST_QUEUES)).fetchall()
    return [
        QueueInfo(
            settings=_settings({**r, "updated_at": None}),
            ready=int(r["ready"]),
            leased=int(r["leased"]),
            expired=int(r["expired"]),
            delayed=int(r["delayed"]),
            dead=int(r["dead"]),
        )
        for r in rows
    ]


def queue_names(q: Queue, prefix: str = "", limit: int = COMPLETION_LIMIT) -> list[str]:
    """Names of queues that have messages or settings, starting with `prefix`. Read-only.

    Does not count anything: one index probe per distinct queue (queries.QUEUE_NAMES).
    """
    params = {"prefix": prefix, "limit": limit}
    with translated():
        rows = q.conn.execute(q._q(queries.QUEUE_NAMES), params).fetchall()
    return [str(r[0]) for r in rows]
