"""Riding out a lost connection: reconnect with back-off, for long-running work.

Library code: never prints, never imports Typer or rich.

A server restart or a failover drops every connection. A one-shot command simply fails
(exit 69) and its caller retries; a long-running one (`claim --wait`, `watch`, a consumer
loop) should instead dial again until the server is back, which `run_reconnecting` does:
it runs `work(conn)`, and when that raises `ConnectFailed` it dials `connect()` again,
waiting 0.1 s, 0.2 s, 0.4 s … at most `MAX_DELAY_S` between attempts, and runs `work` on the
new connection. After `timeout_s` of failing to get a connection back it raises
`ConnectFailed` saying so.

With a multi-host DSN (`host=a,b target_session_attrs=read-write`) each dial tries every
host, so after a failover the new connection lands on the promoted standby.

`work` must be safe to run again from the start on a new connection: everything pgq does
per statement is (a claim whose answer was lost leaves its messages leased until their
vt; they then come back, at-least-once).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from .errors import ConnectFailed, Temporary

if TYPE_CHECKING:  # psycopg is not imported at `pgq` start-up (the CLI's options use this)
    import psycopg

    Connection = psycopg.Connection[Any]

FIRST_DELAY_S = 0.1
MAX_DELAY_S = 5.0
DEFAULT_RECONNECT_TIMEOUT_S = 60.0

Result = TypeVar("Result")


def backoff_delays(first: float = FIRST_DELAY_S, maximum: float = MAX_DELAY_S) -> Iterator[float]:
    """0.1, 0.2, 0.4 … seconds, doubling up to `maximum`, forever."""
    delay = first
    while True:
        yield delay
        delay = min(delay * 2, maximum)


def reconnect(
    connect: Callable[[], Connection],
    *,
    timeout_s: float,
    lost: ConnectFailed,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> Connection:
    """Dial `connect()` with back-off until it answers; give up after `timeout_s`.

    Only an unreachable or not-yet-ready server (`ConnectFailed`, `Temporary`: a promoted
    standby says "starting up" for a moment) is retried; any other error (a refused login,
    a missing database) is raised at once, since waiting will not fix it.
    """
    deadline = clock() + timeout_s
    last: Exception = lost
    for delay in backoff_delays():
        remaining = deadline - clock()
        if remaining <= 0:
            raise ConnectFailed(
                f"{last}; gave up reconnecting after {timeout_s:g} s",
                hint="check that the server is up; raise timeout_s to wait longer",
                params=("timeout_s",),
            ) from last
        sleep(min(delay, remaining))
        try:
            return connect()
        except (ConnectFailed, Temporary) as exc:
            last = exc
    raise AssertionError("backoff_delays never ends")  # pragma: no cover


def run_reconnecting(
    connect: Callable[[], Connection],
    work: Callable[[Connection], Result],
    *,
    timeout_s: float = DEFAULT_RECONNECT_TIMEOUT_S,
    on_reconnect: Callable[[ConnectFailed], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Result:
    """Run `work` on a connection from `connect`; when the connection goes away, reconnect
    with back-off (for up to `timeout_s` each time) and run `work` again on the new one.

    The first connection is dialled once, without retrying: a wrong DSN fails at once.
    `timeout_s` 0 does not reconnect at all: the lost connection's error is raised as is.
    `on_reconnect` hears of each lost connection (the CLI says so on stderr). Every
    connection opened here is closed here.
    """
    conn = connect()
    try:
        while True:
            try:
                return work(conn)
            except ConnectFailed as lost:
                if timeout_s <= 0:
                    raise
                if on_reconnect is not None:
                    on_reconnect(lost)
                conn.close()
                conn = reconnect(connect, timeout_s=timeout_s, lost=lost, sleep=sleep)
    finally:
        conn.close()
