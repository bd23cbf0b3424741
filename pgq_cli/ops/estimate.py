"""`pgq stats --estimate`: the stats of a table of any size, for a bounded cost.

Library code: returns `QueueStats`, raises the `errors.PgqError` family; never prints,
never imports Typer or rich. The SQL is in `ops_queries` (ESTIMATE_*). docs/design.md
("Stats and --estimate") explains the sample and the bound.

`estimate()` reads a sample of about `SAMPLE_PAGES` pages (one from each of that many
runs of adjacent pages, each standing for its run: unbiased, also over pages of dead
tuples) and counts through indexes what the sample says is small, whatever the table's
size:
- ready rows: exactly up to `EXACT_READY_CAP` per queue and priority (an index-only walk
  of messages_ready_idx), above that from the sample;
- the other rows fall in three classes, each with a small partial index: due (expired
  leases, delayed messages now ready), waiting (live leases, future delayed) and dead.
  A class of at most `EXACT_READY_CAP` rows is counted exactly; in a larger one, each
  queue's share (a slice) of at most `EXACT_READY_CAP` rows is, smallest first within
  `SLICE_ROWS_BUDGET`; the rest comes from the sample;
- the oldest ready age is exact (the head of each priority's line) unless the due class
  is sampled; max read_ct is exact where nothing was sampled, else a lower bound.
When the table has no more than `SAMPLE_PAGES` pages the sample is all of it, and every
number is a count. Otherwise `estimate()` also returns, per (queue, priority), each
number taken from the sample with its error bound (`BOUND_STANDARD_ERRORS` standard
errors: about 95% of estimates fall within it). Measured in bench/estimate_10m.py.
"""

from __future__ import annotations

import itertools
import math
import random
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

# Ready rows counted exactly per queue and priority, and other rows per class or per
# queue's share of a class, before estimating.
EXACT_READY_CAP = 10_000
# In a class too large to count, its share in each queue (a slice) is counted while the
# sample puts the slices counted, smallest first, within this many rows in all.
SLICE_ROWS_BUDGET = 2 * EXACT_READY_CAP
# About this many pages of the table are sampled to estimate larger counts: one from each
# of this many strata of adjacent pages (an even number: the strata are paired to
# estimate the error).
SAMPLE_PAGES = 2_000
# Which pages are drawn: fixed, so that two runs on an unchanged table agree.
SAMPLE_SEED = 1
# The stated error bound of an estimated number is this many standard errors: about 95%
# of estimates fall within it.
BOUND_STANDARD_ERRORS = 2

Group = tuple[str, int]  # (queue, priority)
# With --estimate: per group, its estimated numbers (state -> the error bound, +/- rows).
Estimated = dict[Group, dict[str, int]]


def estimate(q: Queue, *, queue: str | None = None) -> tuple[QueueStats, Estimated]:
    """Estimated stats, and per group the numbers that are estimates, with their bound."""
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
# The states each class shows (a sampled class makes these numbers estimates).
_STATES_OF = {"due": ("expired", "ready"), "waiting": ("leased", "delayed"), "dead": ("dead",)}
# The index a class is found through (ops_queries.ESTIMATE_NOT_READY_QUEUES).
_KIND_OF = {"due": "in_flight", "waiting": "in_flight", "dead": "dead"}


@dataclass
class _Number:
    """A sampled number: the estimate and the variance of the estimate."""

    value: float = 0.0
    variance: float = 0.0

    def add(self, value: float, variance: float) -> None:
        self.value += value
        self.variance += variance


def _estimate(q: Queue, queue: str | None) -> tuple[QueueStats, Estimated]:
    """The sample comes first and decides what is counted: a ready group, a class of other
    rows or a queue's share of a class that it puts above twice the cap is taken from it,
    without a count (at 10M rows, counting even 10,000 rows of each of 40 groups meant
    400,000 heap reads scattered over the table); what it puts below is counted, exactly
    up to the cap.
    """
    from psycopg.rows import dict_row

    from ..core.queue import QueueStats
    from ..core.translate import translated

    params: dict[str, Any] = {"queue": queue, "cap": EXACT_READY_CAP,
                              "table": f"{q.schema}.messages"}
    groups: dict[Group, _Counts] = {}
    with translated(), q.conn.transaction(), q.conn.cursor(row_factory=dict_row) as cur:
        # Many cheap index probes whose row estimates look large: JIT compiling them
        # (PostgreSQL's default above a cost of 100,000) took 200 ms, more than running them.
        cur.execute("SET LOCAL jit = off")
        sample = _sample(cur, q, params)
        exact = _count_small_classes(cur, q, params, sample, groups)
        exact_slices = _count_small_slices(cur, q, params, sample, exact, groups)
        heads = cur.execute(q.compose(ops_queries.ESTIMATE_READY_HEADS), params).fetchall()
        for r in heads:
            _group(groups, (r["queue"], int(r["priority"]))).ages.append(float(r["age_s"]))
        keys = [(str(r["queue"]), int(r["priority"])) for r in heads]
        counted = _count_small_groups(cur, q, params, keys, sample, groups)
    estimated = _take_from_sample(groups, keys, counted, sample, exact, exact_slices)
    paused = _pause_lookup(q)
    rows = [g.stats(key, paused(*key)) for key, g in groups.items()]
    rows.sort(key=lambda r: (r.queue, -r.priority))
    return QueueStats(tuple(rows)), estimated


