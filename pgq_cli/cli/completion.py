"""Values for shell completion: message states (from their one definition), and queue
names from the database.

A queue-name completion runs on every Tab press, so it must never get in the way: it returns [] on
any error, prints nothing (stdout is what the shell offers; stderr would garble the
prompt), gives up after a short, hard deadline, and never starts the embedded server.
"""

from __future__ import annotations

import os
import threading
import warnings
from typing import Any

import typer

from ..core.checks import DEFAULT_SCHEMA, PEEK_ALL
from ..core.states import EFFECTIVE_STATES

CONNECT_TIMEOUT_S = 2  # libpq's minimum
STATEMENT_TIMEOUT_MS = 1000
# Hard deadline for the whole lookup, whatever libpq does (DNS lookups are not covered
# by connect_timeout): past it the shell gets nothing.
DEADLINE_S = 2.5


def queue_names_from(dsn: str | None, schema: str, prefix: str) -> list[str]:
    """Queue names starting with `prefix`; [] on any error or after DEADLINE_S."""
    found: list[str] = []

    def lookup() -> None:
        try:
            # Imported here: every command's options name this callback, and `--help`
            # must not load psycopg (core.connect does).
            from ..core import connect
            from ..core.queue import Queue

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                target = connect.resolve(dsn)
                if target.embedded_dir is not None:
                    return  # starting a server on Tab is not acceptable
                with connect.connect(
                    target,
                    "pgq completion",
                    statement_timeout_ms=STATEMENT_TIMEOUT_MS,
                    connect_timeout_s=CONNECT_TIMEOUT_S,
                ) as conn:
                    queue = Queue(conn, schema, pool_mode=target.pool_mode)
                    found.extend(queue.queue_names(prefix))
        except Exception:
            found.clear()

    worker = threading.Thread(target=lookup, name="pgq-complete", daemon=True)
    worker.start()
    worker.join(DEADLINE_S)
    return [] if worker.is_alive() else list(found)


def complete_queue(ctx: typer.Context, incomplete: str) -> list[str]:
    """Typer autocompletion callback for --queue/-q and QUEUE arguments."""
    try:
        params: dict[str, Any] = ctx.params if ctx is not None else {}
        dsn = params.get("dsn") or None
        schema = params.get("schema") or os.environ.get("PGQ_SCHEMA") or DEFAULT_SCHEMA
        return queue_names_from(dsn, str(schema), incomplete or "")
    except Exception:
        return []


def complete_state(incomplete: str) -> list[str]:
    """Typer autocompletion callback for a --state that takes one effective state."""
    return [s for s in EFFECTIVE_STATES if s.startswith(incomplete or "")]


def complete_peek_state(incomplete: str) -> list[str]:
    """Typer autocompletion callback for `peek --state`: an effective state, or all."""
    return [s for s in (*EFFECTIVE_STATES, PEEK_ALL) if s.startswith(incomplete or "")]
