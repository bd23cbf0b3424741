"""Operations commands: `pgq purge`, `pgq watch`, `pgq doctor`, and the health half of
`pgq stats` (`--format prometheus`, `--textfile-dir`, `--fail-if`, `--estimate`).

Thin: parse and validate options (before connecting, so bad input exits 2 even when the
database is down), call one core function, render. The logic lives in `purge.py`,
`health.py`, `prometheus.py`, `doctor.py` and `watch.py`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from ..core.durations import parse_duration
from ..core.errors import ExitCode, InvalidInput
from ..core.queue import DEFAULT_QUEUE, DEFAULT_SCHEMA, Queue, check_queue
from ..ops import doctor as doctor_core
from ..ops import estimate as estimate_core
from ..ops import prometheus
from ..ops import purge as purge_core
from ..ops import thresholds as health
from ..ops import watch as watch_core
from . import output as render
from .app import app
from .boundary import boundary, say, session
from .options import DsnOpt, FormatOpt, JsonOpt, SchemaOpt, StatementTimeoutOpt
from .output import Format

PURGE_STATEMENT_TIMEOUT_MS = 60_000
DEFAULT_TEXTFILE_NAME = prometheus.DEFAULT_FILENAME

# ----------------------------------------------------------------------------- stats


class StatsFormat(StrEnum):
    auto = "auto"
    plain = "plain"
    table = "table"
    json = "json"
    rich = "rich"
    prometheus = "prometheus"


StatsFormatOpt = Annotated[
    StatsFormat,
    typer.Option(
        "--format",
        help="auto: a table on a terminal, tab-separated lines on a pipe; table: tabulate; "
        "prometheus: the text exposition format (node_exporter textfile).",
        case_sensitive=False,
    ),
]
TextfileDirOpt = Annotated[
    str | None,
    typer.Option(
        "--textfile-dir",
        help="Write the Prometheus text atomically to DIR/pgq.prom (node_exporter's "
        "--collector.textfile.directory) instead of stdout. Implies --format prometheus.",
    ),
]
TextfileNameOpt = Annotated[
    str, typer.Option("--textfile-name", help="File name in --textfile-dir (must end in .prom).")
]
FailIfOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--fail-if",
        help="Exit 3 when 'METRIC OP NUMBER' holds, e.g. 'oldest_ready_age>300', "
        "'leased_expired>0'; repeatable. " + health.METRIC_HINT + ".",
    ),
]
EstimateOpt = Annotated[
    bool,
    typer.Option(
        "--estimate",
        help="Cost independent of the table's size: counts above "
        f"{estimate_core.EXACT_READY_CAP:,} (ready per priority; in flight, delayed or dead in "
        "all) are estimated from a sample of the table; smaller ones, the oldest ready "
        "age and expired leases stay exact. Says which numbers are estimates: "
        "pgq_stats_estimated 1 (prometheus), \"estimated\": true on those rows (--json).",
    ),
]


@dataclass(frozen=True)
class StatsPlan:
    fmt: Format | None  # None: prometheus
    textfile: Path | None
    textfile_name: str
    thresholds: tuple[health.Threshold, ...]


def stats_plan(
    fmt: StatsFormat,
    json_out: bool,
    textfile_dir: str | None,
    textfile_name: str,
    fail_if: list[str] | None,
) -> StatsPlan:
    """Validate the health options of `pgq stats` (exit 2 on bad input, before SQL)."""
    with boundary():
        thresholds = tuple(health.parse_thresholds(fail_if or ()))
        textfile = None
        if textfile_dir is None and textfile_name != DEFAULT_TEXTFILE_NAME:
            raise InvalidInput(
                "--textfile-name names a file in --textfile-dir",
                hint="add --textfile-dir DIR, or drop --textfile-name",
            )
        if textfile_dir is not None:
            if json_out or fmt not in (StatsFormat.auto, StatsFormat.prometheus):
                raise InvalidInput(
                    "--textfile-dir writes the Prometheus format",
                    hint="drop --json/--format, or use --format prometheus",
                )
            textfile = prometheus.check_directory(textfile_dir)
            prometheus.check_filename(textfile_name)
        if fmt is StatsFormat.prometheus or textfile is not None:
            if json_out:
                raise InvalidInput("--json and --format prometheus exclude each other")
            return StatsPlan(None, textfile, textfile_name, thresholds)
        return StatsPlan(
            render.resolve_format(Format(fmt.value), json_out), None, textfile_name, thresholds
        )


def stats_emit(
    q: Queue, plan: StatsPlan, *, queue: str | None, estimate: bool, schema: str
) -> None:
    """Collect, write the output, then exit 3 if a --fail-if threshold is crossed.

    The output is written first, so the metrics of a bad moment still reach Prometheus.
    """
    # Prometheus output carries fair queues' top keys too (pgq_key_messages).
    snapshot = health.collect(q, queue=queue, estimate=estimate, by_key=plan.fmt is None)
    crossed = health.breaches(snapshot.stats, plan.thresholds)
    if plan.fmt is Format.json and estimate:
        # Each row says whether any of its numbers is estimated from a sample.
        rows = [
            {**r.to_json(), "estimated": (r.queue, r.priority) in snapshot.sampled}
            for r in snapshot.stats.rows
        ]
        render.records(rows, (), Format.json)
    elif plan.fmt is not None:
        render.stats(snapshot.stats, plan.fmt)
    else:
        text = prometheus.render(snapshot, schema=schema, breached=crossed)
        if plan.textfile is None:
            sys.stdout.write(text)
        else:
            prometheus.write_textfile(plan.textfile, text, plan.textfile_name)
    for breach in crossed:
        say(f"pgq: alert: {breach.describe()} [--fail-if '{breach.threshold.text}']")
    if crossed:
        raise typer.Exit(int(ExitCode.NOTHING_DONE))


# ----------------------------------------------------------------------------- purge


@app.command()
def purge(
    queue: Annotated[str, typer.Argument(help="The queue to purge.", show_default=False)],
    state: Annotated[
        list[str] | None,
        typer.Option(
            "--state",
            help="Only messages in this state: ready | leased | expired | delayed | dead "
            "(repeatable).",
        ),
    ] = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            help="Only messages sent at least this long ago (30s, 15m, 2h, 7d); dead "
            "letters: that died at least this long ago.",
        ),
    ] = None,
    everything: Annotated[
        bool, typer.Option("--all", help="Delete every message of the queue (no filter).")
    ] = False,
    batch: Annotated[
        int, typer.Option("--batch", help="Rows per batch; each batch is its own transaction.")
    ] = purge_core.DEFAULT_BATCH,
    max_runtime: Annotated[
        str | None,
        typer.Option("--max-runtime", help="Stop between batches after this long (30s, 5m)."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    dsn: DsnOpt = "",
    schema: SchemaOpt = DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    statement_timeout: StatementTimeoutOpt = PURGE_STATEMENT_TIMEOUT_MS,
) -> None:
    """Delete a queue's messages by state and age, in short batches (never one long lock).

    Needs --state and/or --older-than, or --all. Leased messages are deleted too if
    selected: their consumers' acks then exit 3.
    """
    with boundary():
        check_queue(queue)
        age = parse_duration(older_than, "--older-than") if older_than is not None else None
        runtime = (
            parse_duration(max_runtime, "--max-runtime") if max_runtime is not None else None
        )
        if runtime is not None and runtime <= 0:
            raise InvalidInput("--max-runtime must be more than 0")
        # The library's own checks, before connecting: exit 2 even with the database down.
        states = purge_core.check_request(queue, state or [], age, everything, batch, runtime)
    with session("purge", dsn, schema, statement_timeout_ms=statement_timeout) as q:
        result = purge_core.purge(
            q,
            queue,
            states=states or (),
            older_than=age,
            everything=everything,
            batch=batch,
            max_runtime=runtime,
            dry_run=dry_run,
        )
        data = result.to_json()
        if json_out:
            render.one(data, Format.json)
        else:
            data["states"] = ",".join(result.states) if result.states else "all"
            data["batches"] = ",".join(map(str, result.batches))
            render.one(data, Format.plain)
    verb = "would delete" if result.dry_run else "deleted"
    more = " (stopped by --max-runtime; run it again for the rest)" if result.stopped_early else ""
    say(
        f"pgq: {verb} {result.deleted} message(s) from {queue!r} in "
        f"{len(result.batches)} batch(es) of at most {batch}{more}"
    )


# ----------------------------------------------------------------------------- watch


@app.command()
def watch(
    queue: Annotated[
        str | None, typer.Option("--queue", "-q", help="Only this queue.")
    ] = None,
    interval: Annotated[
        float, typer.Option("--interval", help="Seconds between frames.")
    ] = 1.0,
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", "-n", help="Stop after N frames (default: until Ctrl-C)."),
    ] = None,
    once: Annotated[bool, typer.Option("--once", help="One frame, then exit.")] = False,
    estimate: Annotated[
        bool | None,
        typer.Option(
            "--estimate/--exact",
            help="Estimate large ready counts (see stats --estimate) or count exactly. "
            f"Default: estimate above {watch_core.AUTO_ESTIMATE_ROWS:,} rows.",
            show_default=False,
        ),
    ] = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
) -> None:
    """Live view: depth per priority and state, claim/send/ack rates, oldest ready age.

    Redraws in place on a terminal; on a pipe prints one frame after another as text
    (--json: one JSON object per frame). Rates are rows updated (claims), inserted (sends)
    and deleted (acks) per second on the messages table, for every queue, from
    PostgreSQL's statistics: a consumer's counts can show up to ~10 s late after it goes
    idle. The first frame has no rates. Ctrl-C exits 0.
    """
    with boundary():
        if queue is not None:
            check_queue(queue)
        if not 0.05 <= interval <= 3600:
            raise InvalidInput("--interval must be 0.05..3600 seconds")
        if iterations is not None and iterations < 1:
            raise InvalidInput("--iterations must be 1 or more")
        if once and iterations is not None:
            raise InvalidInput("--once and --iterations exclude each other")
    count = 1 if once else iterations
    with session("watch", dsn, schema) as q:
        if json_out:
            watch_core.run(
                q,
                queue=queue,
                interval=interval,
                iterations=count,
                estimate=estimate,
                emit=lambda f: render.one(f.to_json(), Format.json),
            )
        else:
            watch_core.run(
                q,
                queue=queue,
                interval=interval,
                iterations=count,
                estimate=estimate,
                live=sys.stdout.isatty(),
            )


# ----------------------------------------------------------------------------- doctor

_SEVERITY_STYLE = {"ok": "green", "info": "cyan", "warning": "yellow", "serious": "bold red"}


@app.command()
def doctor(
    queue: Annotated[
        str, typer.Option("--queue", "-q", help="Check the claim plan for this queue.")
    ] = DEFAULT_QUEUE,
    max_xact_age: Annotated[
        str,
        typer.Option(
            "--max-xact-age",
            help="Report transactions older than this that hold back vacuum (30s, 5m).",
        ),
    ] = "5m",
    problems_only: Annotated[
        bool, typer.Option("--problems", help="Show only findings that are not ok.")
    ] = False,
    dsn: DsnOpt = "",
    schema: SchemaOpt = DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Check a pgq installation; print each finding with a fix. Exit 3 if any is serious.

    Checks: schema version against this package, missing or invalid indexes, that the
    claim plan uses messages_ready_idx, dead tuples and last vacuum, transactions holding
    back the xmin horizon, expired leases waiting.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        check_queue(queue)
        max_age = parse_duration(max_xact_age, "--max-xact-age")
    with session("doctor", dsn, schema) as q:
        report = doctor_core.run(q, queue=queue, max_xact_age_s=max_age)
        shown = report.problems if problems_only else report.findings
        if fmt is Format.json:
            for f in shown:
                render.one(f.to_json(), Format.json)
        elif fmt is Format.rich:
            table = Table(title=f"pgq doctor — schema {schema}", title_justify="left")
            for header in ("severity", "check", "finding", "fix"):
                table.add_column(header, overflow="fold")
            for f in shown:
                style = _SEVERITY_STYLE[f.severity]
                table.add_row(f"[{style}]{f.severity}[/{style}]", f.check, f.summary, f.fix)
            Console().print(table)
        else:
            render._rows_out(
                fmt,
                ("severity", "check", "finding", "fix"),
                [[f.severity, f.check, f.summary, f.fix] for f in shown],
                "",
            )
        serious = [f for f in report.findings if f.severity == "serious"]
        if serious:
            say(f"pgq: doctor found {len(serious)} serious problem(s)")
            raise typer.Exit(int(ExitCode.NOTHING_DONE))
