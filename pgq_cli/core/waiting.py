"""A claim that waits for work: `pgq claim --wait SECONDS`.

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

from psycopg import sql

from . import queries
from .errors import InvalidInput, translated
from .queue import DEFAULT_QUEUE, DEFAULT_VT_S, MAX_PRIORITY, MIN_PRIORITY, Message, Queue

DEFAULT_POLL_S = 1.0
# Never wait less than this between claims, so a busy channel cannot spin the loop.
MIN_SLEEP_S = 0.01
MAX_WAIT_S = 24 * 3600.0


def check_wait(seconds: float) -> float:
    if seconds != seconds or not 0 <= seconds <= MAX_WAIT_S:
        raise InvalidInput(
            f"--wait must be 0..{MAX_WAIT_S:.0f} seconds, not {seconds}",
            hint="loop in the shell for longer waits",
        )
    return float(seconds)


def claim_wait(
    q: Queue,
    *,
    wait: float,
    queue: str = DEFAULT_QUEUE,
    qty: int = 1,
    vt: float = DEFAULT_VT_S,
    min_priority: int = MIN_PRIORITY,
    max_priority: int = MAX_PRIORITY,
    poll: float = DEFAULT_POLL_S,
) -> list[Message]:
    """Claim like `Queue.claim`, waiting up to `wait` seconds for something to claim.

    Returns as soon as a claim yields messages (possibly fewer than qty), or [] when
    `wait` runs out. Holds no transaction and no lock while waiting: each attempt is an
    ordinary claim. LISTEN is issued before the first attempt, so a message sent between
    an empty attempt and the wait still wakes it; behind a transaction pooler it polls
    only.
    """
    check_wait(wait)
    if not poll > 0:
        raise InvalidInput("poll interval must be > 0 seconds")
    deadline = time.monotonic() + wait
    # Behind a transaction pooler a LISTEN would stay on a server connection that other
    # clients get next, and its notifications would never reach this client.
    listening = not q.transaction_pooled
    channel = sql.Identifier(q.notify_channel)
    if listening:
        with translated():
            q.conn.execute(sql.SQL("LISTEN {}").format(channel))
    try:
        while True:
            found = q.claim(
                queue=queue,
                qty=qty,
                vt=vt,
                min_priority=min_priority,
                max_priority=max_priority,
            )
            remaining = deadline - time.monotonic()
            if found or remaining <= 0:
                return found
            timeout = min(remaining, poll, _next_due_s(q, queue))
            if listening:
                _sleep_until_woken(q, queue, timeout)
            else:
                time.sleep(max(timeout, MIN_SLEEP_S))
    finally:
        if listening and not q.conn.closed:
            with translated():
                q.conn.execute(sql.SQL("UNLISTEN {}").format(channel))


def _next_due_s(q: Queue, queue: str) -> float:
    """Seconds until the queue's next leased/delayed message comes due (inf: none)."""
    with translated():
        row = q.conn.execute(q._q(queries.NEXT_DUE), {"queue": queue}).fetchone()
    if row is None or row[0] is None:
        return float("inf")
    # A little past due, so the next claim's RETURN_DUE sees vt <= now().
    return max(float(row[0]) + 0.005, MIN_SLEEP_S)


def _sleep_until_woken(q: Queue, queue: str, timeout: float) -> None:
    """Block until a NOTIFY for `queue` arrives or `timeout` seconds pass."""
    timeout = max(timeout, MIN_SLEEP_S)
    with translated():
        for notify in q.conn.notifies(timeout=timeout):
            if notify.payload == queue:
                return
