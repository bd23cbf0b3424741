"""Prometheus text exposition format (version 0.0.4) and node_exporter textfile writing,
through `prometheus_client`: its registry, its escaping and number formatting
(`generate_latest`: 12345678 is written `1.2345678e+07`, valid exposition text), its
parser (to read the previous textfile) and its atomic `write_to_textfile`.

Library code: builds metrics and writes files; never prints, never imports Typer or rich.
`prometheus_client` is imported by the functions that use it: its import costs about
45 ms (measured: a process importing psycopg and pgq_cli.ops.thresholds took 231 ms,
275 ms with prometheus_client), which no other command and no --help pays
(tests/test_startup.py guards that).

The textfile collector of node_exporter reads every `*.prom` file in its directory on
each scrape. A file caught half-written would be scraped half (or rejected), so
`write_to_textfile` writes a temporary file in the same directory, whose name does not end
in `.prom` (the collector ignores it), and renames it over the target, which is atomic
within one file system: a reader sees the old file or the new one, never a mix.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, InvalidInput
from ..core.states import EFFECTIVE_STATES
from .thresholds import Breach, Snapshot

if TYPE_CHECKING:
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import CollectorRegistry

DEFAULT_FILENAME = "pgq.prom"
# A fair queue's per-key series: these states, and one more series with this key label
# that sums every key beyond the top ones (Queue.key_breakdown).
KEY_STATES = ("ready", "leased", "delayed")
OTHER_KEYS_LABEL = "__other__"
_FILENAME = re.compile(r"^[A-Za-z0-9_.-]+\.prom$")
_GROUP = ("schema", "queue", "priority")


def registry(
    snapshot: Snapshot, *, schema: str = "pgq", breached: Iterable[Breach] = ()
) -> CollectorRegistry:
    """The snapshot as a registry of gauge families, in the order they are written."""
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector, CollectorRegistry

    breaches = list(breached)

    class _Families(Collector):
        def collect(self) -> Iterator[GaugeMetricFamily]:
            rows = snapshot.stats.rows
            messages = GaugeMetricFamily(
                "pgq_messages",
                "Messages by queue, priority (10 is most urgent) and state "
                "(expired: leased, lease ran out).",
                labels=[*_GROUP, "state"],
            )
            oldest = GaugeMetricFamily(
                "pgq_oldest_ready_age_seconds",
                "Age of the oldest ready message by queue and priority (0 when none is "
                "ready).",
                labels=_GROUP,
            )
            read_ct = GaugeMetricFamily(
                "pgq_max_read_count",
                "Highest delivery count of any message by queue and priority.",
                labels=_GROUP,
            )
            paused = GaugeMetricFamily(
                "pgq_paused", "1 when claim skips this queue and priority (pgq pause).",
                labels=_GROUP,
            )
            for r in rows:
                where = [schema, r.queue, str(r.priority)]
                for state in EFFECTIVE_STATES:
                    messages.add_metric([*where, state], getattr(r, state))
                oldest.add_metric(where, r.oldest_ready_age or 0.0)
                read_ct.add_metric(where, r.max_read_ct)
                paused.add_metric(where, 1 if r.paused else 0)
            yield from (messages, oldest, read_ct, paused)
            if snapshot.keys:
                yield _by_key(snapshot, schema)
            estimated = GaugeMetricFamily(
                "pgq_stats_estimated",
                "1 when some counts are estimated from a sample (stats --estimate).",
                labels=["schema"],
            )
            estimated.add_metric([schema], 1 if snapshot.estimated else 0)
            collected = GaugeMetricFamily(
                "pgq_stats_collected_timestamp_seconds",
                "When these numbers were collected (unix time).",
                labels=["schema"],
            )
            collected.add_metric([schema], round(snapshot.collected_at, 3))
            duration = GaugeMetricFamily(
                "pgq_stats_duration_seconds", "How long collecting them took.",
                labels=["schema"],
            )
            duration.add_metric([schema], round(snapshot.duration_s, 6))
            yield from (estimated, collected, duration)
            if breaches:
                threshold = GaugeMetricFamily(
                    "pgq_threshold_breached",
                    "1 for each --fail-if expression that was crossed.",
                    labels=["schema", "expression"],
                )
                for b in breaches:
                    threshold.add_metric([schema, b.threshold.text], 1)
                yield threshold

    out = CollectorRegistry(auto_describe=False)
    out.register(_Families())
    return out


def _by_key(snapshot: Snapshot, schema: str) -> GaugeMetricFamily:
    from prometheus_client.core import GaugeMetricFamily

    by_key = GaugeMetricFamily(
        "pgq_key_messages",
        "Messages of fair queues by key and state: the top keys by ready depth, "
        f'key="{OTHER_KEYS_LABEL}" sums the others, key="" is messages sent without one.',
        labels=["schema", "queue", "key", "state"],
    )
    for breakdown in snapshot.keys:
        labelled = [(depth.key or "", depth) for depth in breakdown.top]
        if breakdown.other is not None:
            labelled.append((OTHER_KEYS_LABEL, breakdown.other))
        for label, depth in labelled:
            for state in KEY_STATES:
                by_key.add_metric([schema, breakdown.queue, label, state], getattr(depth, state))
    return by_key


def render(
    snapshot: Snapshot, *, schema: str = "pgq", breached: Iterable[Breach] = ()
) -> str:
    """The snapshot as exposition text: one family per metric, HELP and TYPE first."""
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry(snapshot, schema=schema, breached=breached)).decode()


def groups_in_textfile(
    path: str | Path, *, schema: str, queue: str | None = None
) -> set[tuple[str, int]]:
    """The (queue, priority) groups of `schema` (and `queue`, if given) that a previous
    textfile reported, so a queue that has since drained is written again at 0 rather than
    vanishing (its gauges would go stale). No file, or an unreadable one: none."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = Path(path).read_text(encoding="utf-8")
        families = list(text_string_to_metric_families(text))
    except (OSError, UnicodeDecodeError, ValueError):
        return set()
    groups: set[tuple[str, int]] = set()
    for family in families:
        for sample in family.samples:
            labels = sample.labels
            if sample.name != "pgq_messages" or labels.get("schema") != schema:
                continue
            if "queue" not in labels or (queue is not None and labels["queue"] != queue):
                continue
            if labels.get("priority", "").isdigit():
                groups.add((labels["queue"], int(labels["priority"])))
    return groups


