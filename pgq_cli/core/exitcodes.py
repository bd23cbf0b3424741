"""The exit codes of `pgq`, one per outcome, and what each means (README, `pgq --help`).

Imports nothing, so the CLI and the error family can name them without loading psycopg.
"""

from __future__ import annotations

from enum import IntEnum


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
    ExitCode.NOTHING_DONE: "nothing done that was required: an id not acked or requeued "
    "(unknown, stale lease; the other ids are done), empty claim with `--fail-if-empty`; "
    "`pgq embedded status`: not running",
    ExitCode.BAD_PAYLOAD: "bad payload: not JSON, or over the 1 MiB cap",
    ExitCode.UNAVAILABLE: "database unreachable, or the connection went away",
    ExitCode.TEMPORARY: "temporary: statement or lock timeout, deadlock, serialization "
    "failure — retry",
    ExitCode.NO_PERMISSION: "permission denied (the role lacks a grant)",
    ExitCode.CONFIG: "configuration: schema missing (run `pgq migrate`), foreign `pgq` "
    "schema, bad DSN, nothing configured with `--no-embedded`/`PGQ_NO_EMBEDDED=1`, embedded "
    "server's system user missing (root)",
    ExitCode.INTERRUPTED: "interrupted (Ctrl-C)",
}
