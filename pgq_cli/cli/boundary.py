"""The CLI's one error boundary: stderr, exit codes, masked secrets.

Owns: turning any exception into one line on stderr and a documented exit code
(`pgq: error: <what> — <what to do>`), parser usage errors included, and masking passwords
in everything it prints (status lines from `say` too). Tracebacks only with --debug, and
masked even then. Opening the connection a command runs on is `connection.py`.
"""

from __future__ import annotations

import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import typer

from ..core.errors import (
    ConnectFailed,
    PermissionDenied,
    PgqError,
    SchemaForeign,
    SchemaMissing,
    redact,
)
from ..core.exitcodes import ExitCode
from .output import to_stderr


class _State:
    """Process-wide flags set by the root callback and the common options every command
    takes (--debug, --quiet, --no-embedded), secrets to mask."""

    debug: bool = bool(os.environ.get("PGQ_DEBUG"))
    quiet: bool = False
    no_embedded: bool = False
    secrets: tuple[str, ...] = ()


state = _State()


def say(message: str) -> None:
    """A line on stderr that --quiet keeps: an error, a warning, an alert, what an exit
    code other than 0 means."""
    to_stderr(redact(message, state.secrets))


def status(message: str) -> None:
    """A status line on stderr (what was done, what is happening): --quiet silences it."""
    if not state.quiet:
        say(message)


# The library's errors name its parameters (`PgqError.params`); the CLI says the flag or
# command that sets each. Parameters a CLI user types under the same name are not here.
FLAG_OF_PARAM = {
    "older_than": "--older-than",
    "min_priority": "--min-priority",
    "max_priority": "--max-priority",
    "below_priority": "--below-priority",
    "below_priority=None": "no --below-priority",
    "max_deliveries": "--max-deliveries",
    "max_deliveries=None": "--unlimited",
    "max_runtime": "--max-runtime",
    "wait": "--wait",
    "dedup_key": "--dedup-key",
    "dedup_window": "--dedup-window",
    "timeout_s": "--reconnect-timeout",  # reconnect.run_reconnecting gave up
    "reconnect_timeout": "--reconnect-timeout",
    "states": "--state",
    "everything=True": "--all",
    "redrive_dead()": "`pgq requeue --dead`",
    "max_inflight_per_key": "--max-inflight-per-key",
    "weight": "--weight",
    "top": "--top",
}


# The CLI's hint for an error that carries its class's default (library) hint.
CLI_HINTS: dict[type[PgqError], str] = {
    ConnectFailed: "check that the server is up and --dsn/PGQ_DSN points at it",
    PermissionDenied: "this role may not do that; see `pgq migrate --print-grants`",
    SchemaMissing: "run `pgq migrate`",
    SchemaForeign: "choose another schema with --schema or PGQ_SCHEMA",
}


def in_cli_words(text: str, params: tuple[str, ...]) -> str:
    """`text` with each of the library's parameter names in `params` said as its flag."""
    for param in sorted(params, key=len, reverse=True):  # `x=None` before `x`
        flag = FLAG_OF_PARAM.get(param)
        if flag is not None:
            text = re.sub(rf"(?<![\w-]){re.escape(param)}(?![\w=(])", flag, text)
    return text


def fail(error: PgqError) -> typer.Exit:
    """Print a PgqError as one line; return the Exit to raise."""
    message = in_cli_words(error.message, error.params)
    said = error.hint
    if said == type(error).hint and type(error) in CLI_HINTS:
        said = CLI_HINTS[type(error)]
    hint = f" — {in_cli_words(said, error.params)}" if said else ""
    line = f"pgq: error: {message}{hint}".replace("\n", " ")
    to_stderr(redact(line, state.secrets))
    return typer.Exit(int(error.exit_code))


def _print_debug_traceback(exc: BaseException) -> None:
    if state.debug:
        text = "".join(traceback.format_exception(exc))
        to_stderr(redact(text, state.secrets))


@contextmanager
def boundary() -> Iterator[None]:
    """Map everything raised inside to one stderr line and an exit code."""
    try:
        yield
    except typer.Exit:
        raise
    except PgqError as exc:
        _print_debug_traceback(exc)
        raise fail(exc) from None
    except KeyboardInterrupt:
        say("pgq: interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        # Reader went away (`pgq peek | head`): not our failure, and nothing more to say.
        _silence_stdout()
        raise typer.Exit(int(ExitCode.OK)) from None
    except Exception as exc:
        _print_debug_traceback(exc)
        raise fail(_as_pgq_error(exc)) from None


def _as_pgq_error(exc: Exception) -> PgqError:
    """A database error translated; anything else is unexpected (a bug)."""
    # Only a process that imported psycopg can have a psycopg error to translate; looking
    # it up here keeps psycopg out of commands that never connect (and of `--help`).
    psycopg = sys.modules.get("psycopg")
    if psycopg is not None and isinstance(exc, psycopg.Error):
        from ..core.translate import translate

        return translate(exc)
    name = type(exc).__name__
    return PgqError(f"unexpected {name}: {exc}", hint="rerun with --debug and report it")


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def usage_error(exc: Any, command_path: str) -> int:
    """Print a parser usage error (Typer's) as one line; return its exit code."""
    message = exc.format_message() if callable(getattr(exc, "format_message", None)) else exc
    line = f"pgq: error: {message} — see '{command_path} --help'".replace("\n", " ")
    to_stderr(redact(line, state.secrets))
    return int(getattr(exc, "exit_code", ExitCode.USAGE))
