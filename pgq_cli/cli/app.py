"""The Typer application object, its root options and its usage-error handling.

Command modules (`cli.py` and the others it imports) register commands on `app`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from .. import __version__
from .boundary import state, usage_error

EXIT_CODES_HELP = (
    "Exit codes: 0 ok; 1 unexpected failure; 2 usage or invalid input; 3 nothing done that "
    "was required (stale lease, unknown id, empty claim with --fail-if-empty); 65 bad "
    "payload; 69 database unreachable or went away; 75 temporary (timeout, lock, deadlock): "
    "retry; 77 permission denied; 78 configuration (no schema: run `pgq migrate`; bad DSN; "
    "nothing configured with --no-embedded); "
    "130 interrupted."
)


# The order `pgq --help` lists commands in: the everyday loop first, then operations.
# Commands register from several modules, so import order would otherwise decide.
COMMAND_ORDER = (
    "demo", "migrate", "send", "claim", "peek", "ack", "requeue", "extend", "stats",
    "queues", "queue", "pause", "resume", "purge", "watch", "doctor", "bench", "info",
    "embedded",
)


class PgqGroup(TyperGroup):
    """Prints parser errors as one line (`pgq: error: …`) instead of a usage box."""

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
        return sorted(names, key=lambda name: (rank.get(name, len(rank)), name))

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        windows_expand_args: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            code = super().main(
                args=args,
                prog_name=prog_name,
                complete_var=complete_var,
                standalone_mode=False,
                windows_expand_args=windows_expand_args,
                **extra,
            )
        except Exception as exc:
            if not callable(getattr(exc, "format_message", None)):
                raise
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError" and ctx is not None:
                sys.stdout.write(ctx.get_help() + "\n")
                code = 2
            else:
                path = ctx.command_path if ctx is not None else "pgq"
                code = usage_error(exc, path)
        else:
            code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=PgqGroup,
    name="pgq",
    help="pgq: a Postgres-backed priority message queue. Priority 10 is most urgent.\n\n"
    + EXIT_CODES_HELP,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,  # a DSN with a password is a local
    pretty_exceptions_enable=False,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        sys.stdout.write(f"pgq {__version__}\n")
        raise typer.Exit()


@app.callback()
def root(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="PGQ_DEBUG", help="Show (masked) tracebacks on errors."),
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
    no_embedded: Annotated[
        bool,
        typer.Option(
            "--no-embedded",
            help="Never start the embedded PostgreSQL: with no DSN and no libpq setting, "
            "exit 78 instead (also PGQ_NO_EMBEDDED=1).",
        ),
    ] = False,
) -> None:
    """pgq: a Postgres-backed priority message queue. Priority 10 is most urgent."""
    state.debug = state.debug or debug
    state.no_embedded = no_embedded
