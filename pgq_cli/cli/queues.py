"""`pgq queues` and `pgq queue config`: the queues there are and their stored settings.

Thin: validate, open a session, call one function of `settings`, render.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..core import checks
from ..core.errors import InvalidInput
from . import output as render
from .boundary import boundary, say
from .connection import session
from .options import DsnOpt, FormatOpt, HeaderOpt, JsonOpt, QueueArg, SchemaOpt
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
            render.queue_settings(q.settings(queue).to_json(), fmt)
            return
        result = q.configure(queue, max_deliveries=max_deliveries)
        if result.moved_to_dead:
            say(
                f"pgq: {result.moved_to_dead} waiting message(s) of {queue!r} had already "
                f"been delivered {max_deliveries} times and went to dead letters"
            )
        render.queue_settings(result.to_json(), fmt, extra=("moved_to_dead",))