def check_filename(name: str) -> str:
    if not _FILENAME.match(name):
        raise InvalidInput(
            f"textfile name {name[:60]!r} is not usable",
            hint="use a plain file name ending in .prom, e.g. pgq.prom",
        )
    return name


def check_directory(directory: str | Path) -> Path:
    path = Path(directory)
    if not path.is_dir():
        raise InvalidInput(
            f"--textfile-dir {str(directory)[:100]!r} is not a directory",
            hint="give node_exporter's --collector.textfile.directory",
        )
    return path


def write_textfile(
    directory: str | Path, metrics: CollectorRegistry, filename: str = DEFAULT_FILENAME
) -> Path:
    """Replace `directory/filename` with the registry's text atomically (prometheus_client's
    `write_to_textfile`: a temporary `<filename>.<pid>.<thread>` in the same directory,
    renamed over the target, removed if anything fails); return its path. The file is
    then made readable by all (0644: node_exporter often runs as another user, and the
    temporary file was created under this process's umask)."""
    from prometheus_client.exposition import write_to_textfile

    folder = check_directory(directory)
    target = folder / check_filename(filename)
    try:
        write_to_textfile(str(target), metrics)
        os.chmod(target, 0o644)
    except OSError as exc:
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or exc}",
            hint="check that the directory is writable by this user",
        ) from None
    return target
