"""Opening the connection a command runs on: where to connect, and the session.

`open_target` resolves --dsn/PGQ_DSN/libpq/the embedded server and says on stderr when it
is the embedded one (or when a password was typed on the command line); `session` connects
inside the error boundary and yields a `Queue`; `run_reconnecting` does the same for a
long-running command and reconnects when the connection goes away.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from ..core.checks import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_SCHEMA, DEFAULT_STATEMENT_TIMEOUT_MS
from ..core.errors import ConnectFailed
from .boundary import boundary, say, state, status

# Command modules import this at their top, and `pgq CMD --help` must not load psycopg:
# the connecting code loads when a command connects.
if TYPE_CHECKING:
    from ..core.connect import Target
    from ..core.queue import Queue
    from ..core.reconnect import Connection


def open_target(dsn: str | None) -> Target:
    """Resolve where to connect; say so on stderr when it is the embedded server."""
    from ..core import connect

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
        status(
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
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
) -> Iterator[Queue]:
    """Inside the boundary: connect as `pgq <command>` and yield a Queue."""
    with boundary():
        from ..core import connect
        from ..core.queue import Queue

        target = open_target(dsn)
        conn = connect.connect(
            target,
            f"pgq {command}",
            statement_timeout_ms=statement_timeout_ms,
            lock_timeout_ms=lock_timeout_ms,
        )
        try:
            yield Queue(conn, schema, pool_mode=target.pool_mode)
        finally:
            conn.close()


Result = TypeVar("Result")


def run_reconnecting(
    command: str,
    dsn: str | None,
    schema: str,
    work: Callable[[Queue], Result],
    *,
    reconnect_timeout_s: float,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
) -> Result:
    """Inside the boundary: connect as `pgq <command>` and run `work`; when the connection
    goes away, say so, reconnect with back-off for up to `reconnect_timeout_s` and run
    `work` again on the new connection (then exit 69 if the server stays away)."""
    with boundary():
        from ..core import connect, reconnect
        from ..core.queue import Queue

        target = open_target(dsn)

        def dial() -> Connection:
            return connect.connect(
                target, f"pgq {command}", statement_timeout_ms=statement_timeout_ms
            )

        def announce(lost: ConnectFailed) -> None:
            status(f"pgq: {lost.message}; reconnecting for up to {reconnect_timeout_s:g} s")

        return reconnect.run_reconnecting(
            dial,
            lambda conn: work(Queue(conn, schema)),
            timeout_s=reconnect_timeout_s,
            on_reconnect=announce,
        )
    raise AssertionError("boundary() exits on any error")  # pragma: no cover
