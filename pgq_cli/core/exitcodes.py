"""The exit codes of `pgq`, one per kind of outcome (README, `pgq --help`).

Imports nothing, so the CLI and the error family can name them without loading psycopg.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Documented exit codes (README, `pgq --help`)."""

    OK = 0
    FAILURE = 1  # unexpected failure
    USAGE = 2  # usage or invalid input caught before SQL
    NOTHING_DONE = 3  # stale lease, unknown id, empty claim with --fail-if-empty
    BAD_PAYLOAD = 65  # not JSON, too large
    UNAVAILABLE = 69  # database unreachable or went away
    TEMPORARY = 75  # statement/lock timeout, serialization failure, deadlock: retry
    NO_PERMISSION = 77  # permission denied
    CONFIG = 78  # configuration: no schema (run `pgq migrate`), bad DSN
    INTERRUPTED = 130
