"""The CLI's one error boundary and its connection session.

Owns: turning any exception into one line on stderr and a documented exit code
(`pgq: error: <what> — <what to do>`), masking passwords in everything it prints, and
opening the connection a command runs on (announcing the embedded server on stderr).
Tracebacks only with --debug, and masked even then.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import typer
from rich.console import Console

from ..core import connect
from ..core.errors import ExitCode, PgqError, redact, translate
from ..core.queue import DEFAULT_SCHEMA, Queue

# stderr is talk: status lines, warnings, errors. Never data.
stderr = Console(stderr=True, highlight=False, soft_wrap=True)


class _State:
    """Process-wide flags set by the root callback (--debug, --no-embedded), secrets to mask."""

    debug: bool = bool(os.environ.get("PGQ_DEBUG"))
    no_embedded: bool = False
    secrets: tuple[str, ...] = ()


state = _State()


def say(message: str) -> None:
    """A status line on stderr."""
    stderr.print(redact(message, state.secrets), markup=False)


def fail(error: PgqError) -> typer.Exit:
    """Print a PgqError as one line; return the Exit to raise."""
    hint = f" — {error.hint}" if error.hint else ""
    line = f"pgq: error: {error.message}{hint}".replace("\n", " ")
    stderr.print(redact(line, state.secrets), markup=False)
    return typer.Exit(int(error.exit_code))


def _print_debug_traceback(exc: BaseException) -> None:
    if state.debug:
        text = "".join(traceback.format_exception(exc))
        stderr.print(redact(text, state.secrets), markup=False)


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
    except psycopg.Error as exc:
        _print_debug_traceback(exc)
        raise fail(translate(exc)) from None
    except KeyboardInterrupt:
        say("pgq: interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except BrokenPipeError:
        # Reader went away (`pgq peek | head`): not our failure, and nothing more to say.
        _silence_stdout()
        raise typer.Exit(int(ExitCode.OK)) from None
    except Exception as exc:
        _print_debug_traceback(exc)
        name = type(exc).__name__
        raise fail(
            PgqError(f"unexpected {name}: {exc}", hint="rerun with --debug and report it")
        ) from None


def _silence_stdout() -> None:
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def open_target(dsn: str | None) -> connect.Target:
    """Resolve where to connect; say so on stderr when it is the embedded server."""
    if dsn and dsn == os.environ.get("PGQ_DSN"):
        # Typer fills --dsn from PGQ_DSN as well; only a DSN typed on the command line is
        # "--dsn" (and visible in the process list).
        dsn = None
    target = connect.resolve(dsn, allow_embedded=not state.no_embedded)
    state.secrets = tuple(s for s in (target.password,) if s)
    if target.source == "--dsn" and target.password:
        say(
            "pgq: warning: --dsn carries a password, which other users can read in the "
            "process list; prefer PGQ_DSN, PGPASSWORD or ~/.pgpass"
        )
    if target.embedded_dir is not None:
        say(
            f"pgq: no database configured; using the embedded PostgreSQL in "
            f"{target.embedded_dir} (set --dsn or PGQ_DSN to use a server; `pgq embedded "
            "stop` stops it)"
        )
    return target


@contextmanager
def session(
    command: str,
    dsn: str | None,
    schema: str = DEFAULT_SCHEMA,
    *,
    statement_timeout_ms: int = connect.DEFAULT_STATEMENT_TIMEOUT_MS,
    lock_timeout_ms: int = connect.DEFAULT_LOCK_TIMEOUT_MS,
) -> Iterator[Queue]:
    """Inside the boundary: connect as `pgq <command>` and yield a Queue."""
    with boundary():
        target = open_target(dsn)
        conn = connect.connect(
            target,
            f"pgq {command}",
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
        )
        try:
            yield Queue(conn, schema)
        finally:
            conn.close()


def usage_error(exc: Any, command_path: str) -> int:
    """Print a parser usage error (Typer's) as one line; return its exit code."""
    message = exc.format_message() if callable(getattr(exc, "format_message", None)) else exc
    line = f"pgq: error: {message} — see '{command_path} --help'".replace("\n", " ")
    stderr.print(redact(line, state.secrets), markup=False)
    return int(getattr(exc, "exit_code", ExitCode.USAGE))
