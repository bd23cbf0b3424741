"""A claim that waits for work: `Queue.claim(wait=SECONDS)`, `pgq claim --wait SECONDS`.

Library code: never prints, never imports Typer or rich.

It LISTENs on the schema's ready channel (sql/0002: inserts and rows becoming ready
NOTIFY with the queue name as payload) and claims again when its queue is announced.
Work that becomes claimable without a NOTIFY (a delayed message coming due, a lease
running out) is caught by a poll fallback: it never sleeps past the queue's next due time
(queries.NEXT_DUE) nor longer than `poll` seconds.

LISTEN needs a session connection: behind a transaction-pooling PgBouncer the
notifications go to whichever backend the pooler picked. So when the queue's connection
goes through a transaction pooler (`Queue.transaction_pooled`: detected or set with
`PGQ_POOLER`, see `pooler`), it issues no LISTEN and polls only, every `poll` seconds
(and at the next due time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from psycopg import sql

from .translate import translated

DEFAULT_POLL_S = 1.0
# Never wait less than this between claims, so a busy channel cannot spin the loop.
MIN_SLEEP_S = 0.01
# Sleep a little past the next due time, so the next claim's RETURN_DUE sees vt <= now().
PAST_DUE_S = 0.005

Claimed = TypeVar("Claimed")


def claim_until(
    conn: psycopg.Connection[Any],
    *,
    channel: str | None,
    queue: str,
    wait: float,
    poll: float,
    attempt: Callable[[], list[Claimed]],
    next_due_s: Callable[[], float | None],
) -> list[Claimed]:
    """Run `attempt` (one ordinary claim) until it yields something or `wait` runs out.

    Holds no transaction and no lock while waiting. LISTEN on `channel` is issued before
    the first attempt, so a message sent between an empty attempt and the wait still
    wakes it. With `channel` None (behind a transaction pooler) it only polls.
    """
    deadline = time.monotonic() + wait
    # Behind a transaction pooler a LISTEN would stay on a server connection that other
    # clients get next, and its notifications would never reach this client.
    listened = None if channel is None else sql.Identifier(channel)
    if listened is not None:
        with translated():
            conn.execute(sql.SQL("LISTEN {}").format(listened))
    try:
        while True:
            found = attempt()
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            due = next_due_s()
            until_due = float("inf") if due is None else max(due + PAST_DUE_S, MIN_SLEEP_S)
            timeout = min(remaining, poll, until_due)
            if listened is not None:
                sleep_until_woken(conn, queue, timeout)
            else:
                time.sleep(max(timeout, MIN_SLEEP_S))
    finally:
        if listened is not None and not conn.closed:
            with translated():
                conn.execute(sql.SQL("UNLISTEN {}").format(listened))


def sleep_until_woken(conn: psycopg.Connection[Any], queue: str, timeout: float) -> bool:
    """Block until a NOTIFY for `queue` arrives (True) or `timeout` seconds pass (False).

    The connection must LISTEN on the queue's channel already (also used by the consumer
    loop, pgq_cli/core/worker.py)."""
    timeout = max(timeout, MIN_SLEEP_S)
    with translated():
        for notify in conn.notifies(timeout=timeout):
            if notify.payload == queue:
                return True
    return False
