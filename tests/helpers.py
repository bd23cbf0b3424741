"""Constants and assertions shared by the tests (fixtures live in conftest.py).

Plain functions, no fixtures and no connections at import: a test module imports what it
needs, e.g. `from helpers import UNREACHABLE_DSN, assert_failed`.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import select
import struct
import subprocess
import termios
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
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


# The escape sequences a terminal interprets (colours, cursor moves): not text on the screen.
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")


def run_in_terminal(
    argv: list[str], env: Mapping[str, str], *, columns: int, timeout_s: float = 60
) -> tuple[int, list[str]]:
    """Run `argv` on a pseudo-terminal `columns` wide, as an interactive shell would: the
    size set on the terminal (TIOCSWINSZ), not in COLUMNS. Returns the exit code and the
    lines it printed (stdout and stderr, escape sequences removed)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    clean_env = {k: v for k, v in env.items() if k not in ("COLUMNS", "LINES")}
    proc = subprocess.Popen(
        argv, env={**clean_env, "TERM": "xterm"}, stdin=follower, stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    seen = b""
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            assert time.monotonic() < deadline, f"{argv} did not finish: {seen[-500:]!r}"
            ready, _, _ = select.select([leader], [], [], 0.2)
            if not ready:
                continue
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed its end of the terminal
                break
            if not chunk:
                break
            seen += chunk
        code = proc.wait(timeout=timeout_s)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(OSError):
            os.close(leader)
    screen = _ANSI_ESCAPE.sub("", seen.decode("utf-8", "replace")).replace("\r\n", "\n")
    return code, screen.split("\n")
