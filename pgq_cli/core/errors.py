"""The error family of pgq: exceptions that say what went wrong and what to do.

Each class's docstring is its default message, and each carries the exit code the CLI
exits with. Messages speak in the library's parameter names (`older_than`), never in CLI
flags: `params` names the parameters a message mentions, so the CLI can say them as flags.
It never prints and never exits (the CLI's one error boundary does that), and imports no
psycopg, so that importing it stays cheap; `translate` maps database errors into it.
"""

from __future__ import annotations

import re

from .exitcodes import ExitCode


class PgqError(Exception):
    """pgq failed."""

    exit_code: ExitCode = ExitCode.FAILURE
    hint: str = ""
    # The library parameters the message and hint name (e.g. "older_than"), first the one
    # at fault; the CLI says them as its flags (`--older-than`).
    params: tuple[str, ...] = ()

    def __init__(
        self,
        message: str | None = None,
        *,
        hint: str | None = None,
        params: tuple[str, ...] = (),
    ) -> None:
        super().__init__(message or (self.__doc__ or "").strip())
        if hint is not None:
            self.hint = hint
        self.params = params

    @property
    def param(self) -> str | None:
        """The parameter at fault, if the error is about one."""
        return self.params[0] if self.params else None

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

    hint = "the message is no longer yours: do not act on it again"


class EmptyClaim(NothingDone):
    """no message was ready to claim."""


class BadPayload(PgqError):
    """the payload is not acceptable."""

    exit_code = ExitCode.BAD_PAYLOAD


class ConnectFailed(PgqError):
    """could not reach the database."""

    exit_code = ExitCode.UNAVAILABLE
    hint = "check that the server is up and the connection string points at it"


class Temporary(PgqError):
    """the database asked us to retry (timeout, lock, serialization failure or deadlock)."""

    exit_code = ExitCode.TEMPORARY
    hint = "retry later"


class PermissionDenied(PgqError):
    """permission denied."""

    exit_code = ExitCode.NO_PERMISSION
    hint = "this role may not do that; grant it what its job needs (ops.grants)"


class ConfigError(PgqError):
    """configuration problem."""

    exit_code = ExitCode.CONFIG


class SchemaMissing(ConfigError):
    """the pgq schema is not installed in this database."""

    hint = "install it with migrate.migrate()"


class SchemaForeign(ConfigError):
    """the schema holds objects pgq did not create."""

    hint = "choose another schema"


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
