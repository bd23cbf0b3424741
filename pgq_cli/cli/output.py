"""Output: stdout is data. Every table, frame and report pgq prints is rendered here.

Formats: `json` (one plain JSON object per line, stable field names), `table` (tabulate,
for a pipe that wants columns), `plain` (tab-separated lines, no decoration: what a pipe
gets by default) and `rich` (a rich table: what a terminal gets by default). Rich output is
never used on a pipe: it wraps at 80 columns and cuts cells with an ellipsis.

Text that is already a format of its own goes out as is through `text`: the SQL of
`pgq migrate --sql`/`--print-grants`, and the Prometheus exposition, which
`pgq_cli/ops/prometheus.py` builds because it is a wire format (like JSON), not terminal output.
Status lines and errors go to `stderr`, never to stdout.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import TYPE_CHECKING, Any

# Every `pgq` run imports this module, most of them only to write a few plain lines: rich,
# tabulate and the modules whose results are rendered here load in the functions that
# need them (tests/test_startup.py keeps `pgq --help` and `pgq claim` free of them).
if TYPE_CHECKING:
    from rich.console import Console, RenderableType
    from rich.table import Table
    from rich.text import Text

    from ..bench.runner import BenchResult, ProgressCallback
    from ..core.migrate import MigrationStatus
    from ..core.queue import IdResult, Message, PriorityStats, QueueStats
    from ..ops.doctor import Finding
    from ..ops.watch import Frame

from ..core.checks import MAX_PRIORITY
from ..core.states import EFFECTIVE_STATES


@cache
def _stderr_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False, soft_wrap=True)


def to_stderr(line: str) -> None:
    """stderr is talk: status lines, warnings, errors. Never data. Only the error boundary
    calls this, so that every line is masked (`boundary.say`, `boundary.fail`)."""
    _stderr_console().print(line, markup=False)


class Format(StrEnum):
    auto = "auto"
    plain = "plain"
    table = "table"
    json = "json"
    rich = "rich"


def resolve_format(fmt: Format, json_flag: bool) -> Format:
    if json_flag:
        return Format.json
    if fmt is Format.auto:
        return Format.rich if sys.stdout.isatty() else Format.plain
    return fmt


def _out(content: str) -> None:
    sys.stdout.write(content + "\n")


def text(content: str) -> None:
    """Text exactly as given: SQL, the Prometheus exposition, help, the version."""
    sys.stdout.write(content)


def line(content: str = "") -> None:
    """One line, flushed at once (the demo's narration shows as it happens)."""
    _out(content)
    sys.stdout.flush()


def _json_lines(objects: Iterable[dict[str, Any]]) -> None:
    for obj in objects:
        _out(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _payload_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


class _Plain:
    """Whether plain tables start with a line naming their columns (`--header`)."""

    header: bool = False


def plain_header(on: bool) -> None:
    """`--header`: plain tables print their column names first, tab-separated."""
    _Plain.header = on


def write_table(fmt: Format, headers: Sequence[str], cells: list[list[Any]], title: str) -> None:
    """A table: tabulate columns, a rich table, or tab-separated lines (`plain`; with
    `--header`, the column names first)."""
    if fmt is Format.table:
        from tabulate import tabulate

        _out(tabulate(cells, headers=list(headers), tablefmt="simple"))
    elif fmt is Format.rich:
        from rich.console import Console

        console = Console()
        console.print(fitted(console, headers, cells, title=title), crop=False)
    else:
        if _Plain.header:
            _out("\t".join(headers))
        for row in cells:
            _out("\t".join("" if v is None else str(v) for v in row))


# ----------------------------------------------------------------------------- rich tables
#
# A terminal is often 80 columns wide, and a msg_id, a 64-character queue name and a lease
# token (36) do not fit in it side by side with everything else. An id, token, queue name,
# key or number that is cut or folded cannot be copied back, so `fitted` never does that:
# only the columns named below may be narrowed, then some are left out, and when the whole
# columns still do not fit, each row is printed as a block of `name  value` lines.

# Narrowed with an ellipsis (a payload can be as long as 1 MiB).
SHORTENED_COLUMNS = frozenset({"payload"})
# Prose: wraps between words.
WRAPPED_COLUMNS = frozenset({"finding", "fix"})
# Left out one by one, in this order, while the table does not fit.
DROPPED_COLUMNS = ("ready_bar", "vt", "payload")
# The narrowest a shortened or wrapped column is made before columns are left out.
FLEXIBLE_MIN_WIDTH = 12
# Room enough to measure a table's natural width: no column clamped to the terminal's.
_UNBOUNDED = 1_000_000
# A block's value that does not fit beside its name goes on the next line, this far in.
_UNDER_INDENT = 2
# A bar beside the ready count: it only repeats that count, so it is left out without a
# word, and blocks do without it.
_REPEATS = frozenset({"ready_bar"})
_LABELS = {"ready_bar": "ready"}


def _label(name: str) -> str:
    """A column's header in rich output: words, so that a long header wraps between them
    (plain and table output keep the names as they are)."""
    return _LABELS.get(name, name.replace("_", " "))


def _cell_text(value: object) -> Text:
    from rich.text import Text

    # Never rich markup: a payload or a key is data, and `[red]` in it is text.
    return value if isinstance(value, Text) else Text("" if value is None else str(value))


def _whole_width(label: str, cells: Iterable[Text], wrap_header: bool) -> int:
    """A whole column's width: its widest cell, or header (`wrap_header`: its longest word,
    the header wrapping between words)."""
    header = [len(word) for word in label.split()] if wrap_header else [len(label)]
    return max([c.cell_len for c in cells] + header + [1])


def _rich_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[Text]],
    shown: Sequence[str],
    *,
    title: str,
    right: Collection[str],
    wrap_headers: bool,
    skeleton: bool = False,
) -> Table:
    """A table of the `shown` columns (`rows` hold all the `headers` columns). Only the
    shortened and wrapped columns may narrow. `skeleton`: their cells cut to
    FLEXIBLE_MIN_WIDTH, so that measuring it gives the narrowest the table can be."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    left_out = [h for h in headers if h not in shown and h not in _REPEATS]
    table = Table(
        title=title or None,
        title_justify="left",
        caption=f"(not shown at this width: {', '.join(left_out)})" if left_out else None,
        caption_justify="left",
        # Columns two spaces apart, a rule under the headers, no frame: 80 columns hold
        # more of them than in a framed table.
        box=box.SIMPLE_HEAD,
        padding=(0, 1, 0, 0),
        pad_edge=False,
        show_edge=False,
    )
    columns: list[list[Text]] = []
    for name in shown:
        index = headers.index(name)
        cells = [row[index] for row in rows]
        header = Text(_label(name), style="bold", no_wrap=False, overflow="fold")
        justify: Any = "right" if name in right else "left"
        if name in SHORTENED_COLUMNS or name in WRAPPED_COLUMNS:
            shortened = name in SHORTENED_COLUMNS
            if shortened or skeleton:
                cells = [c.copy() for c in cells]
            for cell in cells:
                if shortened:
                    cell.no_wrap, cell.overflow = True, "ellipsis"
                if skeleton:
                    cell.truncate(FLEXIBLE_MIN_WIDTH)
            table.add_column(header, justify=justify, overflow="fold")
        else:
            width = _whole_width(header.plain, cells, wrap_headers)
            table.add_column(header, justify=justify, width=width, no_wrap=True)
        columns.append(cells)
    for row in zip(*columns, strict=True):
        table.add_row(*row)
    return table


def _blocks(
    console: Console, headers: Sequence[str], rows: Sequence[Sequence[Text]], *, title: str
) -> RenderableType:
    """One block of `name  value` lines per row. Values are whole, even one wider than
    the terminal (a 128-character key: the terminal wraps it, a copy gives it back whole),
    except shortened ones (cut to the line) and wrapped ones (wrapped under themselves)."""
    from rich.console import Group
    from rich.text import Text

    kept = [(index, name) for index, name in enumerate(headers) if name not in _REPEATS]
    # The names as --json and --header spell them: a block has room for them.
    label_width = max(len(name) for _, name in kept)
    indent = label_width + 2
    value_width = max(console.width - indent, FLEXIBLE_MIN_WIDTH)
    lines: list[RenderableType] = [Text(title, style="bold")] if title else []
    for number, row in enumerate(rows):
        if number or title:
            lines.append(Text(""))
        for index, name in kept:
            cell = row[index]
            label = Text(name.ljust(indent), style="bold")
            if name in SHORTENED_COLUMNS:
                value = cell.copy()
                value.truncate(value_width, overflow="ellipsis")
                parts = [value]
            elif name in WRAPPED_COLUMNS:
                parts = list(cell.wrap(console, value_width))
            elif indent + cell.cell_len > console.width:
                # A long name beside a long value (a 64-character queue) would not fit:
                # the value goes under its name.
                lines.append(label)
                under = " " * min(_UNDER_INDENT, max(console.width - cell.cell_len, 0))
                lines.append(Text.assemble(under, cell, no_wrap=True, overflow="ignore"))
                continue
            else:
                parts = [cell]
            for line_number, part in enumerate(parts or [Text("")]):
                lead = label if line_number == 0 else Text(" " * indent)
                line = Text.assemble(lead, part, no_wrap=True, overflow="ignore")
                lines.append(line)
    return Group(*lines)


def fitted(
    console: Console,
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    title: str = "",
    right: Collection[str] = (),
) -> RenderableType:
    """`rows` for a terminal `console.width` wide: a table, without the DROPPED_COLUMNS it
    has to leave out, or one block per row. Print it with `crop=False`."""
    from rich.measure import Measurement

    texts = [[_cell_text(v) for v in row] for row in rows]
    shown = list(headers)
    droppable = [h for h in DROPPED_COLUMNS if h in headers]
    # Measured unbounded: measuring at the console's width would clamp each column to it.
    unbounded = console.options.update_width(_UNBOUNDED)
    while True:
        for wrap_headers in (False, True):
            skeleton = _rich_table(
                headers, texts, shown, title=title, right=right, wrap_headers=wrap_headers,
                skeleton=True,
            )
            if Measurement.get(console, unbounded, skeleton).maximum <= console.width:
                return _rich_table(
                    headers, texts, shown, title=title, right=right, wrap_headers=wrap_headers
                )
        if not droppable:
            return _blocks(console, headers, texts, title=title)
        shown.remove(droppable.pop(0))


def ids(msg_ids: Sequence[int], fmt: Format) -> None:
    if fmt is Format.json:
        _json_lines({"msg_id": i} for i in msg_ids)
    else:
        # One write: `pgq send -f` of 100,000 lines prints 100,000 ids.
        sys.stdout.write("".join(f"{i}\n" for i in msg_ids))


def id_results(results: Sequence[IdResult], fmt: Format) -> None:
    """ack/requeue: the ids done, one a line; --json: every id given with its result."""
    if fmt is Format.json:
        _json_lines(r.to_json() for r in results)
    else:
        ids([r.msg_id for r in results if r.done], fmt)


MESSAGE_HEADERS = ("msg_id", "queue", "priority", "state", "read_ct", "lease", "vt", "payload")


def messages(found: Sequence[Message], fmt: Format, title: str = "") -> None:
    """Claimed or peeked messages. A `key` column (before the payload, which stays last)
    appears only when one of them has a fairness key, so the columns of a queue without
    keys are what they always were."""
    if fmt is Format.json:
        _json_lines(m.to_json() for m in found)
        return
    with_key = any(m.key is not None for m in found)
    rows = [
        [
            m.msg_id,
            m.queue,
            m.priority,
            m.state,
            m.read_ct,
            str(m.lease) if m.lease else "",
            m.vt.isoformat(timespec="seconds"),
            *([m.key] if with_key else []),
            _payload_text(m.payload),
        ]
        for m in found
    ]
    if fmt is Format.rich and not rows:
        return
    headers = (*MESSAGE_HEADERS[:-1], "key", MESSAGE_HEADERS[-1]) if with_key else MESSAGE_HEADERS
    write_table(fmt, headers, rows, title)


STATS_HEADERS = (
    "queue",
    "priority",
    "ready",
    "leased",
    "expired",
    "delayed",
    "dead",
    "oldest_ready_age",
    "max_read_ct",
    "paused",
)


def _age(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f}"


def stats(
    result: QueueStats,
    fmt: Format,
    sampled: Mapping[tuple[str, int], Mapping[str, int]] | None = None,
) -> None:
    """`sampled`: with --estimate, per (queue, priority) its estimated numbers (state ->
    error bound). Every format then marks them: JSON with `estimated` (true/false) and
    `estimate_bounds` ({state: +/- rows}), plain with an `estimated` column naming the
    estimated states (empty: all exact), table and rich also with a `~` before each
    estimated number."""

    def marks(r: PriorityStats) -> Mapping[str, int]:
        return {} if sampled is None else sampled.get((r.queue, r.priority), {})

    if fmt is Format.json:
        extra = [{} if sampled is None else
                 {"estimated": bool(marks(r)), "estimate_bounds": dict(marks(r))}
                 for r in result.rows]
        _json_lines({**r.to_json(), **m} for r, m in zip(result.rows, extra, strict=True))
        return
    about = "~" if fmt in (Format.table, Format.rich) else ""

    def count(r: PriorityStats, state: str) -> str | int:
        n: int = getattr(r, state)
        return f"{about}{n}" if about and state in marks(r) else n

    headers = STATS_HEADERS if sampled is None else (*STATS_HEADERS, "estimated")
    rows = [
        [
            r.queue,
            r.priority,
            *(count(r, state) for state in EFFECTIVE_STATES),
            _age(r.oldest_ready_age),
            r.max_read_ct,
            "yes" if r.paused else "no",
            *([] if sampled is None else
              [",".join(s for s in EFFECTIVE_STATES if s in marks(r))]),
        ]
        for r in result.rows
    ]
    if fmt is not Format.rich:
        write_table(fmt, headers, rows, "")
        return
    from rich.console import Console
    from rich.text import Text

    widest = max((r.ready for r in result.rows), default=0)
    bars = [
        Text("█" * (round(24 * r.ready / widest) if widest else 0), style="green")
        for r in result.rows
    ]
    console = Console()
    console.print(
        fitted(
            console,
            (*headers, "ready_bar"),
            [[*row, bar] for row, bar in zip(rows, bars, strict=True)],
            title=f"pgq stats — priority {MAX_PRIORITY} is most urgent, claimed first",
            right=[h for h in headers if h != "queue"],
        ),
        crop=False,
    )
    if not result.rows:
        console.print("(no messages)")


def migrations(found: Sequence[MigrationStatus], fmt: Format) -> None:
    if fmt is Format.json:
        _json_lines(m.to_json() for m in found)
        return
    rows = [
        [
            f"{m.version:04d}",
            m.name,
            "applied" if m.applied_at else "pending",
            m.applied_at.isoformat(timespec="seconds") if m.applied_at else "",
        ]
        for m in found
    ]
    write_table(fmt, ("version", "name", "status", "applied_at"), rows, "pgq migrations")


def one(obj: dict[str, Any], fmt: Format) -> None:
    """A single record (counts, summaries): JSON, or key<TAB>value lines."""
    if fmt is Format.json:
        _json_lines([obj])
        return
    if fmt is Format.rich:  # one record: its `name  value` lines, whatever the width
        from rich.console import Console

        console = Console()
        values = [_cell_text(v) for v in obj.values()]
        console.print(_blocks(console, list(obj), [values], title=""), crop=False)
        return
    write_table(fmt, ("key", "value"), [[k, v] for k, v in obj.items()], "")


def record(obj: dict[str, Any], fmt: Format) -> None:
    """One record as JSON, or key<TAB>value lines with readable values (`pgq info`)."""
    one(obj if fmt is Format.json else {k: _cell(v) for k, v in obj.items()}, fmt)


def records(
    found: Sequence[dict[str, Any]], headers: Sequence[str], fmt: Format, title: str = ""
) -> None:
    """Flat records (one per line in JSON; the `headers` keys, in order, as columns)."""
    if fmt is Format.json:
        _json_lines(found)
        return
    write_table(fmt, headers, [[r.get(h) for h in headers] for r in found], title)


# ----------------------------------------------------------------------------- queues

SETTINGS_HEADERS = ("queue", "max_deliveries", "paused", "paused_below_priority", "updated_at")
QUEUES_HEADERS = (
    "queue",
    "max_deliveries",
    "paused",
    "paused_below_priority",
    "ready",
    "leased",
    "expired",
    "delayed",
    "dead",
)


def _cell(value: object) -> object:
    """Plain and table cells: blank for unset, yes/no for flags (as in `pgq stats`), lists
    as space-separated words."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return " ".join(map(str, value))
    return value