def _take_from_sample(
    groups: dict[Group, _Counts],
    keys: list[Group],
    counted: dict[Group, int],
    sample: _Sample,
    exact: dict[str, bool],
    exact_slices: set[tuple[str, str]],
) -> Estimated:
    """Fill in what was not counted from the sample; return the estimated numbers and
    their bounds (none when the sample was the whole table: its numbers are counts)."""
    # (group, state) -> the variance of that number's sampled part
    sampled: dict[tuple[Group, str], float] = {}
    for key in keys:
        n = counted.get(key)
        if n is not None and n <= EXACT_READY_CAP:
            groups[key].ready += n
            continue
        # Over the cap: the sample's number, but never less than what was counted.
        number = sample.ready.get(key, _Number())
        groups[key].ready += max(n or 0, round(number.value))
        groups[key].max_read_ct = max(groups[key].max_read_ct,
                                      sample.ready_read_ct.get(key, 0))
        sampled[(key, "ready")] = sampled.get((key, "ready"), 0.0) + number.variance
    for (key, cls, shown), number in sample.other.items():
        if exact[cls] or (key[0], cls) in exact_slices:
            continue
        _group(groups, key).add(shown, round(number.value), sample.other_read_ct[key],
                                sample.other_age.get(key))
        sampled[(key, shown)] = sampled.get((key, shown), 0.0) + number.variance
    # A group the sample did not see in a sampled slice has an estimated 0 there.
    for cls, key in itertools.product(CLASSES, groups):
        if not exact[cls] and (key[0], cls) not in exact_slices:
            for shown in _STATES_OF[cls]:
                sampled.setdefault((key, shown), 0.0)
    estimated: Estimated = {}
    if not sample.census:
        for (key, state), variance in sampled.items():
            estimated.setdefault(key, {})[state] = _bound(variance, sample.block_weight)
    return estimated


def _bound(variance: float, block_weight: float) -> int:
    """The stated error bound of a sampled number: BOUND_STANDARD_ERRORS standard errors,
    and never less than one drawn block's weight (a number the sample saw in no block,
    or in one, has a variance estimate of about 0 that says nothing)."""
    return math.ceil(max(BOUND_STANDARD_ERRORS * math.sqrt(variance), block_weight))


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

    def add_counts(self, r: dict[str, Any]) -> None:
        """Add a row of exact counts (ops_queries.STATS_COUNTS)."""
        age = r["oldest_ready_age"]
        for state in EFFECTIVE_STATES:
            self.add(state, int(r[state]), int(r["max_read_ct"]),
                     None if age is None else float(age))

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
    limits = {f"{c}_limit": 0 if sample.classes.get(c, 0.0) > 2 * EXACT_READY_CAP
              else EXACT_READY_CAP + 1 for c in CLASSES}
    size = cur.execute(q.compose(ops_queries.ESTIMATE_CLASS_SIZES), {**params, **limits}).fetchone()
    exact = {c: limits[f"{c}_limit"] > 0 and int(size[c]) <= EXACT_READY_CAP for c in CLASSES}
    if any(exact.values()):
        for r in cur.execute(q.compose(ops_queries.ESTIMATE_NOT_READY), {**params, **exact}):
            _group(groups, (r["queue"], int(r["priority"]))).add_counts(r)
    return exact


