"""`pgq stats --estimate`: the stats of a table of any size, for a bounded cost.

Library code: returns `QueueStats`, raises the `errors.PgqError` family; never prints,
never imports Typer or rich. The SQL is in `ops_queries` (ESTIMATE_*).

`estimate()` reads at most about `EXACT_READY_CAP` rows per group or class
plus a block sample of about `SAMPLE_PAGES` pages, whatever the table's size:
- ready rows are counted exactly up to `EXACT_READY_CAP` per queue and priority (an
  index-only walk of messages_ready_idx), and above that estimated from the sample (the
  whole table when it is smaller than that: then the "estimate" is the count);
- the other rows fall in three classes, each with a small partial index: due (expired
  leases, delayed messages now ready), waiting (live leases, future delayed) and dead.
  A class of at most `EXACT_READY_CAP` rows in all is counted exactly; a larger one (a
  million messages in flight) is estimated from the same sample. Expired leases and dead
  letters, what alerts watch, are usually few and so usually exact;
- the oldest ready age is exact (the head of each priority's line) unless the due class
  is sampled; max read_ct is exact where nothing was sampled, else a lower bound.
`estimate()` also names the groups with an estimated number (none on a small table).
Measured in bench/stats_10m.py.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core.checks import check_queue
from ..core.states import EFFECTIVE_STATES
from . import queries as ops_queries

# The CLI shows EXACT_READY_CAP in `pgq stats --help`: what needs psycopg is imported by
# the functions that run queries.
if TYPE_CHECKING:
    from ..core.queue import PriorityStats, Queue, QueueStats

# Ready rows counted exactly per queue and priority, and other rows per class, before
# estimating.
EXACT_READY_CAP = 10_000
# About this many pages of the table are sampled to estimate larger counts.
SAMPLE_PAGES = 2_000

Group = tuple[str, int]  # (queue, priority)


def estimate(q: Queue, *, queue: str | None = None) -> tuple[QueueStats, frozenset[Group]]:
    """Estimated stats, and the groups with an estimated number in them."""
    if queue is not None:
        check_queue(queue)
    return _estimate(q, queue)


def _pause_lookup(q: Queue) -> Callable[[str, int], bool]:
    from ..core.translate import translated

    with translated():
        rows = q.conn.execute(q.compose(ops_queries.QUEUE_PAUSES)).fetchall()
    settings = {str(r[0]): (bool(r[1]), r[2]) for r in rows}

    def paused(queue: str, priority: int) -> bool:
        whole, below = settings.get(queue, (False, None))
        return whole or (below is not None and priority < below)

    return paused


# Rows not stored as ready, by class (see ops_queries.ESTIMATE_CLASS_SIZES): the class of
# a (stored state, vt passed) pair from the sample, and the state `stats` shows for it.
_CLASS_OF = {
    ("leased", True): ("due", "expired"),
    ("delayed", True): ("due", "ready"),
    ("leased", False): ("waiting", "leased"),
    ("delayed", False): ("waiting", "delayed"),
    ("dead", True): ("dead", "dead"),
    ("dead", False): ("dead", "dead"),
}
CLASSES = ("due", "waiting", "dead")


def _estimate(q: Queue, queue: str | None) -> tuple[QueueStats, frozenset[Group]]:
    """The sample comes first and decides what is counted: a ready group or a class of
    other rows that it puts above twice the cap is taken from it, without a count (at
    10M rows, counting even 10,000 rows of each of 40 groups meant 400,000 heap reads
    scattered over the table); what it puts below is counted, exactly up to the cap.
    """
    from psycopg.rows import dict_row

    from ..core.queue import QueueStats
    from ..core.translate import translated

    params: dict[str, Any] = {"queue": queue, "cap": EXACT_READY_CAP,
                              "table": f"{q.schema}.messages", "seed": 1}
    groups: dict[Group, _Counts] = {}
    with translated(), q.conn.transaction(), q.conn.cursor(row_factory=dict_row) as cur:
        # Many cheap index probes whose row estimates look large: JIT compiling them
        # (PostgreSQL's default above a cost of 100,000) took 200 ms, more than running them.
        cur.execute("SET LOCAL jit = off")
        sample = _sample(cur, q, params)
        exact = _count_small_classes(cur, q, params, sample, groups)
        heads = cur.execute(q.compose(ops_queries.ESTIMATE_READY_HEADS), params).fetchall()
        for r in heads:
            _group(groups, (r["queue"], int(r["priority"]))).ages.append(float(r["age_s"]))
        keys = [(str(r["queue"]), int(r["priority"])) for r in heads]
        counted = _count_small_groups(cur, q, params, keys, sample, groups)
    sampled: set[Group] = set()
    for r in heads:
        key = (r["queue"], int(r["priority"]))
        n = counted.get(key)
        if n is not None and n <= EXACT_READY_CAP:
            groups[key].ready += n
            continue
        # Over the cap: the sample's number, but never less than what was counted.
        groups[key].ready += max(n or 0, sample.ready.get(key, 0))
        groups[key].max_read_ct = max(groups[key].max_read_ct,
                                      sample.ready_read_ct.get(key, 0))
        sampled.add(key)
    if not all(exact.values()):
        for (key, cls, shown), n in sample.other.items():
            if not exact[cls]:
                _group(groups, key).add(shown, n, sample.other_read_ct[key],
                                        sample.other_age.get(key))
        # A sampled class makes a zero in it an estimate too: every group is flagged.
        sampled |= set(groups)
    paused = _pause_lookup(q)
    rows = [g.stats(key, paused(*key)) for key, g in groups.items()]
    rows.sort(key=lambda r: (r.queue, -r.priority))
    return QueueStats(tuple(rows)), frozenset(sampled)


@dataclass
class _Counts:
    """One group's numbers as they are put together."""

    ready: int = 0
    leased: int = 0
    expired: int = 0
    delayed: int = 0
    dead: int = 0
    ages: list[float] = field(default_factory=list)
    max_read_ct: int = 0

    def add(self, state: str, n: int, read_ct: int, ready_age: float | None) -> None:
        setattr(self, state, getattr(self, state) + n)
        self.max_read_ct = max(self.max_read_ct, read_ct)
        if state == "ready" and ready_age is not None:
            self.ages.append(ready_age)

    def stats(self, key: Group, paused: bool) -> PriorityStats:
        from ..core.queue import PriorityStats

        return PriorityStats(
            queue=key[0], priority=key[1], ready=self.ready, leased=self.leased,
            expired=self.expired, delayed=self.delayed, dead=self.dead,
            oldest_ready_age=max(self.ages) if self.ages else None,
            max_read_ct=self.max_read_ct, paused=paused,
        )