def queue_settings(obj: dict[str, Any], fmt: Format, extra: tuple[str, ...] = ()) -> None:
    """One queue's settings (`pgq queue config`, `pause`, `resume`); `extra` columns last."""
    row = {k: _cell(v) for k, v in obj.items()}
    records([obj] if fmt is Format.json else [row], (*SETTINGS_HEADERS, *extra), fmt)


# `pgq queue config` shows these after the settings; `pgq queue key` shows KEY_HEADERS.
FAIRNESS_HEADERS = ("fair", "max_inflight_per_key")
KEY_HEADERS = ("queue", "key", "weight", "inflight")


BY_KEY_HEADERS = ("key", "ready", "leased", "delayed")


def key_depths(found: Sequence[dict[str, Any]], fmt: Format, *, queue: str) -> None:
    """`pgq stats --by-key`: one key per row (no key: a blank cell, null in JSON)."""
    if fmt is not Format.json:
        found = [{**r, "key": "" if r["key"] is None else r["key"]} for r in found]
    records(found, BY_KEY_HEADERS, fmt, title=f"pgq stats --by-key {queue}")


def key_weight(obj: dict[str, Any], fmt: Format) -> None:
    """`pgq queue key`: one key's weight and live leases."""
    row = {k: _cell(v) for k, v in obj.items()}
    records([obj] if fmt is Format.json else [row], KEY_HEADERS, fmt)


