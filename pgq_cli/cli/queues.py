"""`pgq queue config`, `pgq pause`, `pgq resume`, `pgq queues`: per-queue settings.

Thin: validate, open a session, call one function of `settings`, render.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..core import checks
from ..core.errors import InvalidInput
from . import output as render
from .app import app
from .boundary import boundary, say, session
from .options import DsnOpt, FormatOpt, JsonOpt, QueueArg, SchemaOpt
from .output import Format

queue_app = typer.Typer(
    name="queue",
    help="Per-queue settings stored in the database (see also pause, resume, queues).",
    no_args_is_help=True,
)
app.add_typer(queue_app)

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
    """Plain and table cells: blank for unset, yes/no for flags (as in `pgq stats`)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    return value


def _show(obj: dict[str, object], headers: tuple[str, ...], fmt: Format) -> None:
    row = {k: _cell(v) for k, v in obj.items()}
    render.records([obj] if fmt is Format.json else [row], headers, fmt)


@queue_app.command("config")
def config(
    queue: QueueArg,
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
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Show or set a queue's settings. With no option, show them.

    --max-deliveries N: a message delivered N times that comes back (its lease runs out, or
    it is requeued) goes to state dead instead of ready; see `pgq peek --state dead` and
    `pgq requeue --dead`. Waiting messages already delivered N times go dead at once.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        checks.check_queue(queue)
        if max_deliveries is not None and unlimited:
            raise InvalidInput("give --max-deliveries or --unlimited, not both")
        checks.check_max_deliveries(max_deliveries)
    with session("queue config", dsn, schema) as q:
        if max_deliveries is None and not unlimited:
            _show(q.settings(queue).to_json(), SETTINGS_HEADERS, fmt)
            return
        result = q.configure(queue, max_deliveries=max_deliveries)
        if result.moved_to_dead:
            say(
                f"pgq: {result.moved_to_dead} waiting message(s) of {queue!r} had already "
                f"been delivered {max_deliveries} times and went to dead letters"
            )
        _show(result.to_json(), (*SETTINGS_HEADERS, "moved_to_dead"), fmt)


@app.command()
def pause(
    queue: QueueArg,
    below_priority: Annotated[
        int | None,
        typer.Option(
            "--below-priority",
            help="Pause only priorities below this (2..10); higher ones are still claimed.",
            show_default=False,
        ),
    ] = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Stop claims from a queue (or from its low-priority band) until `pgq resume`.

    Stored in the database and honoured by the claim itself, for every consumer at once.
    Messages already leased are not affected; sending still works.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        checks.check_queue(queue)
        checks.check_below_priority(below_priority)
    with session("pause", dsn, schema) as q:
        result = q.pause(queue, below_priority=below_priority)
        _show(result.to_json(), SETTINGS_HEADERS, fmt)


@app.command()
def resume(
    queue: QueueArg,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Lift a pause (whole queue and band) and wake waiting claimers."""
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        checks.check_queue(queue)
    with session("resume", dsn, schema) as q:
        result = q.resume(queue)
        if result.updated_at is None:
            say(f"pgq: queue {queue!r} was not paused")
        _show(result.to_json(), SETTINGS_HEADERS, fmt)


@app.command()
def queues(
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """List queues (with messages or settings): max deliveries, pause, depth by state."""
    fmt = render.resolve_format(fmt, json_out)
    with session("queues", dsn, schema) as q:
        found = [info.to_json() for info in q.queues()]
    if fmt is not Format.json:
        found = [{k: _cell(v) for k, v in r.items()} for r in found]
    render.records(found, QUEUES_HEADERS, fmt, title="pgq queues")
