"""The root Typer application: its help, root options and usage-error handling.

`create_app` makes it with no commands; `main.build_app` adds the command groups.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from functools import cache
from typing import Annotated, Any

import typer
import typer.main
from typer.core import TyperGroup

import pgq_cli

from ..core.exitcodes import EXIT_CODE_MEANINGS, ExitCode
from . import output
from .boundary import state, usage_error

EXIT_CODES_HELP = (
    "Exit codes: "
    + "; ".join(f"{int(code)} {EXIT_CODE_MEANINGS[code]}" for code in ExitCode)
    + "."
)


class PgqGroup(TyperGroup):
    """Prints parser errors as one line (`pgq: error: …`) instead of a usage box.

    Lists commands in the order they were added (Typer's own order), which
    `main.build_app` chooses.
    """

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
                output.text(ctx.get_help() + "\n")
                code = 2
            else:
                path = ctx.command_path if ctx is not None else "pgq"
                code = usage_error(exc, path)
        else:
            code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


def _version(value: bool) -> None:
    if value:
        output.text(f"pgq {pgq_cli.__version__}\n")  # read only when asked
        raise typer.Exit()


DEBUG_HELP = "Show (masked) tracebacks on errors."
QUIET_HELP = "No status lines on stderr; errors, warnings and alerts still show."


def _turn_on_debug(value: bool) -> None:
    if value:
        state.debug = True


def _turn_on_quiet(value: bool) -> None:
    if value:
        state.quiet = True


@cache
def _common_options() -> tuple[Any, ...]:
    """The --debug and --quiet every command takes after its name, as click parameters
    (made by Typer from this signature, once)."""
    source = typer.Typer(add_completion=False)

    @source.command()
    def common(
        debug: Annotated[
            bool,
            typer.Option(
                "--debug", help=DEBUG_HELP, expose_value=False, callback=_turn_on_debug
            ),
        ] = False,
        quiet: Annotated[
            bool,
            typer.Option(
                "--quiet", help=QUIET_HELP, expose_value=False, callback=_turn_on_quiet
            ),
        ] = False,
    ) -> None:
        """Never run: only its options are used."""

    return tuple(typer.main.get_command(source).params)


def add_common_options(command: Any) -> None:
    """--debug and --quiet after the (sub)command too: `pgq stats --debug` is
    `pgq --debug stats`. Added to a command and its subcommands when it is loaded
    (`main.LazyCommands`); they turn on the same flags the root options set."""
    taken = {name for param in command.params for name in getattr(param, "opts", ())}
    for option in _common_options():
        if not taken.intersection(option.opts):
            command.params.append(option)
    for subcommand in getattr(command, "commands", {}).values():
        add_common_options(subcommand)


def root(
    debug: Annotated[
        bool,
        typer.Option("--debug", envvar="PGQ_DEBUG", help=DEBUG_HELP),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help=QUIET_HELP)] = False,
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
    # Per invocation (several can share one process, as the tests' in-process runner
    # does); the same flags given after the subcommand turn them on when it is parsed.
    state.debug = debug
    state.quiet = quiet
    state.no_embedded = no_embedded
    # Per invocation: only a command given --header turns it on.
    output.plain_header(False)


def create_app(cls: type[PgqGroup] = PgqGroup) -> typer.Typer:
    """The root application with its options (--debug, --version) and no commands yet.

    `cls` is the click group it becomes: `main` passes one that loads commands lazily.
    """
    app = typer.Typer(
        cls=cls,
        name="pgq",
        help="pgq: a Postgres-backed priority message queue. Priority 10 is most urgent.\n\n"
        + EXIT_CODES_HELP,
        no_args_is_help=True,
        pretty_exceptions_show_locals=False,  # a DSN with a password is a local
        pretty_exceptions_enable=False,
        add_completion=True,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    return app
