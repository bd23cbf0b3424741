"""`pgq queues`, `pgq queue config` and `pgq queue key`: the queues there are and their
stored settings, fairness included.

Thin: validate, open a session, call one function of `settings`, render.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..core import checks
from ..core.errors import InvalidInput
from . import output as render
from .boundary import boundary, status
from .connection import session
from .options import (
    DURATION,
    DsnOpt,
    FormatOpt,
    HeaderOpt,
    JsonOpt,
    QueueArg,
    QueueNamedOpt,
    SchemaOpt,
    pick_queue,
    seconds_of,
)
from .output import Format

# Registered by `main.build_app`. Typer lists a Typer's own commands before its groups, so
# `pgq queues` comes before `pgq queue` in `pgq --help`.
commands = typer.Typer()
queue_app = typer.Typer(
    name="queue",
    help="Per-queue settings stored in the database (see also pause, resume, queues).",
    no_args_is_help=True,
)
commands.add_typer(queue_app)


@commands.command()
def queues(
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    header: HeaderOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """List queues (with messages or settings): max deliveries, pause, depth by state."""
    render.plain_header(header)
    fmt = render.resolve_format(fmt, json_out)
    with session("queues", dsn, schema) as q:
        found = [info.to_json() for info in q.queues()]
    render.queue_list(found, fmt)


@queue_app.command("config")
def config(
    queue_arg: QueueArg = None,
    queue: QueueNamedOpt = None,
    max_deliveries: Annotated[
        int | None,
        typer.Option(
            "--max-deliveries",
            help="Deliveries before a message that comes back goes to state dead.",
            show_default=False,
        ),
    ] = None,
    unlimited: Annotated[
        bool, typer.Option("--unlimited", help="Remove the max-deliveries limit.")
    ] = False,
    fair: Annotated[
        bool | None,
        typer.Option(
            "--fair/--no-fair",
            help="Rotate claims across fairness keys (send --key) within each priority.",
            show_default=False,
        ),
    ] = None,
    max_inflight_per_key: Annotated[
        int | None,
        typer.Option(
            "--max-inflight-per-key",
            help="Fair queues: a key holding this many live leases yields nothing more.",
            show_default=False,
        ),
    ] = None,
    no_max_inflight: Annotated[
        bool, typer.Option("--no-max-inflight", help="Remove the per-key cap.")
    ] = False,
    dedup_window: Annotated[
        str | None,
        typer.Option(
            "--dedup-window",
            metavar=DURATION,
            help="Set how long a `send --dedup-key` key is remembered (30m, 24h, 7d; "
            "default 24h).",
            show_default=False,
        ),
    ] = None,
    show_dedup_window: Annotated[
        bool, typer.Option("--show-dedup-window", help="Show the queue's dedup window.")
    ] = False,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Show or set a queue's settings. With no option, show them.

    --max-deliveries N: a message delivered N times that comes back (its lease runs out, or
    it is requeued) goes to state dead instead of ready; see `pgq peek --state dead` and
    `pgq requeue --dead`. Waiting messages already delivered N times go dead at once.

    --fair: claims rotate across the keys messages were sent with (`pgq send --key`):
    priority first, then the key served least recently (by weight, `pgq queue key`),
    FIFO within a key. --max-inflight-per-key N: a key holding N live leases yields
    nothing until one is acked, requeued or expires. See README, "Fairness".

    --dedup-window D: a `pgq send --dedup-key K` repeated within D of the first send of K to
    this queue sends nothing and prints the first message's id (default 24h). `pgq purge`
    of the queue deletes keys older than that.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        name = pick_queue(queue, queue_arg)
        if max_deliveries is not None and unlimited:
            raise InvalidInput("give --max-deliveries or --unlimited, not both")
        checks.check_max_deliveries(max_deliveries)
        if max_inflight_per_key is not None and no_max_inflight:
            raise InvalidInput("give --max-inflight-per-key or --no-max-inflight, not both")
        checks.check_max_inflight(max_inflight_per_key)
        window_s = None
        if dedup_window is not None:
            window_s = checks.check_dedup_window(seconds_of(dedup_window, "--dedup-window"))
        dedup_only = window_s is not None or show_dedup_window
        if dedup_only and (
            max_deliveries is not None
            or unlimited
            or fair is not None
            or max_inflight_per_key is not None
            or no_max_inflight
        ):
            raise InvalidInput(
                "set the dedup window on its own, not with other settings",
                hint="run `pgq queue config` once for each",
            )
    set_cap = max_inflight_per_key is not None or no_max_inflight
    if dedup_only:
        with session("queue config", dsn, schema) as q:
            if window_s is None:
                window = q.dedup_window(name)
            else:
                window = q.set_dedup_window(name, window_s)
            render.one(window.to_json(), fmt)
        return
    with session("queue config", dsn, schema) as q:
        moved: dict[str, object] = {}
        if max_deliveries is not None or unlimited:
            result = q.configure(name, max_deliveries=max_deliveries)
            moved = {"moved_to_dead": result.moved_to_dead}
            if result.moved_to_dead:
                status(
                    f"pgq: {result.moved_to_dead} waiting message(s) of {name!r} had already "
                    f"been delivered {max_deliveries} times and went to dead letters"
                )
        if fair is not None or set_cap:
            q.configure_fairness(
                name,
                fair=fair,
                max_inflight_per_key=max_inflight_per_key,
                set_max_inflight=set_cap,
            )
        shown = {**q.settings(name).to_json(), **q.fairness(name).to_json(), **moved}
        render.queue_settings(shown, fmt, extra=(*render.FAIRNESS_HEADERS, *moved))


@queue_app.command("key")
def key_weight(
    queue_arg: QueueArg = None,
    key: Annotated[
        str | None,
        typer.Argument(
            metavar="KEY",
            help="The fairness key (as sent with --key); omit it for messages sent without. "
            "With -q, the only argument is the key.",
            show_default=False,
        ),
    ] = None,
    queue: QueueNamedOpt = None,
    weight: Annotated[
        float,
        typer.Option(
            "--weight",
            help="Share of claims while several keys have work: 2 gets twice what 1 gets.",
        ),
    ] = 1.0,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Set a fairness key's weight in a fair queue (a tier: gold 4, silver 2, free 1).

    Takes effect at the next claim, for every consumer. Shows the key's live leases.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        if queue is not None and key is None:
            # `queue key -q Q KEY`: with the queue given by -q, the one argument is the key.
            queue_arg, key = None, queue_arg
        name = pick_queue(queue, queue_arg)
        if key is not None:
            checks.check_key(key)
        checks.check_weight(weight)
    with session("queue key", dsn, schema) as q:
        render.key_weight(q.set_key_weight(name, key, weight).to_json(), fmt)