def queue_list(found: Sequence[dict[str, Any]], fmt: Format) -> None:
    """`pgq queues`: settings and depth by state, one queue per row."""
    if fmt is not Format.json:
        found = [{k: _cell(v) for k, v in r.items()} for r in found]
    records(found, QUEUES_HEADERS, fmt, title="pgq queues")


# ----------------------------------------------------------------------------- doctor

DOCTOR_HEADERS = ("severity", "check", "finding", "fix")
_SEVERITY_STYLE = {"ok": "green", "info": "cyan", "warning": "yellow", "serious": "bold red"}


def findings(shown: Sequence[Finding], fmt: Format, *, schema: str) -> None:
    """`pgq doctor`: one finding per row with its fix; severity coloured on a terminal."""
    if fmt is Format.json:
        for f in shown:
            one(f.to_json(), Format.json)
    elif fmt is Format.rich:
        from rich.console import Console
        from rich.text import Text

        rows = [
            [Text(f.severity, style=_SEVERITY_STYLE[f.severity]), f.check, f.summary, f.fix]
            for f in shown
        ]
        console = Console()
        console.print(
            fitted(console, DOCTOR_HEADERS, rows, title=f"pgq doctor — schema {schema}"),
            crop=False,
        )
    else:
        write_table(
            fmt, DOCTOR_HEADERS, [[f.severity, f.check, f.summary, f.fix] for f in shown], ""
        )


