"""The core's edge with the database: psycopg errors become the `errors.PgqError` family.

Database errors are mapped by SQLSTATE (or by class when there is none) into exceptions
that say what went wrong and what to do. Never prints, never exits.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import errors as pgerrors

from .errors import (
    BadPayload,
    ConfigError,
    ConnectFailed,
    InvalidInput,
    PermissionDenied,
    PgqError,
    SchemaMissing,
    Temporary,
)

_TEMPORARY_SQLSTATES = {
    "57014",  # query_canceled (statement_timeout)
    "55P03",  # lock_not_available (lock_timeout)
    "40001",  # serialization_failure
    "40P01",  # deadlock_detected
    "53300",  # too_many_connections
    "53400",  # configuration_limit_exceeded
    "57P03",  # cannot_connect_now (server starting up / shutting down)
}

_GONE_SQLSTATES = {
    "57P01",  # admin_shutdown
    "57P02",  # crash_shutdown
}


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def translate(exc: psycopg.Error) -> PgqError:
    """Map a psycopg error to the pgq family by SQLSTATE (or by class when there is none)."""
    state = exc.sqlstate or ""
    detail = _first_line(str(exc))
    if isinstance(exc, pgerrors.CheckViolation):
        diag = exc.diag.constraint_name or ""
        if diag == "messages_payload_size":
            return BadPayload("payload is larger than 1 MiB as stored")
        return InvalidInput(f"rejected by the database ({diag or detail})")
    if state in _TEMPORARY_SQLSTATES:
        return Temporary(f"temporary failure: {detail}")
    if state in _GONE_SQLSTATES or state.startswith("08"):
        return ConnectFailed(f"the database went away: {detail}")
    if state == "42501":
        # The server's text already reads "permission denied for table messages".
        prefix = "" if detail.lower().startswith("permission denied") else "permission denied: "
        return PermissionDenied(f"{prefix}{detail}")
    if state in ("3F000", "42P01"):  # invalid_schema_name, undefined_table
        return SchemaMissing()
    if state in ("28000", "28P01"):  # invalid authorization / wrong password
        return ConfigError(f"authentication failed: {detail}", hint="check the user and password")
    if state == "3D000":  # invalid_catalog_name: database does not exist
        return ConfigError(f"no such database: {detail}", hint="check the DSN's dbname")
    if isinstance(exc, psycopg.OperationalError) and not state:
        # Connection-level failure without a server-side SQLSTATE: reset, EOF, refused.
        return ConnectFailed(f"the database went away: {detail}")
    return PgqError(f"database error: {detail}")


@contextmanager
def translated() -> Iterator[None]:
    """Re-raise psycopg errors from the block as PgqError (the core's edge)."""
    try:
        yield
    except psycopg.Error as exc:
        raise translate(exc) from exc
