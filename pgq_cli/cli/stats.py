"""`pgq stats`: messages per queue and priority by state, and its health half for cron
and alerting (`--format prometheus`, `--textfile-dir`, `--fail-if`, `--estimate`).

Thin: validate the options before connecting (bad input exits 2 even when the database is
down), collect through `ops.thresholds`, render.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..core import checks
from ..core.errors import InvalidInput
from ..core.exitcodes import ExitCode
from ..ops import estimate as estimate_core
from ..ops import prometheus
from ..ops import thresholds as health
from . import output as render
from .boundary import boundary, say
from .connection import session
from .options import DsnOpt, HeaderOpt, JsonOpt, OptionalQueueOpt, SchemaOpt
from .output import Format

if TYPE_CHECKING:
    from ..core.queue import Queue

DEFAULT_TEXTFILE_NAME = prometheus.DEFAULT_FILENAME

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()


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
        f"{estimate_core.EXACT_READY_CAP:,} (ready per priority; in flight, delayed or dead "
        "per class and queue) come from a sample, each within a stated bound ~95% of the "
        "time; smaller ones and the oldest ready age are exact. Estimates are marked: "
        "'estimated' column, '~' (table, rich), \"estimate_bounds\" (--json), "
        "pgq_stats_estimated (prometheus).",
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
    if plan.textfile is not None:
        # Groups the previous textfile reported and that have since drained: written at 0.
        previous = prometheus.groups_in_textfile(
            plan.textfile / plan.textfile_name, schema=schema, queue=queue
        )
        drained = snapshot.stats.with_drained(previous, q.configured(queue=queue))
        snapshot = replace(snapshot, stats=drained)
    crossed = health.breaches(snapshot.stats, plan.thresholds)
    if plan.fmt is not None:
        # With --estimate, every format marks the rows with a number from the sample.
        render.stats(snapshot.stats, plan.fmt, snapshot.sampled if estimate else None)
    else:
        # The exposition format is built in pgq_cli/ops/prometheus.py: a wire format, not a table.
        if plan.textfile is None:
            render.text(prometheus.render(snapshot, schema=schema, breached=crossed))
        else:
            metrics = prometheus.registry(snapshot, schema=schema, breached=crossed)
            prometheus.write_textfile(plan.textfile, metrics, plan.textfile_name)
    for breach in crossed:
        say(f"pgq: alert: {breach.describe()} [--fail-if '{breach.threshold.text}']")
    if crossed:
        raise typer.Exit(int(ExitCode.NOTHING_DONE))


@commands.command()
def stats(
    queue: OptionalQueueOpt = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    header: HeaderOpt = False,
    fmt: StatsFormatOpt = StatsFormat.auto,
    textfile_dir: TextfileDirOpt = None,
    textfile_name: TextfileNameOpt = DEFAULT_TEXTFILE_NAME,
    fail_if: FailIfOpt = None,
    estimate: EstimateOpt = False,
    by_key: Annotated[
        bool,
        typer.Option(
            "--by-key",
            help="With --queue: ready, leased and delayed per fairness key, the --top keys "
            "by ready depth (reads every live row of the queue).",
        ),
    ] = False,
    top: Annotated[
        int, typer.Option("--top", help="With --by-key: this many keys.")
    ] = checks.DEFAULT_TOP_KEYS,
) -> None:
    """Messages per queue and priority by state (priority 10 is most urgent, claimed first).

    For cron and alerting: --format prometheus (--textfile-dir for node_exporter) and
    --fail-if thresholds, which exit 3 when crossed.

    Examples:
      pgq stats
      pgq stats -q emails --json
      pgq stats --format prometheus
      pgq stats --fail-if 'oldest_ready_age > 300'
      pgq stats --by-key -q emails --top 10
    """
    render.plain_header(header)
    plan = stats_plan(fmt, json_out, textfile_dir, textfile_name, fail_if)
    with boundary():
        if queue is not None:
            checks.check_queue(queue)
        checks.check_top_keys(top)
        if by_key:
            if queue is None:
                raise InvalidInput("--by-key needs --queue")
            if plan.fmt is None or plan.thresholds or estimate:
                raise InvalidInput(
                    "--by-key goes without --format prometheus, --fail-if and --estimate"
                )
    if by_key:
        assert queue is not None and plan.fmt is not None
        with session("stats", dsn, schema) as q:
            depths = q.depth_by_key(queue, top=top)
        render.key_depths([d.to_json() for d in depths], plan.fmt, queue=queue)
        return
    with session("stats", dsn, schema) as q:
        stats_emit(q, plan, queue=queue, estimate=estimate, schema=schema)