# ----------------------------------------------------------------------------- watch


def _per_second(rate: float | None) -> str:
    return "…" if rate is None else f"{rate:,.1f}/s"


def _age_with_unit(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}m"
    return f"{seconds / 3600:.1f}h"


def _rates_scope(queue: str | None) -> str:
    # The counters are the table's: under --queue they still count every queue.
    return "" if queue is None else " (rates: all queues)"


def watch_view(
    frame: Frame, console: Console, *, queue: str | None = None, title: str = "pgq watch"
) -> RenderableType:
    """A watch frame as a rich renderable, fitted to `console`: a summary line and a table
    per queue and priority."""
    from rich.console import Group
    from rich.text import Text

    when = datetime.fromtimestamp(frame.wall, UTC).strftime("%H:%M:%S")
    summary = Text.assemble(
        (f"{title}  ", "bold"),
        f"{when} UTC  frame {frame.number}  ",
        "claims ",
        (_per_second(frame.claim_rate), "bold green"),
        "  sends ",
        _per_second(frame.send_rate),
        "  acks ",
        _per_second(frame.ack_rate),
        _rates_scope(queue),
        "  oldest ready ",
        (_age_with_unit(frame.oldest_ready_age), "bold yellow"),
        ("  (estimated counts)" if frame.estimated else ""),
    )
    headers = ("queue", "prio", *EFFECTIVE_STATES, "oldest", "paused", "ready_bar")
    widest = max((r.ready for r in frame.stats.rows), default=0)
    rows = [
        [
            r.queue,
            str(r.priority),
            *(f"{getattr(r, s):,}" for s in EFFECTIVE_STATES),
            _age_with_unit(r.oldest_ready_age),
            "yes" if r.paused else "",
            Text("█" * (round(20 * r.ready / widest) if widest else 0), style="green"),
        ]
        for r in frame.stats.rows
    ]
    table = fitted(
        console,
        headers,
        rows,
        title=f"priority {MAX_PRIORITY} is most urgent, claimed first",
        right=headers[1:-2],
    )
    parts: list[RenderableType] = [summary, table]
    if not frame.stats.rows:
        parts.append(Text("(no messages)"))
    parts.append(Text("Ctrl-C to quit", style="dim"))
    return Group(*parts)


