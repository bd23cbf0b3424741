"""`pgq pause` and `pgq resume`: stop and restart claims from a queue or its low band.

Thin: validate, open a session, call one function of `settings`, render.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..core import checks
from . import output as render
from .boundary import boundary, status
from .connection import session
from .options import DsnOpt, FormatOpt, JsonOpt, QueueArg, QueueNamedOpt, SchemaOpt, pick_queue
from .output import Format

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()


@commands.command()
def pause(
    queue_arg: QueueArg = None,
    queue: QueueNamedOpt = None,
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
        name = pick_queue(queue, queue_arg)
        checks.check_below_priority(below_priority)
    with session("pause", dsn, schema) as q:
        result = q.pause(name, below_priority=below_priority)
        render.queue_settings(result.to_json(), fmt)


@commands.command()
def resume(
    queue_arg: QueueArg = None,
    queue: QueueNamedOpt = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Lift a pause (whole queue and band) and wake waiting claimers."""
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        name = pick_queue(queue, queue_arg)
    with session("resume", dsn, schema) as q:
        result = q.resume(name)
        if result.updated_at is None:
            status(f"pgq: queue {name!r} was not paused")
        render.queue_settings(result.to_json(), fmt)
