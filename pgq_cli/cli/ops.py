"""Operations commands: `pgq purge`, `pgq watch`, `pgq doctor`.

Thin: parse and validate options (before connecting, so bad input exits 2 even when the
database is down), call one function of `ops/` (`purge.py`, `watch.py`, `doctor.py`),
render through `output.py`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated

import typer

from ..core import purge as purge_core
from ..core.checks import DEFAULT_QUEUE, DEFAULT_SCHEMA, check_queue
from ..core.durations import parse_duration, parse_milliseconds
from ..core.errors import InvalidInput
from ..core.exitcodes import ExitCode
from ..ops import watch as watch_core
from . import output as render
from .boundary import boundary, say, status
from .connection import run_reconnecting, session
from .options import (
    DEFAULT_RECONNECT_TIMEOUT,
    DURATION,
    DsnOpt,
    FormatOpt,
    JsonOpt,
    OptionalQueueOpt,
    QueueArg,
    QueueNamedOpt,
    ReconnectTimeoutOpt,
    SchemaOpt,
    StatementTimeoutOpt,
    pick_queue,
    seconds_of,
    seconds_text,
)
from .output import Format

if TYPE_CHECKING:  # psycopg loads when a command connects, not for `--help`
    from ..core.queue import Queue

PURGE_STATEMENT_TIMEOUT_MS = 60_000

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()

# ----------------------------------------------------------------------------- purge


@commands.command()
def purge(
    queue_arg: QueueArg = None,
    queue: QueueNamedOpt = None,
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
            metavar=DURATION,
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
        typer.Option(
            "--max-runtime",
            metavar=DURATION,
            help="Stop between batches after this long (30s, 5m).",
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Count what would be deleted; delete nothing.")
    ] = False,
    dsn: DsnOpt = "",
    schema: SchemaOpt = DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
    statement_timeout: StatementTimeoutOpt = str(PURGE_STATEMENT_TIMEOUT_MS),
) -> None:
    """Delete a queue's messages by state and age, in short batches (never one long lock).

    Needs --state and/or --older-than, or --all. Leased messages are deleted too if
    selected: their consumers' acks then exit 3.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        name = pick_queue(queue, queue_arg)
        # An age may be years (parse_duration's bound); purge_core checks it.
        age = parse_duration(older_than, "--older-than") if older_than is not None else None
        runtime = seconds_of(max_runtime, "--max-runtime") if max_runtime is not None else None
        statement_timeout_ms = parse_milliseconds(statement_timeout, "--statement-timeout")
        # The library's own checks, before connecting: exit 2 even with the database down.
        states = purge_core.check_request(name, state or [], age, everything, batch, runtime)
    with session("purge", dsn, schema, statement_timeout_ms=statement_timeout_ms) as q:
        result = q.purge(
            name,
            states=states or (),
            older_than=age,
            everything=everything,
            batch=batch,
            max_runtime=runtime,
            dry_run=dry_run,
        )
        data = result.to_json()
        if fmt is not Format.json:
            data["states"] = ",".join(result.states) if result.states else "all"
            data["batches"] = ",".join(map(str, result.batches))
        render.one(data, fmt)
    verb = "would delete" if result.dry_run else "deleted"
    more = " (stopped by --max-runtime; run it again for the rest)" if result.stopped_early else ""
    status(
        f"pgq: {verb} {result.deleted} message(s) from {name!r} in "
        f"{len(result.batches)} batch(es) of at most {batch}{more}"
    )


# ----------------------------------------------------------------------------- watch


@commands.command()
def watch(
    queue: OptionalQueueOpt = None,
    interval: Annotated[
        str,
        typer.Option("--interval", metavar=DURATION, help="Time between frames (500ms, 2s)."),
    ] = seconds_text(1.0),
    iterations: Annotated[
        int | None,
        typer.Option("--iterations", help="Stop after N frames (default: until Ctrl-C)."),
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
    reconnect_timeout: ReconnectTimeoutOpt = DEFAULT_RECONNECT_TIMEOUT,
    dsn: DsnOpt = "",
    schema: SchemaOpt = DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Live view: depth per priority and state, claim/send/ack rates, oldest ready age.

    Redraws in place on a terminal; on a pipe prints one frame after another as text
    (--json: one JSON object per frame). Rates are rows updated (claims), inserted (sends)
    and deleted (acks) per second on the messages table, for every queue, from
    PostgreSQL's statistics: a consumer's counts can show up to ~10 s late after it goes
    idle. The first frame has no rates. Ctrl-C exits 0. A connection that goes away
    (server restart, failover) is dialled again with back-off for up to
    --reconnect-timeout; the first frame after it has no rates.
    """
    with boundary():
        if queue is not None:
            check_queue(queue)
        interval_s = seconds_of(interval, "--interval")
        if not 0.05 <= interval_s <= 3600:
            raise InvalidInput("--interval must be 50ms..1h")
        if iterations is not None and iterations < 1:
            raise InvalidInput("--iterations must be 1 or more")
        if once and iterations is not None:
            raise InvalidInput("--once and --iterations exclude each other")
        reconnect_s = seconds_of(reconnect_timeout, "--reconnect-timeout")
    count = 1 if once else iterations
    fmt = render.resolve_format(fmt, json_out)
    shown = 0

    def watch_frames(q: Queue) -> None:
        nonlocal shown

        def count_shown(frame: watch_core.Frame) -> None:
            nonlocal shown
            shown += 1

        # After a reconnect: only the frames still owed, and one interval's pause first.
        if shown:
            time.sleep(interval_s)
        left = None if count is None else count - shown
        watch_core.run(
            q,
            emit=show,
            queue=queue,
            interval=interval_s,
            iterations=left,
            estimate=estimate,
            on_frame=count_shown,
        )

    with render.watch_frames(fmt, queue=queue) as show:
        run_reconnecting("watch", dsn, schema, watch_frames, reconnect_timeout_s=reconnect_s)


# ----------------------------------------------------------------------------- doctor


@commands.command()
def doctor(
    queue: Annotated[
        str, typer.Option("--queue", "-q", help="Check the claim plan for this queue.")
    ] = DEFAULT_QUEUE,
    max_xact_age: Annotated[
        str,
        typer.Option(
            "--max-xact-age",
            metavar=DURATION,
            help="Report transactions older than this that hold back vacuum (30s, 5m).",
        ),
    ] = "5m",
    problems_only: Annotated[
        bool,
        typer.Option(
            "--problems",
            help="Show only findings that need action (warning, serious); print nothing when "
            "there are none (cron mails nothing).",
        ),
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
        from ..ops import doctor as doctor_core  # psycopg: loaded when it runs, not for help

        report = doctor_core.run(q, queue=queue, max_xact_age_s=max_age)
        shown = report.problems if problems_only else report.findings
        if shown or not problems_only:  # --problems, all well: not even an empty table
            render.findings(shown, fmt, schema=schema)
        serious = [f for f in report.findings if f.severity == "serious"]
        if serious:
            say(f"pgq: doctor found {len(serious)} serious problem(s)")
            raise typer.Exit(int(ExitCode.NOTHING_DONE))
