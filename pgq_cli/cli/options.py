"""Option aliases shared by every command, defined once (Typer `Annotated` style)."""

from __future__ import annotations

from typing import Annotated

import typer

from ..core.reconnect import DEFAULT_RECONNECT_TIMEOUT_S
from .completion import complete_queue
from .output import Format

DsnOpt = Annotated[
    str,
    typer.Option(
        "--dsn",
        envvar="PGQ_DSN",
        show_envvar=True,
        show_default=False,
        help="libpq connection string or URI. Falls back to DATABASE_URL, then libpq's "
        "environment (PGHOST, PGPORT, PGDATABASE, PGUSER, PGSERVICE…), then, with nothing "
        "configured, an embedded PostgreSQL (pgq --no-embedded: never). Prefer PGPASSWORD "
        "or ~/.pgpass to a password in it.",
    ),
]
SchemaOpt = Annotated[
    str,
    typer.Option("--schema", envvar="PGQ_SCHEMA", show_envvar=True, help="Schema pgq lives in."),
]
QueueOpt = Annotated[
    str,
    typer.Option(
        "--queue",
        "-q",
        envvar="PGQ_QUEUE",
        help="Queue name (1-64 of A-Z a-z 0-9 _ . : -).",
        autocompletion=complete_queue,
    ),
]
# The same for commands where the queue is optional (all queues when not given).
OptionalQueueOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        "-q",
        help="Only this queue.",
        autocompletion=complete_queue,
        show_default=False,
    ),
]
# A queue named as an argument (`pgq pause Q`).
QueueArg = Annotated[
    str,
    typer.Argument(
        help="Queue name.", autocompletion=complete_queue, show_default=False
    ),
]
JsonOpt = Annotated[
    bool, typer.Option("--json", help="One JSON object per line on stdout (plain, no colour).")
]
HeaderOpt = Annotated[
    bool,
    typer.Option(
        "--header", help="Plain output: a first line naming the tab-separated columns."
    ),
]
FormatOpt = Annotated[
    Format,
    typer.Option(
        "--format",
        help="auto: a table on a terminal, tab-separated lines on a pipe; table: tabulate.",
        case_sensitive=False,
    ),
]
PriorityOpt = Annotated[
    int,
    typer.Option(
        "--priority",
        "-p",
        help="1..10; 10 is most urgent and is claimed first.",
    ),
]
KeyOpt = Annotated[
    str | None,
    typer.Option(
        "--key",
        "-k",
        help="Fairness key (tenant, org or customer id; 1-128 printable characters).",
        show_default=False,
    ),
]
LeaseOpt = Annotated[
    str | None,
    typer.Option(
        "--lease",
        help="The lease token from claim: act only if it is still the current lease.",
    ),
]
StatementTimeoutOpt = Annotated[
    int,
    typer.Option(
        "--statement-timeout",
        envvar="PGQ_STATEMENT_TIMEOUT_MS",
        help="statement_timeout in milliseconds (exit 75 when hit).",
    ),
]
DEFAULT_RECONNECT_TIMEOUT = f"{DEFAULT_RECONNECT_TIMEOUT_S:g}s"
ReconnectTimeoutOpt = Annotated[
    str,
    typer.Option(
        "--reconnect-timeout",
        help="When the connection goes away (restart, failover), reconnect with back-off "
        "for this long (30s, 5m; 0: exit 69 at once), then exit 69.",
    ),
]
