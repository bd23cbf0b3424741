"""Fair claiming across keys (tenants): the settings, key weights and per-key counts.

Library code: takes a `Queue` (for its connection and schema), returns frozen dataclasses,
raises the `errors.PgqError` family. Never prints, never imports Typer or rich.

The claim itself is `Queue.claim`, which sends a fair queue's claims to the migration's
`fair_claim` function; docs/fairness.md explains the design. The checks of a key, a
weight, a cap and a top-N are in `checks`, which the CLI runs before connecting.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from . import fair_queries
from .checks import (
    DEFAULT_TOP_KEYS,
    check_key,
    check_max_inflight,
    check_queue,
    check_top_keys,
    check_weight,
)
from .queue import Queue
from .translate import translated


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


def get(q: Queue, queue: str) -> FairnessSettings:
    """The queue's fairness settings (off, no cap when it has none). Read-only."""
    check_queue(queue)
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q.compose(fair_queries.GET_FAIRNESS), {"queue": queue}).fetchone()
    if row is None:
        return FairnessSettings(queue, False, None)
    return FairnessSettings(row["queue"], bool(row["fair"]), row["max_inflight_per_key"])


def configure(
    q: Queue,
    queue: str,
    *,
    fair: bool | None = None,
    max_inflight_per_key: int | None = None,
    set_max_inflight: bool = False,
) -> FairnessSettings:
    """Turn fair claiming on or off (`fair`, None: unchanged) and/or set the cap on live
    leases per key (`max_inflight_per_key` when `set_max_inflight`; None removes it).

    One transaction. Turning fairness on registers the keys of the queue's waiting ready
    work (reads those rows once). Leases taken before it was on are not counted toward the
    cap; they end as usual.
    """
    check_queue(queue)
    check_max_inflight(max_inflight_per_key)
    params = {
        "queue": queue,
        "fair": fair,
        "set_fair": fair is not None,
        "cap": max_inflight_per_key,
        "set_cap": set_max_inflight,
    }
    with translated(), q.conn.transaction(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q.compose(fair_queries.CONFIGURE_FAIRNESS), params).fetchone()
        assert row is not None
        if fair:
            cur.execute(q.compose(fair_queries.FORGET_HEADS), params)
            cur.execute(q.compose(fair_queries.REGISTER_READY_KEYS), params)
    q.forget_fairness(queue)
    return FairnessSettings(row["queue"], bool(row["fair"]), row["max_inflight_per_key"])


def set_weight(q: Queue, queue: str, key: str | None, weight: float) -> KeyWeight:
    """Set a key's weight in a queue (None: the messages sent without a key).

    While several keys have work at the same priority, each gets claims in proportion to
    its weight. Takes effect at the next claim.
    """
    check_queue(queue)
    if key is not None:
        check_key(key)
    params = {"queue": queue, "key": key or "", "weight": check_weight(weight)}
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q.compose(fair_queries.SET_KEY_WEIGHT), params).fetchone()
    assert row is not None
    return KeyWeight(row["queue"], row["key"] or None, float(row["weight"]), int(row["inflight"]))


def depth_by_key(q: Queue, queue: str, *, top: int = DEFAULT_TOP_KEYS) -> list[KeyDepth]:
    """Ready, leased and delayed messages per key of `queue`, the `top` keys by ready depth.

    Read-only; exact, so it reads every live row of the queue once.
    """
    check_queue(queue)
    check_top_keys(top)
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(
            q.compose(fair_queries.STATS_BY_KEY), {"queue": queue, "limit": top}
        ).fetchall()
    return [
        KeyDepth(r["key"], int(r["ready"]), int(r["leased"]), int(r["delayed"])) for r in rows
    ]


def key_breakdown(
    q: Queue, *, queue: str | None = None, top: int = DEFAULT_TOP_KEYS
) -> list[KeyBreakdown]:
    """For every fair queue (or `queue`): the `top` keys by ready depth, and the sum of the
    others, so that a metric per key has a bounded number of series. Read-only; one pass
    over the fair queues' live rows."""
    if queue is not None:
        check_queue(queue)
    check_top_keys(top)
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(q.compose(fair_queries.FAIR_QUEUES_BY_KEY), {"queue": queue}).fetchall()
    per_queue: dict[str, list[KeyDepth]] = {}
    for r in rows:
        depth = KeyDepth(r["key"], int(r["ready"]), int(r["leased"]), int(r["delayed"]))
        per_queue.setdefault(r["queue"], []).append(depth)
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