def watch_text(frame: Frame, *, queue: str | None = None) -> str:
    """A watch frame as text for a pipe or a log: never cut to a terminal's width.

    A summary line, then the columns of `pgq stats` (a header line, one tab-separated line
    per queue and priority), then an empty line.
    """
    when = datetime.fromtimestamp(frame.wall, UTC).isoformat(timespec="milliseconds")

    def rate(value: float | None) -> str:
        return "-" if value is None else _per_second(value)

    summary = (
        f"frame {frame.number}  {when}  claims {rate(frame.claim_rate)}  "
        f"sends {rate(frame.send_rate)}  acks {rate(frame.ack_rate)}"
        f"{_rates_scope(queue)}  oldest ready {_age_with_unit(frame.oldest_ready_age)}"
        + ("  (estimated counts)" if frame.estimated else "")
    )
    lines = [summary, "\t".join(STATS_HEADERS)]
    for r in frame.stats.rows:
        cells = (r.queue, r.priority, r.ready, r.leased, r.expired, r.delayed, r.dead,
                 _age(r.oldest_ready_age), r.max_read_ct, "yes" if r.paused else "no")
        lines.append("\t".join(map(str, cells)))
    return "\n".join(lines) + "\n\n"


@contextmanager
def watch_frames(
    fmt: Format, *, queue: str | None = None, console: Console | None = None
) -> Iterator[Callable[[Frame], None]]:
    """Where `pgq watch` frames go: yields the function that shows one frame.

    json: one object per frame; rich: drawn in place (rich Live) on `console`; otherwise
    `watch_text`. Whatever goes to stdout is flushed frame by frame, so a pipe
    (`pgq watch --json | jq`) sees each frame as it comes.
    """
    if fmt is Format.json:

        def emit_json(frame: Frame) -> None:
            one(frame.to_json(), Format.json)
            sys.stdout.flush()

        yield emit_json
        return
    if fmt is not Format.rich:

        def emit_text(frame: Frame) -> None:
            sys.stdout.write(watch_text(frame, queue=queue))
            sys.stdout.flush()

        yield emit_text
        return
    from rich.console import Console
    from rich.live import Live

    screen = console or Console()
    display: Live | None = None

    def draw(frame: Frame) -> None:
        nonlocal display
        view = watch_view(frame, screen, queue=queue)
        if display is None:
            display = Live(view, console=screen, auto_refresh=False)
            display.start()
        display.update(view, refresh=True)

    try:
        yield draw
    finally:
        if display is not None:
            display.stop()


