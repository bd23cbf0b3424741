"""`pgq bench`: claim latency and throughput under in-flight and delayed backlogs.

Thin: parses options, opens connections through `connection.open_target`, calls
`bench.runner.run` and renders through `output.py`. The measuring lives in
`pgq_cli/bench/runner.py`; it works in a scratch schema that it drops afterwards, so it is safe to
point at a server with real queues.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from ..bench import DEFAULT_INFLIGHT
from ..core.errors import InvalidInput, PgqError
from ..core.exitcodes import ExitCode
from . import output as render
from .boundary import boundary, state, status
from .connection import open_target
from .options import DURATION, DsnOpt, FormatOpt, JsonOpt, seconds_of, seconds_text
from .output import Format

if TYPE_CHECKING:
    import psycopg


class ClaimNotExact(PgqError):
    """the claim returned more than qty rows or leased a message twice."""

    exit_code = ExitCode.NOTHING_DONE  # 3: a threshold the caller relies on was crossed


# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()

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


@commands.command("bench")
def bench_command(
    inflight: Annotated[
        str,
        typer.Option("--inflight", help="Comma-separated in-flight (leased) backlog sizes."),
    ] = ",".join(str(n) for n in DEFAULT_INFLIGHT),
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
        str,
        typer.Option(
            "--max-seconds",
            metavar=DURATION,
            help="Stop each consumer run after this long (10s, 1m).",
        ),
    ] = seconds_text(10.0),
    compare_naive: Annotated[
        bool,
        typer.Option(
            "--compare-naive",
            help="Measure the vt-filter design pgq grew from (docs/design.md) in the same run.",
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
    fmt: FormatOpt = Format.auto,
) -> None:
    """Measure claim latency and claim+ack throughput as the in-flight backlog grows.

    Works in a scratch schema (pgq_bench_<random>, migrated like the real one) that it
    drops afterwards: real queues are never touched. Latency is timed on the client around
    the claim's round trip; over-claims (a claim returning more than --qty) and duplicate
    leases (a message handed out twice within a live lease) are counted, and exit 3 if any.
    """
    # The runner (psycopg, threads) loads when a bench runs, not for `pgq bench --help`.
    from ..bench import runner as bench
    from ..core import connect

    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        sizes = _parse_sizes(inflight)
        max_seconds_s = seconds_of(max_seconds, "--max-seconds", allow_zero=False)
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
                max_seconds=max_seconds_s,
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

        with render.bench_progress(show=not state.quiet) as progress:
            result = bench.run(open_conn, config, progress=progress)
        if keep:
            status(f"pgq: kept scratch schema {result.schema}")
        render.bench_report(result, fmt)
        if result.over_claims or result.duplicate_leases:
            raise ClaimNotExact(
                f"{result.over_claims} over-claims and {result.duplicate_leases} duplicate leases",
                hint="the claim is not exactly-n here: report it with the --explain output",
            )
