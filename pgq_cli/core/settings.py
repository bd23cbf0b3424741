"""Per-queue settings as the library returns them: max deliveries (dead letters), pause,
and the dedup window (`DedupWindow`, sql/0005).

Frozen dataclasses only; `Queue.settings`, `configure`, `pause`, `resume` and `queues`
read and write them. Never prints, never imports psycopg, Typer or rich.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class QueueSettings:
    queue: str
    max_deliveries: int | None  # None: unlimited
    paused: bool  # the whole queue
    paused_below_priority: int | None  # priorities below this are paused
    updated_at: datetime | None  # None: never configured (defaults)

    @classmethod
    def defaults(cls, queue: str) -> QueueSettings:
        """The settings of a queue that was never configured: no limit, not paused."""
        return cls(queue, None, False, None, None)

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


def settings_from_row(row: dict[str, Any]) -> QueueSettings:
    """A `<schema>.queues` row (as a dict) as settings."""
    return QueueSettings(
        queue=row["queue"],
        max_deliveries=row["max_deliveries"],
        paused=bool(row["paused"]),
        paused_below_priority=row["paused_below_priority"],
        updated_at=row.get("updated_at"),
    )


@dataclass(frozen=True)
class DedupWindow:
    """How long a queue remembers a send's dedup key (`Queue.dedup_window`)."""

    queue: str
    seconds: float
    is_default: bool  # the queue has not set one: checks.DEFAULT_DEDUP_WINDOW_S

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "dedup_window_s": self.seconds, "default": self.is_default}
