"""Prometheus text exposition format (version 0.0.4) and node_exporter textfile writing.

Library code: builds text and writes files; never prints, never imports Typer or rich.

The textfile collector of node_exporter reads every `*.prom` file in its directory on
each scrape. A file caught half-written would be scraped half (or rejected), so
`write_textfile` writes a temporary file in the same directory, whose name does not end
in `.prom` (the collector ignores it), fsyncs it, and renames it over the target with
`os.replace`, which is atomic within one file system: a reader sees the old file or the
new one, never a mix.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
from collections.abc import Iterable
from pathlib import Path

from ..core.errors import ConfigError, InvalidInput
from ..core.states import EFFECTIVE_STATES
from .thresholds import Breach, Snapshot

DEFAULT_FILENAME = "pgq.prom"
# A fair queue's per-key series: these states, and one more series with this key label
# that sums every key beyond the top ones (Queue.key_breakdown).
KEY_STATES = ("ready", "leased", "delayed")
OTHER_KEYS_LABEL = "__other__"
_FILENAME = re.compile(r"^[A-Za-z0-9_.-]+\.prom$")


def escape_label(value: str) -> str:
    """Label values escape backslash, double quote and newline (exposition format)."""
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 2**53:
        return str(int(value))
    return repr(float(value))


def _labels(**labels: str | int) -> str:
    inner = ",".join(f'{k}="{escape_label(str(v))}"' for k, v in labels.items())
    return "{" + inner + "}" if inner else ""


class _Family:
    def __init__(self, name: str, help_text: str, kind: str = "gauge") -> None:
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
        self.name = name

    def add(self, value: float, **labels: str | int) -> None:
        self.lines.append(f"{self.name}{_labels(**labels)} {_number(value)}")


def render(
    snapshot: Snapshot, *, schema: str = "pgq", breached: Iterable[Breach] = ()
) -> str:
    """The snapshot as exposition text: one family per metric, HELP and TYPE first."""
    rows = snapshot.stats.rows
    messages = _Family(
        "pgq_messages",
        "Messages by queue, priority (10 is most urgent) and state "
        "(expired: leased, lease ran out).",
    )
    oldest = _Family(
        "pgq_oldest_ready_age_seconds",
        "Age of the oldest ready message by queue and priority (0 when none is ready).",
    )
    read_ct = _Family(
        "pgq_max_read_count", "Highest delivery count of any message by queue and priority."
    )
    paused = _Family("pgq_paused", "1 when claim skips this queue and priority (pgq pause).")
    for r in rows:
        where: dict[str, str | int] = {"schema": schema, "queue": r.queue, "priority": r.priority}
        for state in EFFECTIVE_STATES:
            messages.add(getattr(r, state), **where, state=state)
        oldest.add(r.oldest_ready_age or 0.0, **where)
        read_ct.add(r.max_read_ct, **where)
        paused.add(1 if r.paused else 0, **where)
    by_key = _Family(
        "pgq_key_messages",
        "Messages of fair queues by key and state: the top keys by ready depth, "
        f'key="{OTHER_KEYS_LABEL}" sums the others, key="" is messages sent without one.',
    )
    for breakdown in snapshot.keys:
        labelled = [(depth.key or "", depth) for depth in breakdown.top]
        if breakdown.other is not None:
            labelled.append((OTHER_KEYS_LABEL, breakdown.other))
        for label, depth in labelled:
            for state in KEY_STATES:
                by_key.add(
                    getattr(depth, state),
                    schema=schema,
                    queue=breakdown.queue,
                    key=label,
                    state=state,
                )
    estimated = _Family(
        "pgq_stats_estimated", "1 when some counts are estimated from a sample (stats --estimate)."
    )
    estimated.add(1 if snapshot.estimated else 0, schema=schema)
    collected = _Family(
        "pgq_stats_collected_timestamp_seconds", "When these numbers were collected (unix time)."
    )
    collected.add(round(snapshot.collected_at, 3), schema=schema)
    duration = _Family("pgq_stats_duration_seconds", "How long collecting them took.")
    duration.add(round(snapshot.duration_s, 6), schema=schema)
    threshold = _Family(
        "pgq_threshold_breached", "1 for each --fail-if expression that was crossed."
    )
    for b in breached:
        threshold.add(1, schema=schema, expression=b.threshold.text)
    families = [messages, oldest, read_ct, paused, estimated, collected, duration]
    if snapshot.keys:
        families.insert(4, by_key)
    if len(threshold.lines) > 2:
        families.append(threshold)
    return "\n".join(line for f in families for line in f.lines) + "\n"


# One `pgq_messages{...} value` sample line, and one `name="value"` label inside it.
_MESSAGES_SAMPLE = re.compile(r"^pgq_messages\{(?P<labels>.*)\}\s")
_LABEL = re.compile(r'(?P<name>[A-Za-z_][A-Za-z0-9_]*)="(?P<value>(?:[^"\\]|\\.)*)"')
_UNESCAPE = {"\\\\": "\\", '\\"': '"', "\\n": "\n"}


def _unescape_label(value: str) -> str:
    return re.sub(r"\\[\\\"n]", lambda m: _UNESCAPE[m.group(0)], value)


def groups_in_textfile(
    path: str | Path, *, schema: str, queue: str | None = None
) -> set[tuple[str, int]]:
    """The (queue, priority) groups of `schema` (and `queue`, if given) that a previous
    textfile reported, so a queue that has since drained is written again at 0 rather than
    vanishing (its gauges would go stale). No file, or an unreadable one: none."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return set()
    groups: set[tuple[str, int]] = set()
    for line in text.splitlines():
        match = _MESSAGES_SAMPLE.match(line)
        if match is None:
            continue
        labels = {
            m.group("name"): _unescape_label(m.group("value"))
            for m in _LABEL.finditer(match.group("labels"))
        }
        if labels.get("schema") != schema or "queue" not in labels:
            continue
        if queue is not None and labels["queue"] != queue:
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


def write_textfile(directory: str | Path, text: str, filename: str = DEFAULT_FILENAME) -> Path:
    """Replace `directory/filename` with `text` atomically; return its path.

    The temporary file `.<filename>.<pid>.tmp` lives in the same directory (a rename
    across file systems is not atomic) and is removed if anything fails.
    """
    folder = check_directory(directory)
    target = folder / check_filename(filename)
    temporary = folder / f".{filename}.{os.getpid()}.tmp"
    try:
        with open(temporary, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(temporary, 0o644)  # node_exporter often runs as another user
        os.replace(temporary, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise ConfigError(
            f"cannot write {target}: {exc.strerror or exc}",
            hint="check that the directory is writable by this user",
        ) from None
    _fsync_directory(folder)
    return target


def _fsync_directory(folder: Path) -> None:
    """Make the rename itself durable (best effort: not every platform allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
