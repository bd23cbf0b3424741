"""Output: stdout is data.

Formats: `json` (one plain JSON object per line, stable field names), `table` (tabulate,
for a pipe that wants columns), `plain` (tab-separated lines, no decoration: what a pipe
gets by default) and `rich` (a rich table: what a terminal gets by default). Rich output is
never used on a pipe: it wraps at 80 columns and cuts cells with an ellipsis.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table
from tabulate import tabulate

from ..core.migrate import MigrationStatus
from ..core.queue import MAX_PRIORITY, Message, QueueStats


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


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _json_lines(objects: Iterable[dict[str, Any]]) -> None:
    for obj in objects:
        _out(json.dumps(obj, ensure_ascii=False, separators=(",", ":")))


def _payload_text(payload: Any) -> str:
    return json.dumps(payload, ensure_ascii=False, separators=(",", ":"))


def _rows_out(fmt: Format, headers: Sequence[str], rows: list[list[Any]], title: str) -> None:
    if fmt is Format.table:
        _out(tabulate(rows, headers=list(headers), tablefmt="simple"))
    elif fmt is Format.rich:
        table = Table(title=title, title_justify="left")
        for header in headers:
            table.add_column(header, overflow="fold")
        for row in rows:
            table.add_row(*("" if v is None else str(v) for v in row))
        Console().print(table)
    else:
        for row in rows:
            _out("\t".join("" if v is None else str(v) for v in row))


def ids(msg_ids: Sequence[int], fmt: Format) -> None:
    if fmt is Format.json:
        _json_lines({"msg_id": i} for i in msg_ids)
    else:
        for i in msg_ids:
            _out(str(i))


MESSAGE_HEADERS = (
    "msg_id", "queue", "priority", "state", "read_ct", "lease", "vt", "key", "payload"
)


def messages(found: Sequence[Message], fmt: Format, title: str = "") -> None:
    if fmt is Format.json:
        _json_lines(m.to_json() for m in found)
        return
    rows = [
        [
            m.msg_id,
            m.queue,
            m.priority,
            m.state,
            m.read_ct,
            str(m.lease) if m.lease else "",
            m.vt.isoformat(timespec="seconds"),
            m.key,
            _payload_text(m.payload),
        ]
        for m in found
    ]
    if fmt is Format.rich and not rows:
        return
    _rows_out(fmt, MESSAGE_HEADERS, rows, title)


STATS_HEADERS = (
    "queue",
    "priority",
    "ready",
    "leased",
    "expired",
    "delayed",
    "dead",
    "oldest_ready_s",
    "max_read_ct",
    "paused",
)


def _age(seconds: float | None) -> str:
    return "" if seconds is None else f"{seconds:.1f}"


def stats(result: QueueStats, fmt: Format) -> None:
    if fmt is Format.json:
        _json_lines(r.to_json() for r in result.rows)
        return
    rows = [
        [
            r.queue,
            r.priority,
            r.ready,
            r.leased,
            r.expired,
            r.delayed,
            r.dead,
            _age(r.oldest_ready_age_s),
            r.max_read_ct,
            "yes" if r.paused else "no",
        ]
        for r in result.rows
    ]
    if fmt is not Format.rich:
        _rows_out(fmt, STATS_HEADERS, rows, "")
        return
    console = Console()
    table = Table(
        title=f"pgq stats — priority {MAX_PRIORITY} is most urgent, claimed first",
        title_justify="left",
    )
    for header in STATS_HEADERS:
        table.add_column(header, justify="right" if header != "queue" else "left")
    table.add_column("ready", justify="left")
    widest = max((r.ready for r in result.rows), default=0)
    for r, row in zip(result.rows, rows, strict=True):
        bar = "█" * (round(24 * r.ready / widest) if widest else 0)
        table.add_row(*(str(v) for v in row), f"[green]{bar}[/green]")
    console.print(table)
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
    _rows_out(fmt, ("version", "name", "status", "applied_at"), rows, "pgq migrations")


def one(obj: dict[str, Any], fmt: Format) -> None:
    """A single record (counts, summaries): JSON, or key<TAB>value lines."""
    if fmt is Format.json:
        _json_lines([obj])
        return
    _rows_out(fmt, ("key", "value"), [[k, v] for k, v in obj.items()], "")


def records(
    found: Sequence[dict[str, Any]], headers: Sequence[str], fmt: Format, title: str = ""
) -> None:
    """Flat records (one per line in JSON; the `headers` keys, in order, as columns)."""
    if fmt is Format.json:
        _json_lines(found)
        return
    _rows_out(fmt, headers, [[r.get(h) for h in headers] for r in found], title)
