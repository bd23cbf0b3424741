"""The error family of pgq and the exit codes the CLI maps them to.

This module owns the translation of database errors (by SQLSTATE) into a small family of
exceptions that say what went wrong and what to do. It never prints and never exits: the
CLI's one error boundary does that.

Each class's docstring is its default message.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from enum import IntEnum

import psycopg
from psycopg import errors as pgerrors


class ExitCode(IntEnum):
    """Documented exit codes; each one's meaning is in EXIT_CODE_MEANINGS."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    NOTHING_DONE = 3
    BAD_PAYLOAD = 65
    UNAVAILABLE = 69
    TEMPORARY = 75
    NO_PERMISSION = 77
    CONFIG = 78
    INTERRUPTED = 130


# The one written list of what each exit code means: `pgq --help` is generated from it, and
# a test checks the README's exit-code table against it, word for word.
EXIT_CODE_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "ok (an empty claim is ok unless `--fail-if-empty`)",
    ExitCode.FAILURE: "unexpected failure (a bug: rerun with `--debug` and report it)",
    ExitCode.USAGE: "usage error or invalid input (priority out of 1..10, bad queue name, "
    "bad id)",
    ExitCode.NOTHING_DONE: "nothing done that was required: unknown id, stale lease, empty "
    "claim with `--fail-if-empty`",
    ExitCode.BAD_PAYLOAD: "bad payload: not JSON, or over the 1 MiB cap",
    ExitCode.UNAVAILABLE: "database unreachable, or the connection went away",
    ExitCode.TEMPORARY: "temporary: statement or lock timeout, deadlock, serialization "
    "failure — retry",
    ExitCode.NO_PERMISSION: "permission denied (the role lacks a grant)",
    ExitCode.CONFIG: "configuration: schema missing (run `pgq migrate`), foreign `pgq` "
    "schema, bad DSN",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}


class PgqError(Exception):
    """pgq failed."""

    exit_code: ExitCode = ExitCode.FAILURE
    hint: str = ""

    def __init__(self, message: str | None = None, *, hint: str | None = None) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        if hint is not None:
            self.hint = hint

    @property
    def message(self) -> str:
        return str(self.args[0])


class InvalidInput(PgqError):
    """invalid input."""

    exit_code = ExitCode.USAGE


class NothingDone(PgqError):
    """nothing was done."""

    exit_code = ExitCode.NOTHING_DONE
    # ack/requeue act on each id on its own: the ids that were done before the refusal, so
    # the CLI can still print them (stdout is the record of what happened).
    done: tuple[int, ...] = ()


class NotFound(NothingDone):
    """no such message."""


class StaleLease(NothingDone):
    """the lease token is not the message's current lease."""

    hint = "the lease expired and the message may have been claimed again; do not ack it"


class EmptyClaim(NothingDone):
    """no message was ready to claim."""


class BadPayload(PgqError):
    """the payload is not acceptable."""

    exit_code = ExitCode.BAD_PAYLOAD


class ConnectFailed(PgqError):
    """could not reach the database."""

    exit_code = ExitCode.UNAVAILABLE
    hint = "check that the server is up and --dsn/PGQ_DSN points at it"


class Temporary(PgqError):
    """the database asked us to retry (timeout, lock, serialization failure or deadlock)."""

    exit_code = ExitCode.TEMPORARY
    hint = "retry later"


class PermissionDenied(PgqError):
    """permission denied."""

    exit_code = ExitCode.NO_PERMISSION
    hint = "this role may not do that; see `pgq migrate --print-grants`"


class ConfigError(PgqError):
    """configuration problem."""

    exit_code = ExitCode.CONFIG


class SchemaMissing(ConfigError):
    """the pgq schema is not installed in this database."""

    hint = "run `pgq migrate`"


class SchemaForeign(ConfigError):
    """the schema holds objects pgq did not create."""

    hint = "choose another schema with --schema or PGQ_SCHEMA"


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


_PASSWORD_IN_URI = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]*@", re.IGNORECASE)
_PASSWORD_IN_KV = re.compile(
    r"(?P<head>password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE
)
_PASSWORD_IN_QUERY = re.compile(r"(?P<head>[?&]password=)[^&\s]*", re.IGNORECASE)


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """Mask passwords in any text: URI userinfo, key=value, query params, and known secrets."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "****")
    text = _PASSWORD_IN_URI.sub(r"\g<head>****@", text)
    text = _PASSWORD_IN_KV.sub(r"\g<head>****", text)
    return _PASSWORD_IN_QUERY.sub(r"\g<head>****", text)
