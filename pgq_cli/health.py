"""Health metrics for cron and alerting: collection (exact or estimated) and thresholds.

Library code: returns frozen dataclasses, raises the `errors.PgqError` family; never
prints, never imports Typer or rich.

Collection. `collect(exact)` is `Queue.stats()`: one scan of the messages table, exact,
and its cost grows with the table (see bench/stats_10m.py for the measured numbers).
`collect(estimate=True)` reads at most about `EXACT_READY_CAP` rows per group or class
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
`Snapshot.sampled` names the groups with an estimated number, and `Snapshot.estimated`
says whether there is any (on a small table nothing is estimated and it is False).

Thresholds. `--fail-if 'METRIC OP NUMBER'`, e.g. `oldest_ready_age>300`,
`leased_expired>0`, `ready>=1e6`. Metrics are summed (counts) or maxed (ages, read_ct)
over the queues and priorities collected; see `METRICS`.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row

from . import ops_queries
from .durations import parse_duration
from .errors import InvalidInput, translated
from .queue import PriorityStats, Queue, QueueStats, check_queue

# Ready rows counted exactly per queue and priority before estimating.
EXACT_READY_CAP = 10_000
# About this many pages of the table are sampled to estimate larger ready counts.
SAMPLE_PAGES = 2_000


@dataclass(frozen=True)
class Snapshot:
    """What one collection saw."""

    stats: QueueStats
    # Some ready count is a sampled estimate (then `sampled` names those groups).
    estimated: bool
    collected_at: float  # unix time
    duration_s: float
    # (queue, priority) of the groups whose ready count was estimated from a sample.
    sampled: frozenset[tuple[str, int]] = frozenset()


def collect(q: Queue, *, queue: str | None = None, estimate: bool = False) -> Snapshot:
    """Counts per queue/priority/state, oldest ready age, max read_ct. Read-only."""
    if queue is not None:
        check_queue(queue)
    started = time.monotonic()
    if estimate:
        stats, sampled = _estimate(q, queue)
    else:
        stats, sampled = q.stats(queue=queue), frozenset()
    return Snapshot(stats, bool(sampled), time.time(), time.monotonic() - started, sampled)


def _pause_lookup(q: Queue) -> Callable[[str, int], bool]:
    with translated():
        rows = q.conn.execute(q._q(ops_queries.QUEUE_PAUSES)).fetchall()
    settings = {str(r[0]): (bool(r[1]), r[2]) for r in rows}

    def paused(queue: str, priority: int) -> bool:
        whole, below = settings.get(queue, (False, None))
        return whole or (below is not None and priority < below)

    return paused


def estimate_stats(q: Queue, *, queue: str | None = None) -> QueueStats:
    """`Queue.stats()` without reading the ready backlog (see the module docstring)."""
    if queue is not None:
        check_queue(queue)
    return _estimate(q, queue)[0]


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


def _estimate(q: Queue, queue: str | None) -> tuple[QueueStats, frozenset[tuple[str, int]]]:
    """The estimated stats and the groups with a sampled number in them."""
    params: dict[str, Any] = {
        "queue": queue,
        "cap": EXACT_READY_CAP,
        "table": f"{q.schema}.messages",
        "seed": 1,
    }
    groups: dict[tuple[str, int], dict[str, Any]] = {}

    def group(key: tuple[str, int]) -> dict[str, Any]:
        return groups.setdefault(
            key,
            {"ready": 0, "leased": 0, "expired": 0, "delayed": 0, "dead": 0,
             "ages": [], "max_read_ct": 0},
        )

    with translated(), q.conn.transaction(), q.conn.cursor(row_factory=dict_row) as cur:
        # These statements are many cheap index probes whose row estimates look large:
        # JIT compiling them (PostgreSQL's default above a cost of 100,000) took 200 ms,
        # more than running them.
        cur.execute("SET LOCAL jit = off")
        sizes = cur.execute(q._q(ops_queries.ESTIMATE_CLASS_SIZES), params).fetchone()
        assert sizes is not None
        exact = {c: int(sizes[c]) <= EXACT_READY_CAP for c in CLASSES}
        if any(exact.values()):
            for r in cur.execute(q._q(ops_queries.ESTIMATE_NOT_READY), {**params, **exact}):
                g = group((r["queue"], int(r["priority"])))
                for state in ("ready", "leased", "expired", "delayed", "dead"):
                    g[state] += int(r[state])
                if r["oldest_ready_age_s"] is not None:
                    g["ages"].append(float(r["oldest_ready_age_s"]))
                g["max_read_ct"] = max(g["max_read_ct"], int(r["max_read_ct"]))
        capped: dict[tuple[str, int], int] = {}  # group -> stored ready rows counted
        for r in cur.execute(q._q(ops_queries.ESTIMATE_READY_HEADS), params).fetchall():
            key = (r["queue"], int(r["priority"]))
            g = group(key)
            g["ready"] += int(r["counted"])
            g["ages"].append(float(r["age_s"]))
            g["max_read_ct"] = max(g["max_read_ct"], int(r["max_read_ct"]))
            if int(r["counted"]) > EXACT_READY_CAP:
                capped[key] = int(r["counted"])
        sampled = set(capped)
        if capped or not all(exact.values()):
            sampled |= _add_sample(cur, q, params, groups, group, capped, exact)
    paused = _pause_lookup(q)
    paused = _pause_lookup(q)
    rows = [
        PriorityStats(
            queue=key[0],
            priority=key[1],
            ready=g["ready"],
            leased=g["leased"],
            expired=g["expired"],
            delayed=g["delayed"],
            dead=g["dead"],
            oldest_ready_age_s=max(g["ages"]) if g["ages"] else None,
            max_read_ct=g["max_read_ct"],
            paused=paused(*key),
        )
        for key, g in groups.items()
    ]
    rows.sort(key=lambda r: (r.queue, -r.priority))
    return QueueStats(tuple(rows)), frozenset(sampled)


def _add_sample(
    cur: Any,
    q: Queue,
    params: dict[str, Any],
    groups: dict[tuple[str, int], dict[str, Any]],
    group: Callable[[tuple[str, int]], dict[str, Any]],
    capped: dict[tuple[str, int], int],
    exact: dict[str, bool],
) -> set[tuple[str, int]]:
    """Fill in from a block sample what was over the cap; return the groups it touched.

    A capped group's ready count becomes the larger of what was counted and the scaled
    sample (due delayed rows, counted in their class, stay on top). A sampled class gives
    every group its scaled numbers, and every group is then flagged: a zero there is an
    estimate too.
    """
    row = cur.execute(q._q(ops_queries.TABLE_PAGES), params).fetchone()
    pages = max(int(next(iter(row.values()))) if row else 1, 1)
    percent = min(100.0, 100.0 * SAMPLE_PAGES / pages)
    touched: set[tuple[str, int]] = set()
    stored_ready: dict[tuple[str, int], int] = {}
    for r in cur.execute(q._q(ops_queries.ESTIMATE_SAMPLE), {**params, "percent": percent}):
        key = (r["queue"], int(r["priority"]))
        scaled = round(int(r["sampled"]) * 100.0 / percent)
        if r["state"] == "ready":
            if key in capped:
                stored_ready[key] = scaled
                groups[key]["max_read_ct"] = max(groups[key]["max_read_ct"],
                                                 int(r["max_read_ct"]))
            continue
        cls, shown = _CLASS_OF[(str(r["state"]), bool(r["due"]))]
        if exact[cls]:
            continue
        g = group(key)
        g[shown] += scaled
        g["max_read_ct"] = max(g["max_read_ct"], int(r["max_read_ct"]))
        if shown == "ready" and r["oldest_age_s"] is not None:
            g["ages"].append(float(r["oldest_age_s"]))
        touched.add(key)
    for key, counted in capped.items():
        groups[key]["ready"] += max(counted, stored_ready.get(key, 0)) - counted
    if not all(exact.values()):
        touched |= set(groups)
    return touched


# ----------------------------------------------------------------------------- metrics


def _total(state: str) -> Callable[[Sequence[PriorityStats]], float]:
    return lambda rows: float(sum(getattr(r, state) for r in rows))


def _oldest_ready_age(rows: Sequence[PriorityStats]) -> float:
    return max((r.oldest_ready_age_s or 0.0 for r in rows), default=0.0)


def _max_read_ct(rows: Sequence[PriorityStats]) -> float:
    return float(max((r.max_read_ct for r in rows), default=0))


def _all(rows: Sequence[PriorityStats]) -> float:
    return float(sum(r.ready + r.leased + r.expired + r.delayed + r.dead for r in rows))


# name -> (meaning, how to compute it over the collected rows, whether it is an age)
METRICS: dict[str, tuple[str, Callable[[Sequence[PriorityStats]], float], bool]] = {
    "ready": ("messages ready to claim (sum)", _total("ready"), False),
    "leased": ("messages leased, lease still running (sum)", _total("leased"), False),
    "leased_expired": ("leased messages whose lease ran out (sum)", _total("expired"), False),
    "expired": ("same as leased_expired", _total("expired"), False),
    "delayed": ("messages delayed, not yet due (sum)", _total("delayed"), False),
    "dead": ("dead letters (sum)", _total("dead"), False),
    "total": ("all messages (sum)", _all, False),
    "oldest_ready_age": ("age in seconds of the oldest ready message (max)",
                         _oldest_ready_age, True),
    "max_read_ct": ("highest delivery count of any message (max)", _max_read_ct, False),
}

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}

_EXPRESSION = re.compile(
    r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>[<>=!]+)\s*(?P<value>\S+)\s*$"
)
METRIC_HINT = "metrics: " + ", ".join(METRICS) + "; operators: > >= < <= == !="


@dataclass(frozen=True)
class Threshold:
    metric: str
    op: str
    value: float
    text: str

    def crossed_by(self, measured: float) -> bool:
        return OPERATORS[self.op](measured, self.value)


@dataclass(frozen=True)
class Breach:
    threshold: Threshold
    measured: float

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.threshold.metric,
            "op": self.threshold.op,
            "threshold": self.threshold.value,
            "value": self.measured,
            "expression": self.threshold.text,
        }

    def describe(self) -> str:
        t = self.threshold
        return f"{t.metric} is {_show(self.measured)} ({t.op} {_show(t.value)})"


def _show(value: float) -> str:
    """Whole numbers in full (1234567, not 1.23457e+06), others to 6 significant digits."""
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.6g}"


def parse_threshold(text: str) -> Threshold:
    """`metric OP number`; ages also take durations (`oldest_ready_age>5m`)."""
    match = _EXPRESSION.match(text)
    if not match:
        raise InvalidInput(f"bad --fail-if expression {text[:60]!r}", hint=METRIC_HINT)
    metric, op, raw = match.group("metric"), match.group("op"), match.group("value")
    if metric not in METRICS:
        raise InvalidInput(f"unknown metric {metric!r} in --fail-if", hint=METRIC_HINT)
    if op not in OPERATORS:
        raise InvalidInput(f"unknown operator {op!r} in --fail-if", hint=METRIC_HINT)
    is_age = METRICS[metric][2]
    try:
        value = float(raw)
    except ValueError:
        if not is_age:
            raise InvalidInput(
                f"{raw[:30]!r} is not a number in --fail-if {text[:60]!r}", hint=METRIC_HINT
            ) from None
        value = parse_duration(raw, "--fail-if age")
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"--fail-if {text[:60]!r} needs a finite number")
    # Whitespace as typed is kept, but runs of it (newlines too) become one space: the
    # expression is shown on one stderr line and is a Prometheus label value.
    return Threshold(metric, op, value, " ".join(text.split()))


def parse_thresholds(texts: Iterable[str]) -> list[Threshold]:
    return [parse_threshold(t) for t in texts]


def metric_values(stats: QueueStats) -> dict[str, float]:
    """Every metric of `METRICS`, over all rows of `stats`."""
    return {name: compute(stats.rows) for name, (_, compute, _) in METRICS.items()}


def breaches(stats: QueueStats, thresholds: Sequence[Threshold]) -> list[Breach]:
    """The thresholds that the collected numbers cross, in the order given."""
    values = metric_values(stats)
    return [
        Breach(t, values[t.metric]) for t in thresholds if t.crossed_by(values[t.metric])
    ]
