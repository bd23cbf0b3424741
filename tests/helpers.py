"""Constants and assertions shared by the tests (fixtures live in conftest.py).

Plain functions, no fixtures and no connections at import: a test module imports what it
needs, e.g. `from helpers import UNREACHABLE_DSN, assert_failed`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from psycopg import conninfo, sql

# A closed port on this machine: the connection is refused at once, and connect_timeout
# bounds the rest. For the checks that must happen before connecting (exit 2 with the
# database down) and for exit 69 itself.
UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/postgres?connect_timeout=3"


def error_line(stderr: str) -> str:
    """The one line an error prints (`pgq: error: …`), with no traceback; returns it."""
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("pgq: error: "), lines[0]
    assert "Traceback" not in stderr
    return str(lines[0])


def assert_failed(result: Any, code: int) -> str:
    """The documented failure shape: exit `code`, nothing on stdout, one stderr line
    (returned)."""
    assert result.exit_code == code, (result.exit_code, result.stdout, result.stderr)
    assert result.stdout == "", result.stdout
    return error_line(result.stderr)


def fresh_database(admin_dsn: str, template: str | None = None) -> Iterator[str]:
    """Yield the DSN of a new database (a copy of `template`, or empty); drop it after."""
    name = f"pgq_t_{uuid.uuid4().hex[:12]}"
    create = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
    if template:
        create = sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(
            sql.Identifier(name), sql.Identifier(template)
        )
    with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as admin:
        admin.execute(create)
    try:
        yield conninfo.make_conninfo(admin_dsn, dbname=name)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=10) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def wait_until(predicate: Callable[[], object], what: str, timeout_s: float = 30) -> None:
    """Poll `predicate` until it is true; fail naming `what` after `timeout_s` seconds."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)
