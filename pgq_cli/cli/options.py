"""Option aliases shared by every command, defined once (Typer `Annotated` style), and the
option vocabulary every command follows (README, "Options"; tests/test_option_vocabulary.py
checks every command against it):

- the queue is `-q/--queue` (commands that took it as an argument still do: `QueueArg`);
- a time is a duration (`30s`, `5m`, `2h`, `1h30m`; a bare number is seconds), shown as
  DURATION in help; the PostgreSQL timeouts take `500ms`, `3s`, and a bare number stays
  milliseconds (MS);
- `-n` is a quantity, and only that;
- a command that prints data takes `--format {auto,rich,table,plain,json}` and `--json`;
- `--debug` and `--quiet` go before or after the command (`app.add_common_options`).
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..core import checks
from ..core.durations import parse_duration
from ..core.errors import InvalidInput
from ..core.reconnect import DEFAULT_RECONNECT_TIMEOUT_S
from .completion import complete_queue
from .output import Format

# The metavar of every time option, so that help says what it takes and the vocabulary
# test finds them all.
DURATION = "DURATION"
MILLISECONDS = "MS"

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
# Commands that change one queue's messages or settings (purge, pause, resume, queue
# config, queue key) name it with -q/--queue, or as their first argument (how they took
# it before 0.2.0): `pick_queue` takes either. No PGQ_QUEUE here: the queue they change is
# named on the command line.
QueueNamedOpt = Annotated[
    str | None,
    typer.Option(
        "--queue",
        "-q",
        help="Queue name (or give it as the first argument).",
        autocompletion=complete_queue,
        show_default=False,
    ),
]
QueueArg = Annotated[
    str | None,
    typer.Argument(
        metavar="QUEUE",
        help="Queue name: the same as -q/--queue.",
        autocompletion=complete_queue,
        show_default=False,
    ),
]


def pick_queue(option: str | None, argument: str | None) -> str:
    """The queue from -q/--queue or the QUEUE argument (either; both only if the same)."""
    if option is not None and argument is not None and option != argument:
        raise InvalidInput(
            f"two queues given: -q {option[:70]!r} and argument {argument[:70]!r}",
            hint="give the queue once, as -q QUEUE",
        )
    queue = option if option is not None else argument
    if queue is None:
        raise InvalidInput("no queue given", hint="give -q QUEUE")
    return checks.check_queue(queue)

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


def seconds_text(seconds: float) -> str:
    """A default in seconds as a duration option shows it (`30s`)."""
    return f"{seconds:g}s"


def seconds_of(text: str, flag: str, *, allow_zero: bool = True) -> float:
    """A time option's value in seconds: a duration (`30s`, `2m`; a bare number is
    seconds), finite, not negative (nor 0 unless `allow_zero`), at most a year."""
    return checks.check_seconds(parse_duration(text, flag), flag, allow_zero=allow_zero)


# --statement-timeout, --lock-timeout: read with `durations.parse_milliseconds` (a bare
# number stays milliseconds, as it always was; 0 turns the timeout off).
StatementTimeoutOpt = Annotated[
    str,
    typer.Option(
        "--statement-timeout",
        envvar="PGQ_STATEMENT_TIMEOUT_MS",
        metavar=MILLISECONDS,
        help="statement_timeout: a bare number is milliseconds (30000), or 500ms, 3s, 1m; "
        "exit 75 when hit.",
    ),
]
DEFAULT_STATEMENT_TIMEOUT = str(checks.DEFAULT_STATEMENT_TIMEOUT_MS)
DEFAULT_RECONNECT_TIMEOUT = seconds_text(DEFAULT_RECONNECT_TIMEOUT_S)
ReconnectTimeoutOpt = Annotated[
    str,
    typer.Option(
        "--reconnect-timeout",
        metavar=DURATION,
        help="When the connection goes away (restart, failover), reconnect with back-off "
        "for this long (30s, 5m; 0: exit 69 at once), then exit 69.",
    ),
]