def _group(groups: dict[Group, _Counts], key: Group) -> _Counts:
    return groups.setdefault(key, _Counts())


def _count_small_classes(
    cur: Any, q: Queue, params: dict[str, Any], sample: _Sample, groups: dict[Group, _Counts]
) -> dict[str, bool]:
    """Count exactly the classes of non-ready rows within the cap; say which those were."""
    limits = {f"{c}_limit": 0 if sample.classes.get(c, 0) > 2 * EXACT_READY_CAP
              else EXACT_READY_CAP + 1 for c in CLASSES}
    size = cur.execute(q.compose(ops_queries.ESTIMATE_CLASS_SIZES), {**params, **limits}).fetchone()
    exact = {c: limits[f"{c}_limit"] > 0 and int(size[c]) <= EXACT_READY_CAP for c in CLASSES}
    if any(exact.values()):
        for r in cur.execute(q.compose(ops_queries.ESTIMATE_NOT_READY), {**params, **exact}):
            g = _group(groups, (r["queue"], int(r["priority"])))
            age = r["oldest_ready_age"]
            for state in EFFECTIVE_STATES:
                g.add(state, int(r[state]), int(r["max_read_ct"]),
                      None if age is None else float(age))
    return exact


def _count_small_groups(
    cur: Any,
    q: Queue,
    params: dict[str, Any],
    keys: list[Group],
    sample: _Sample,
    groups: dict[Group, _Counts],
) -> dict[Group, int]:
    """Stored-ready rows of the groups the sample puts within twice the cap, counted up
    to the cap + 1 (with their highest read_ct when within the cap)."""
    small = [k for k in keys if sample.ready.get(k, 0) <= 2 * EXACT_READY_CAP]
    if not small:
        return {}
    counted: dict[Group, int] = {}
    rows = cur.execute(
        q.compose(ops_queries.ESTIMATE_READY_COUNTS),
        {**params, "queues": [k[0] for k in small], "priorities": [k[1] for k in small]},
    )
    for r in rows:
        key = (r["queue"], int(r["priority"]))
        counted[key] = int(r["counted"])
        groups[key].max_read_ct = max(groups[key].max_read_ct, int(r["max_read_ct"]))
    return counted


@dataclass
class _Sample:
    """A block sample of the table, scaled up to the whole table."""

    ready: dict[tuple[str, int], int] = field(default_factory=dict)  # stored as ready
    ready_read_ct: dict[tuple[str, int], int] = field(default_factory=dict)
    classes: dict[str, int] = field(default_factory=dict)  # due / waiting / dead: totals
    # (group, class, state stats shows) -> rows, for the rows not stored as ready
    other: dict[tuple[tuple[str, int], str, str], int] = field(default_factory=dict)
    other_read_ct: dict[tuple[str, int], int] = field(default_factory=dict)
    other_age: dict[tuple[str, int], float] = field(default_factory=dict)


def _sample(cur: Any, q: Queue, params: dict[str, Any]) -> _Sample:
    """TABLESAMPLE SYSTEM of about SAMPLE_PAGES pages (all of a smaller table)."""
    row = cur.execute(q.compose(ops_queries.TABLE_PAGES), params).fetchone()
    pages = max(int(next(iter(row.values()))) if row else 1, 1)
    percent = min(100.0, 100.0 * SAMPLE_PAGES / pages)
    out = _Sample()
    for r in cur.execute(q.compose(ops_queries.ESTIMATE_SAMPLE), {**params, "percent": percent}):
        key = (str(r["queue"]), int(r["priority"]))
        scaled = round(int(r["sampled"]) * 100.0 / percent)
        read_ct = int(r["max_read_ct"])
        if r["state"] == "ready":
            out.ready[key] = out.ready.get(key, 0) + scaled
            out.ready_read_ct[key] = max(out.ready_read_ct.get(key, 0), read_ct)
            continue
        cls, shown = _CLASS_OF[(str(r["state"]), bool(r["due"]))]
        out.classes[cls] = out.classes.get(cls, 0) + scaled
        out.other[(key, cls, shown)] = out.other.get((key, cls, shown), 0) + scaled
        out.other_read_ct[key] = max(out.other_read_ct.get(key, 0), read_ct)
        if shown == "ready" and r["oldest_age_s"] is not None:
            out.other_age[key] = max(out.other_age.get(key, 0.0), float(r["oldest_age_s"]))
    return out
