"""Fair claiming across keys (tenants) as the library returns it: settings, key weights,
depth per key.

Frozen dataclasses only (and the one function that folds per-key depths into a bounded
breakdown); `Queue.fairness`, `configure_fairness`, `set_key_weight`, `depth_by_key` and
`key_breakdown` read and write them, and `Queue.claim` sends a fair queue's claims to the
migration's `fair_claim` function. docs/fairness.md explains the design. Never prints,
never imports psycopg, Typer or rich.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FairnessSettings:
    queue: str
    fair: bool
    max_inflight_per_key: int | None  # None: no cap

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "fair": self.fair,
            "max_inflight_per_key": self.max_inflight_per_key,
        }


@dataclass(frozen=True)
class KeyWeight:
    queue: str
    key: str | None  # None: messages sent without a key
    weight: float
    inflight: int

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "key": self.key,
            "weight": self.weight,
            "inflight": self.inflight,
        }


@dataclass(frozen=True)
class KeyDepth:
    """One line of `pgq stats --by-key`."""

    key: str | None  # None: messages sent without a key
    ready: int
    leased: int
    delayed: int

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "ready": self.ready,
            "leased": self.leased,
            "delayed": self.delayed,
        }


@dataclass(frozen=True)
class KeyBreakdown:
    """A fair queue's depth by key for metrics: the top keys, and the rest summed."""

    queue: str
    top: tuple[KeyDepth, ...]
    other: KeyDepth | None  # the keys beyond the top, summed (key None); None: no rest


def breakdown(rows: Iterable[tuple[str, KeyDepth]], top: int) -> list[KeyBreakdown]:
    """(queue, depth of one key) rows folded into one KeyBreakdown per queue: its `top`
    keys by ready depth, and the others summed."""
    per_queue: dict[str, list[KeyDepth]] = {}
    for queue, depth in rows:
        per_queue.setdefault(queue, []).append(depth)
    out = []
    for name in sorted(per_queue):
        keys = sorted(per_queue[name], key=lambda d: (-d.ready, -d.leased, d.key or ""))
        rest = keys[top:]
        other = None
        if rest:
            other = KeyDepth(
                None,
                sum(d.ready for d in rest),
                sum(d.leased for d in rest),
                sum(d.delayed for d in rest),
            )
        out.append(KeyBreakdown(name, tuple(keys[:top]), other))
    return out
