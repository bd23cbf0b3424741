"""Health metrics for cron and alerting: collection (exact or estimated) and thresholds.

Library code: returns frozen dataclasses, raises the `errors.PgqError` family; never
prints, never imports Typer or rich.

Collection. `collect(exact)` is `Queue.stats()`: one scan of the messages table, exact,
and its cost grows with the table (see bench/stats_10m.py for the measured numbers).
`collect(estimate=True)` is `estimate.estimate()`: a bounded cost whatever the size, with
the numbers over a cap estimated from a sample (see that module).

Thresholds. `--fail-if 'METRIC OP NUMBER'`, e.g. `oldest_ready_age>300`,
`leased_expired>0`, `ready>=1e6`. Metrics are summed (counts) or maxed (ages, read_ct)
over the queues and priorities collected; see `METRICS`.
"""

from __future__ import annotations

import operator
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..core import fairness
from ..core.checks import check_queue
from ..core.durations import parse_duration
from ..core.errors import InvalidInput

# The CLI shows METRIC_HINT in `pgq stats --help`: this module loads no psycopg itself.
if TYPE_CHECKING:
    from ..core.queue import PriorityStats, Queue, QueueStats


@dataclass(frozen=True)
class Snapshot:
    """What one collection saw."""

    stats: QueueStats
    # Some count is estimated from a sample (then `sampled` names them).
    estimated: bool
    collected_at: float  # unix time
    duration_s: float
    # The numbers estimated from a sample: (queue, priority) -> {state: error bound}.
    sampled: Mapping[tuple[str, int], Mapping[str, int]] = field(default_factory=dict)
    # Fair queues' depth by key (top keys and the rest summed), when asked for.
    keys: tuple[fairness.KeyBreakdown, ...] = ()


def collect(
    q: Queue, *, queue: str | None = None, estimate: bool = False, by_key: bool = False
) -> Snapshot:
    """Counts per queue/priority/state, oldest ready age, max read_ct. Read-only.

    `by_key`: also fair queues' depth by key (top keys; one more pass over their rows).
    """
    if queue is not None:
        check_queue(queue)
    started = time.monotonic()
    if estimate:
        from . import estimate as estimate_module

        stats, sampled = estimate_module.estimate(q, queue=queue)
        stats = q.with_configured(stats, queue=queue)  # as Queue.stats does
    else:
        stats, sampled = q.stats(queue=queue), {}
    keys = tuple(q.key_breakdown(queue=queue)) if by_key else ()
    return Snapshot(
        stats, bool(sampled), time.time(), time.monotonic() - started, sampled, keys
    )


def _total(state: str) -> Callable[[Sequence[PriorityStats]], float]:
    return lambda rows: float(sum(getattr(r, state) for r in rows))


def _oldest_ready_age(rows: Sequence[PriorityStats]) -> float:
    return max((r.oldest_ready_age or 0.0 for r in rows), default=0.0)


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