# ----------------------------------------------------------------------------- bench

BENCH_HEADERS = (
    "design",
    "backlog",
    "p50",
    "p95",
    "p99",
    "max",
    "p99 vs 0",
    "msg/s",
    "claims",
    "over",
    "dup",
)


@contextmanager
def bench_progress(show: bool = True) -> Iterator[ProgressCallback | None]:
    """A rich progress bar on stderr when it is a terminal (and `show`: not --quiet);
    nothing otherwise."""
    if not (show and sys.stderr.isatty()):
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    task = bar.add_task("starting", total=None)

    def report(what: str, done: int, total: int) -> None:
        bar.update(task, description=what, completed=done, total=total)

    with bar:
        yield report


def _ms(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.2f}"


def _bench_rows(result: BenchResult) -> list[list[Any]]:
    cells: list[list[Any]] = []
    for level in result.levels:
        lat, tp = level.latency, level.throughput
        cells.append(
            [
                level.design,
                f"{level.backlog:,}" + (" delayed" if level.backlog_kind == "delayed" else ""),
                _ms(lat.p50),
                _ms(lat.p95),
                _ms(lat.p99),
                _ms(lat.max),
                "-" if level.p99_ratio is None else f"{level.p99_ratio:.2f}x",
                "-" if tp is None else f"{tp.msgs_per_s:,.0f}" + ("" if tp.drained else "*"),
                level.claims,
                level.over_claims,
                level.duplicate_leases,
            ]
        )
    return cells