def _count_small_slices(
    cur: Any,
    q: Queue,
    params: dict[str, Any],
    sample: _Sample,
    exact: dict[str, bool],
    groups: dict[Group, _Counts],
) -> set[tuple[str, str]]:
    """In a class too large to count, each queue's share (a slice), smallest first within
    SLICE_ROWS_BUDGET, is counted up to the cap + 1: a slice within the cap is exact,
    every (priority, state) in it, also those the sample missed. Says which were."""
    if all(exact.values()) or sample.census:
        return set()
    kinds: dict[str, list[str]] = {}
    for r in cur.execute(q.compose(ops_queries.ESTIMATE_NOT_READY_QUEUES), params):
        kinds.setdefault(str(r["kind"]), []).append(str(r["queue"]))
    # Smallest first, while what the sample puts in them adds up to SLICE_ROWS_BUDGET:
    # each row is a heap read (priority and state are not in the class's index).
    by_size = sorted(
        ((sample.slices.get((name, cls), 0.0), name, cls) for cls in CLASSES if not exact[cls]
         for name in kinds.get(_KIND_OF[cls], [])),
    )
    candidates: list[tuple[str, str]] = []
    planned = 0.0
    for size, name, cls in by_size:
        planned += size
        if planned > SLICE_ROWS_BUDGET:
            break
        candidates.append((name, cls))
    if not candidates:
        return set()
    rows = cur.execute(
        q.compose(ops_queries.ESTIMATE_SLICES),
        {**params, "queues": [c[0] for c in candidates], "classes": [c[1] for c in candidates]},
    ).fetchall()
    seen = {(str(r["queue"]), str(r["cls"])) for r in rows}
    done = {(str(r["queue"]), str(r["cls"])) for r in rows
            if int(r["slice_rows"]) <= EXACT_READY_CAP}
    for r in rows:
        if (str(r["queue"]), str(r["cls"])) in done:
            _group(groups, (r["queue"], int(r["priority"]))).add_counts(r)
    # A candidate slice with no row at all has emptied since the queues were listed: 0.
    return done | (set(candidates) - seen)


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
    small = [k for k in keys if sample.ready.get(k, _Number()).value <= 2 * EXACT_READY_CAP]
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
    """A stratified block sample of the table, scaled up to the whole table."""

    # The sample is the whole table: its numbers are counts.
    census: bool = False
    # The mean number of pages a drawn page stands for.
    block_weight: float = 1.0
    ready: dict[Group, _Number] = field(default_factory=dict)  # stored as ready
    ready_read_ct: dict[Group, int] = field(default_factory=dict)
    classes: dict[str, float] = field(default_factory=dict)  # due / waiting / dead: totals
    slices: dict[tuple[str, str], float] = field(default_factory=dict)  # (queue, class)
    # (group, class, state stats shows) -> rows, for the rows not stored as ready
    other: dict[tuple[Group, str, str], _Number] = field(default_factory=dict)
    other_read_ct: dict[Group, int] = field(default_factory=dict)
    other_age: dict[Group, float] = field(default_factory=dict)


def draw_pages(pages: int, wanted: int, seed: int) -> tuple[list[int], list[float]]:
    """One page from each of `wanted` strata of adjacent pages (all pages when there are
    no more than that), and the size of its stratum (its weight in the estimate)."""
    if pages <= wanted:
        return list(range(pages)), [1.0] * pages
    rng = random.Random(seed)
    edges = [i * pages // wanted for i in range(wanted + 1)]
    blocks = [lo + rng.randrange(hi - lo) for lo, hi in itertools.pairwise(edges)]
    return blocks, [float(hi - lo) for lo, hi in itertools.pairwise(edges)]


def _sample(cur: Any, q: Queue, params: dict[str, Any]) -> _Sample:
    """About SAMPLE_PAGES pages, one per stratum (all of a smaller table)."""
    row = cur.execute(q.compose(ops_queries.TABLE_PAGES), params).fetchone()
    pages = max(int(next(iter(row.values()))) if row else 1, 1)
    blocks, weights = draw_pages(pages, SAMPLE_PAGES, SAMPLE_SEED)
    out = _Sample(census=len(blocks) == pages, block_weight=pages / len(blocks))
    query = q.compose(ops_queries.ESTIMATE_SAMPLE)
    for r in cur.execute(query, {**params, "blocks": blocks, "weights": weights}):
        key = (str(r["queue"]), int(r["priority"]))
        value, variance = float(r["estimated"]), float(r["variance"])
        read_ct = int(r["max_read_ct"])
        if r["state"] == "ready":
            out.ready.setdefault(key, _Number()).add(value, variance)
            out.ready_read_ct[key] = max(out.ready_read_ct.get(key, 0), read_ct)
            continue
        cls, shown = _CLASS_OF[(str(r["state"]), bool(r["due"]))]
        out.classes[cls] = out.classes.get(cls, 0.0) + value
        out.slices[(key[0], cls)] = out.slices.get((key[0], cls), 0.0) + value
        out.other.setdefault((key, cls, shown), _Number()).add(value, variance)
        out.other_read_ct[key] = max(out.other_read_ct.get(key, 0), read_ct)
        if shown == "ready" and r["oldest_age_s"] is not None:
            out.other_age[key] = max(out.other_age.get(key, 0.0), float(r["oldest_age_s"]))
    return out
