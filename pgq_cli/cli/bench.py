"""`pgq bench`: claim latency and throughput under in-flight and delayed backlogs.

Thin: parses options, opens connections through the session machinery, calls `bench.run`
and renders. The measuring lives in `bench.py`; it works in a scratch schema that it drops
afterwards, so it is safe to point at a server with real queues.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import psycopg
import typer
from rich import box
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from tabulate import tabulate

from ..bench import runner as bench
from ..core import connect
from ..core.errors import ExitCode, InvalidInput, PgqError
from .app import app
from .boundary import boundary, open_target, say
from .options import DsnOpt, JsonOpt


class ClaimNotExact(PgqError):
    """the claim returned more than qty rows or leased a message twice."""

    exit_code = ExitCode.NOTHING_DONE  # 3: a threshold the caller relies on was crossed


# Building a million-row backlog takes longer than an everyday command's statement_timeout.
BENCH_STATEMENT_TIMEOUT_MS = 30 * 60 * 1000


def _parse_sizes(text: str) -> tuple[int, ...]:
    try:
        sizes = tuple(int(part.replace("_", "")) for part in text.split(",") if part.strip())
    except ValueError:
        raise InvalidInput(
            f"--inflight must be comma-separated whole numbers, not {text!r}",
            hint="e.g. --inflight 0,10000,100000",
        ) from None
    if not sizes or any(n < 0 for n in sizes):
        raise InvalidInput("--inflight needs at least one size, each >= 0")
    return sizes


@contextmanager
def _progress_reporter() -> Iterator[bench.ProgressCallback | None]:
    """A rich progress bar on stderr when it is a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
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


def _rows(result: bench.BenchResult) -> list[list[Any]]:
    rows: list[list[Any]] = []
    for level in result.levels:
        lat, tp = level.latency, level.throughput
        rows.append(
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
    return rows


HEADERS = (
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


def _render(result: bench.BenchResult, json_out: bool) -> None:
    if json_out:
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
    if sys.stdout.isatty():
        table = Table(
            title=title,
            title_justify="left",
            caption=footer,
            caption_justify="left",
            box=box.SIMPLE_HEAD,
        )
        for header in HEADERS:
            left = header in ("design", "backlog")
            table.add_column(header, justify="left" if left else "right", no_wrap=True)
        for row in _rows(result):
            table.add_row(*(str(v) for v in row))
        Console().print(table)
    else:
        sys.stdout.write(title + "\n")
        sys.stdout.write(tabulate(_rows(result), headers=list(HEADERS), tablefmt="simple") + "\n")
        sys.stdout.write(footer + "\n")
    for design, plan in result.explain.items():
        sys.stdout.write(f"\nEXPLAIN (ANALYZE, BUFFERS), {design} claim at the largest backlog:\n")
        sys.stdout.write(plan + "\n")


@app.command("bench")
def bench_command(
    inflight: Annotated[
        str,
        typer.Option("--inflight", help="Comma-separated in-flight (leased) backlog sizes."),
    ] = ",".join(str(n) for n in bench.DEFAULT_INFLIGHT),
    delayed: Annotated[
        int, typer.Option("--delayed", help="Also measure with this many delayed messages.")
    ] = 0,
    ready: Annotated[
        int, typer.Option("--ready", help="Ready messages under the backlog while sampling.")
    ] = 10_000,
    qty: Annotated[int, typer.Option("--qty", "-n", help="Messages per claim.")] = 1,
    samples: Annotated[int, typer.Option("--samples", help="Timed claims per level.")] = 200,
    naive_samples: Annotated[
        int | None,
        typer.Option(
            "--naive-samples",
            help="Timed claims per level for the naive design (default: --samples).",
            show_default=False,
        ),
    ] = None,
    consumers: Annotated[
        int, typer.Option("--consumers", help="Concurrent connections claiming and acking.")
    ] = 4,
    messages: Annotated[
        int, typer.Option("--messages", help="Messages the consumers drain per level (0: skip).")
    ] = 10_000,
    max_seconds: Annotated[
        float, typer.Option("--max-seconds", help="Stop each consumer run after this long.")
    ] = 10.0,
    compare_naive: Annotated[
        bool,
        typer.Option(
            "--compare-naive",
            help="Measure the vt-filter design pgq grew from (DESIGN.md) in the same run.",
        ),
    ] = False,
    explain: Annotated[
        bool,
        typer.Option(
            "--explain", help="EXPLAIN (ANALYZE, BUFFERS) the claim at the largest backlog."
        ),
    ] = False,
    keep: Annotated[
        bool, typer.Option("--keep", help="Keep the scratch schema afterwards (for inspection).")
    ] = False,
    keys: Annotated[
        int,
        typer.Option(
            "--keys",
            help="Also measure a fair queue (queue config --fair) whose ready work is spread "
            "over this many keys, beside the ordinary claim at the same sizes.",
        ),
    ] = 0,
    hot_key: Annotated[
        int,
        typer.Option(
            "--hot-key",
            help="With --keys: this many more ready messages, in the fair queue all on one key.",
        ),
    ] = 0,
    dsn: DsnOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Measure claim latency and claim+ack throughput as the in-flight backlog grows.

    Works in a scratch schema (pgq_bench_<random>, migrated like the real one) that it
    drops afterwards: real queues are never touched. Latency is timed on the client around
    the claim's round trip; over-claims (a claim returning more than --qty) and duplicate
    leases (a message handed out twice within a live lease) are counted, and exit 3 if any.
    """
    with boundary():
        sizes = _parse_sizes(inflight)
        try:
            config = bench.BenchConfig(
                inflight=sizes,
                delayed=delayed,
                ready=ready,
                qty=qty,
                samples=samples,
                naive_samples=naive_samples,
                consumers=consumers,
                messages=messages,
                max_seconds=max_seconds,
                compare_naive=compare_naive,
                explain=explain,
                keep=keep,
                keys=keys,
                hot_key=hot_key,
            )
        except ValueError as exc:
            raise InvalidInput(str(exc)) from None
        target = open_target(dsn)

        def open_conn() -> psycopg.Connection[Any]:
            return connect.connect(
                target, "pgq bench", statement_timeout_ms=BENCH_STATEMENT_TIMEOUT_MS
            )

        with _progress_reporter() as progress:
            result = bench.run(open_conn, config, progress=progress)
        if keep:
            say(f"pgq: kept scratch schema {result.schema}")
        _render(result, json_out)
        if result.over_claims or result.duplicate_leases:
            raise ClaimNotExact(
                f"{result.over_claims} over-claims and {result.duplicate_leases} duplicate leases",
                hint="the claim is not exactly-n here: report it with the --explain output",
            )