def bench_report(result: BenchResult, fmt: Format) -> None:
    """`pgq bench`: one JSON object, or a titled table (rich; tabulate for table and plain)
    with a footer of counts, then any EXPLAIN plans."""
    if fmt is Format.json:
        sys.stdout.write(json.dumps(result.to_json(), separators=(",", ":")) + "\n")
        return
    config = result.config
    title = (
        f"pgq bench on PostgreSQL {result.server_version}: claim latency in ms (client "
        f"round trip, qty {config.qty}, {config.samples} samples) against messages in flight; "
        f"claim+ack msg/s with {config.consumers} consumers"
    )
    footer = (
        f"claims {result.claims:,}; over-claims {result.over_claims}; "
        f"duplicate leases {result.duplicate_leases}"
        " (over/dup per level; * = stopped by --max-seconds before the queue drained)"
    )
    if fmt is Format.rich:
        from rich import box
        from rich.console import Console
        from rich.table import Table

        table = Table(
            title=title,
            title_justify="left",
            caption=footer,
            caption_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for header in BENCH_HEADERS:
            left = header in ("design", "backlog")
            table.add_column(header, justify="left" if left else "right", no_wrap=True)
        for row in _bench_rows(result):
            table.add_row(*(str(v) for v in row))
        Console().print(table)
    else:
        from tabulate import tabulate

        sys.stdout.write(title + "\n")
        sys.stdout.write(
            tabulate(_bench_rows(result), headers=list(BENCH_HEADERS), tablefmt="simple") + "\n"
        )
        sys.stdout.write(footer + "\n")
    for design, plan in result.explain.items():
        sys.stdout.write(f"\nEXPLAIN (ANALYZE, BUFFERS), {design} claim at the largest backlog:\n")
        sys.stdout.write(plan + "\n")
