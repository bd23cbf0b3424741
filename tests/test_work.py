"""`Queue.work`, the fused consumer loop, on real connections.

What is proven here: acks travel in the claim statement (one statement per batch) and are
fenced by the lease; handler outcomes (ack, Retry, Reject, exception back-off, delivery
limits); the heartbeat keeps every held lease alive past vt; stopping gives unstarted
messages back at once and acks finished ones; racing workers ack each message exactly once;
a SIGKILLed worker's messages come back after vt; a terminated backend is reconnected.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from helpers import UNREACHABLE_DSN, wait_until

from pgq_cli.core import queries
from pgq_cli.core.errors import ConnectFailed, InvalidInput
from pgq_cli.core.queue import Message, Queue
from pgq_cli.core.worker import Reject, Retry, default_backoff

QUEUE = "work"
ROW = (
    "SELECT state, read_ct, lease, extract(epoch FROM vt - now())"
    " FROM pgq.messages WHERE msg_id = %s"
)


def _send(q: Queue, n: int, *, priority: Callable[[int], int] = lambda i: 5) -> list[int]:
    return [q.send(json.dumps({"n": i}), queue=QUEUE, priority=priority(i)) for i in range(n)]


def _row(conn: psycopg.Connection[Any], msg_id: int) -> tuple[Any, ...] | None:
    return conn.execute(ROW, (msg_id,)).fetchone()


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row is not None
    return int(row[0])


@pytest.fixture
def other(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A second connection: an observer, or another consumer."""
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


class CountingCursor(psycopg.Cursor[Any]):
    """Records every statement sent, to count round trips of the loop."""


    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        text = query.as_string(self.connection) if hasattr(query, "as_string") else str(query)
        self.connection.sent.append(text)  # type: ignore[attr-defined]
        return super().execute(query, params, **kwargs)


# ----------------------------------------------------------------------------- the loop


def test_work_handles_every_message_in_claim_order_and_acks_it(q: Queue, conn: Any) -> None:
    ids = _send(q, 12, priority=lambda i: 1 + i % 3)
    seen: list[Message] = []
    acked = q.work(seen.append, queue=QUEUE, until_empty=True)
    assert acked == 12
    order = [(m.priority, m.msg_id) for m in seen]
    assert order == sorted(order, key=lambda pm: (-pm[0], pm[1]))
    assert sorted(m.msg_id for m in seen) == ids
    assert all(m.state == "leased" and m.lease is not None and m.read_ct == 1 for m in seen)
    assert seen[0].payload == {"n": 2}  # highest priority (3), first sent
    assert _count(conn) == 0


def test_the_ack_travels_in_the_statement_that_claims_the_next_batch(db_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True, cursor_factory=CountingCursor) as conn:
        conn.sent = []  # type: ignore[attr-defined]
        q = Queue(conn)
        _send(q, 10)
        conn.sent.clear()  # type: ignore[attr-defined]
        assert q.work(lambda m: None, queue=QUEUE, qty=2, until_empty=True) == 10
        sent: list[str] = conn.sent  # type: ignore[attr-defined]
    fused = [s for s in sent if "WITH acked AS" in s]
    # 5 batches of 2, then the claim that finds nothing carries the last batch's acks.
    assert len(fused) == 6
    # Nothing else deletes: no separate ack statement, only the periodic return of due work
    # (and the read of whether the queue is fair, before the first claim and after an empty
    # one, which writes nothing).
    others = [s for s in sent if s not in fused and "SELECT fair FROM" not in s]
    assert all("DELETE" not in s for s in others), others
    assert all("WITH due AS" in s for s in others), others


def test_fused_ack_is_fenced_a_stale_lease_is_not_deleted(q: Queue, other: Any) -> None:
    (msg_id,) = _send(q, 1)
    thief = Queue(other)
    stolen: list[Message] = []

    def lose_the_lease(message: Message) -> None:
        # Our lease runs out and another consumer claims the message meanwhile.
        other.execute("UPDATE pgq.messages SET vt = now() - interval '1 s' WHERE msg_id = %s",
                      (message.msg_id,))
        stolen.extend(thief.claim(queue=QUEUE, vt=300))

    assert q.work(lose_the_lease, queue=QUEUE, until_empty=True) == 0
    assert [m.msg_id for m in stolen] == [msg_id]
    row = _row(other, msg_id)
    assert row is not None
    state, read_ct, lease, _ = row
    assert (state, read_ct, lease) == ("leased", 2, stolen[0].lease)


def test_work_validates_its_arguments_before_anything_runs(q: Queue) -> None:
    for kwargs in ({"qty": 0}, {"concurrency": 0}, {"vt": 0}, {"wait": -1.0},
                   {"max_messages": 0}, {"max_runtime": 0}, {"queue": "bad name"}):
        args: dict[str, Any] = {"queue": QUEUE, **kwargs}
        with pytest.raises(InvalidInput):
            q.work(lambda m: None, **args)


# ----------------------------------------------------------------------------- outcomes


def test_retry_reject_and_exceptions_put_messages_back_as_told(q: Queue, conn: Any) -> None:
    retry, reject, boom = _send(q, 3)

    def handler(message: Message) -> None:
        if message.msg_id == retry:
            raise Retry(delay=60)
        if message.msg_id == reject:
            raise Reject()
        raise RuntimeError("handler bug")

    assert q.work(handler, queue=QUEUE, qty=3, until_empty=True) == 0
    state, read_ct, lease, due_in = _row(conn, retry)  # type: ignore[misc]
    assert (state, read_ct, lease) == ("delayed", 1, None) and 55 < due_in <= 60
    state, read_ct, lease, _ = _row(conn, reject)  # type: ignore[misc]
    assert (state, read_ct, lease) == ("dead", 1, None)
    state, read_ct, lease, due_in = _row(conn, boom)  # type: ignore[misc]
    # Default back-off after the first delivery: 2^0 = 1 s.
    assert (state, read_ct, lease) == ("delayed", 1, None) and 0 < due_in <= 1


def test_default_backoff_doubles_up_to_five_minutes() -> None:
    assert [default_backoff(n) for n in (1, 2, 3, 4, 9, 10, 50)] == [1, 2, 4, 8, 256, 300, 300]


def test_a_failed_message_comes_back_with_the_configured_backoff_and_then_succeeds(
    q: Queue, conn: Any
) -> None:
    (msg_id,) = _send(q, 1)
    attempts: list[int] = []

    def flaky(message: Message) -> None:
        attempts.append(message.read_ct)
        if len(attempts) < 3:
            raise ValueError("not yet")

    # Back-off of 0.2 s: the loop waits for the delayed message to come due (wait=3).
    acked = q.work(flaky, queue=QUEUE, until_empty=True, wait=3, backoff=lambda n: 0.2)
    assert acked == 1 and attempts == [1, 2, 3]
    assert _row(conn, msg_id) is None


def test_delivery_limit_dead_letters_a_failing_message(q: Queue, conn: Any) -> None:
    q.configure(QUEUE, max_deliveries=2)
    (msg_id,) = _send(q, 1)
    attempts: list[int] = []

    def always_fails(message: Message) -> None:
        attempts.append(message.read_ct)
        raise RuntimeError("never works")

    assert q.work(always_fails, queue=QUEUE, until_empty=True, wait=2,
                  backoff=lambda n: 0.1) == 0
    assert attempts == [1, 2]
    state, read_ct, _, _ = _row(conn, msg_id)  # type: ignore[misc]
    assert (state, read_ct) == ("dead", 2)


# ----------------------------------------------------------------------------- heartbeat


def test_heartbeat_keeps_every_held_lease_alive_past_vt(q: Queue, other: Any) -> None:
    _send(q, 2)
    rival = Queue(other)
    rival_saw: list[list[Message]] = []

    def slow(message: Message) -> None:
        # Each handler runs 2.5 vt; the second message waits its turn in the batch for as
        # long. A rival claim (which returns expired leases first) must find nothing.
        time.sleep(2.5)
        rival_saw.append(rival.claim(queue=QUEUE, qty=10, vt=60))

    assert q.work(slow, queue=QUEUE, qty=2, vt=1, until_empty=True) == 2
    assert rival_saw == [[], []]
    assert _count(other) == 0


# ----------------------------------------------------------------------------- stopping


def test_stop_finishes_the_running_handler_and_gives_back_the_rest_at_once(
    q: Queue, other: Any
) -> None:
    ids = _send(q, 5)
    stop = threading.Event()
    given_back_while_running: list[bool] = []

    def first_stops(message: Message) -> None:
        stop.set()

        def rest_ready() -> bool:
            rows = other.execute(
                "SELECT count(*) FROM pgq.messages WHERE state = 'ready' AND read_ct = 0"
            ).fetchone()
            return rows is not None and rows[0] == 4

        wait_until(rest_ready, what="the unstarted messages to be given back")
        given_back_while_running.append(True)

    assert q.work(first_stops, queue=QUEUE, qty=5, stop=stop) == 1
    assert given_back_while_running == [True]
    assert _row(other, ids[0]) is None
    for msg_id in ids[1:]:
        state, read_ct, lease, _ = _row(other, msg_id)  # type: ignore[misc]
        assert (state, read_ct, lease) == ("ready", 0, None)


def test_max_messages_stops_claiming_after_that_many(q: Queue, conn: Any) -> None:
    _send(q, 10)
    seen: list[int] = []
    assert q.work(lambda m: seen.append(m.msg_id), queue=QUEUE, qty=2, max_messages=3) == 3
    assert len(seen) == 3
    rows = conn.execute("SELECT state, read_ct FROM pgq.messages").fetchall()
    assert sorted(rows) == [("ready", 0)] * 7


def test_max_runtime_stops_and_nothing_is_lost(q: Queue, conn: Any) -> None:
    _send(q, 50)
    started = time.monotonic()
    acked = q.work(lambda m: time.sleep(0.1), queue=QUEUE, qty=5, max_runtime=1.0)
    elapsed = time.monotonic() - started
    assert 1.0 <= elapsed < 10
    assert 1 <= acked < 50
    rows = conn.execute("SELECT state, read_ct FROM pgq.messages").fetchall()
    assert len(rows) == 50 - acked and set(rows) == {("ready", 0)}


def test_stop_while_idle_returns_promptly(q: Queue) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    started = time.monotonic()
    assert q.work(lambda m: None, queue=QUEUE, wait=30, stop=stop) == 0
    assert time.monotonic() - started < 5


def test_until_empty_with_wait_picks_up_late_work_then_stops(q: Queue, other: Any) -> None:
    late = Queue(other)
    threading.Timer(0.5, lambda: late.send('{"late": true}', queue=QUEUE)).start()
    seen: list[Any] = []
    started = time.monotonic()
    assert q.work(lambda m: seen.append(m.payload), queue=QUEUE, until_empty=True, wait=1.5) == 1
    assert seen == [{"late": True}]
    # It stopped once nothing had been claimable for 1.5 s after the late message.
    assert 2.0 <= time.monotonic() - started < 10


def test_until_empty_without_wait_stops_at_the_first_empty_claim(q: Queue) -> None:
    started = time.monotonic()
    assert q.work(lambda m: None, queue=QUEUE, until_empty=True) == 0
    assert time.monotonic() - started < 2


# ----------------------------------------------------------------------------- concurrency


def test_handlers_run_concurrently_on_the_pool(q: Queue, conn: Any) -> None:
    _send(q, 4)
    together = threading.Barrier(4, timeout=10)  # breaks unless 4 handlers run at once
    assert q.work(lambda m: together.wait(), queue=QUEUE, qty=4, concurrency=4,
                  until_empty=True) == 4
    assert _count(conn) == 0


def test_racing_workers_ack_each_message_exactly_once(q: Queue, db_dsn: str) -> None:
    ids = _send(q, 400, priority=lambda i: 1 + i % 10)
    seen: list[int] = []
    seen_lock = threading.Lock()
    results: list[int] = []
    errors: list[BaseException] = []

    def handler(message: Message) -> None:
        with seen_lock:
            seen.append(message.msg_id)

    def worker(qty: int) -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as conn:
                results.append(Queue(conn).work(handler, queue=QUEUE, qty=qty,
                                                concurrency=2, until_empty=True, wait=0.5))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(qty,)) for qty in (1, 3, 5, 10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    assert sorted(seen) == ids  # every message handled, none twice
    assert sum(results) == 400
    assert _count(q.conn) == 0


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys, time, psycopg
    from pgq_cli.core.queue import Queue

    def handler(message):
        print(f"started {message.msg_id}", flush=True)
        time.sleep(600)

    with psycopg.connect(sys.argv[1], autocommit=True) as conn:
        Queue(conn).work(handler, queue=sys.argv[2], qty=3, vt=2)
    """
)


def test_sigkilled_worker_process_messages_come_back_after_vt(
    q: Queue, db_dsn: str, conn: Any
) -> None:
    ids = _send(q, 3)
    process = subprocess.Popen(
        [sys.executable, "-c", WORKER_SCRIPT, db_dsn, QUEUE],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("started "), first
        time.sleep(2.5)  # past vt: only the heartbeat keeps the leases alive now
        states = conn.execute("SELECT state, vt > now() FROM pgq.messages").fetchall()
        assert states == [("leased", True)] * 3
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
    seen: list[Message] = []
    # The leases run out up to 2 s after the kill; a waiting worker picks them up.
    assert q.work(seen.append, queue=QUEUE, qty=3, until_empty=True, wait=5) == 3
    assert sorted(m.msg_id for m in seen) == ids
    assert {m.read_ct for m in seen} == {2}
    assert _count(conn) == 0


# ----------------------------------------------------------------------------- reconnect


def test_terminated_backend_is_reconnected_and_the_ack_resent_fenced(
    db_dsn: str, other: Any
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        q = Queue(conn)
        ids = _send(q, 10)
        pid = conn.info.backend_pid
        seen: list[int] = []

        def handler(message: Message) -> None:
            if not seen:  # the connection dies while the first message is handled
                other.execute("SELECT pg_terminate_backend(%s)", (pid,))
            seen.append(message.msg_id)

        def reconnect() -> psycopg.Connection[Any]:
            return psycopg.connect(db_dsn, autocommit=True)

        acked = q.work(handler, queue=QUEUE, until_empty=True, connect=reconnect)
    assert acked == 10
    assert seen == ids  # the first message's ack was resent, not redelivered
    assert _count(other) == 0


@pytest.mark.parametrize("wait", [None, 0.1], ids=["until_empty", "listening"])
def test_a_connection_lost_before_the_first_statement_is_reconnected(
    db_dsn: str, other: Any, wait: float | None
) -> None:
    """The connection can go between connecting and the loop's first statements (its
    fairness check, its LISTEN): those are retried after a reconnect like every other."""
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        q = Queue(conn)
        ids = _send(q, 3)
        other.execute("SELECT pg_terminate_backend(%s)", (conn.info.backend_pid,))
        seen: list[int] = []

        def reconnect() -> psycopg.Connection[Any]:
            return psycopg.connect(db_dsn, autocommit=True)

        acked = q.work(lambda m: seen.append(m.msg_id), queue=QUEUE, until_empty=True,
                       wait=wait, connect=reconnect, reconnect_timeout=10)
    assert acked == 3 and seen == ids
    assert _count(other) == 0


def test_without_connect_a_lost_connection_raises_connect_failed(
    q: Queue, other: Any
) -> None:
    _send(q, 2)
    pid = q.conn.info.backend_pid

    def handler(message: Message) -> None:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))

    with pytest.raises(ConnectFailed):
        q.work(handler, queue=QUEUE, until_empty=True)


def test_reconnect_timeout_gives_up_with_connect_failed(q: Queue, other: Any) -> None:
    _send(q, 1)
    pid = q.conn.info.backend_pid

    def handler(message: Message) -> None:
        other.execute("SELECT pg_terminate_backend(%s)", (pid,))

    def unreachable() -> psycopg.Connection[Any]:
        return psycopg.connect(UNREACHABLE_DSN)

    started = time.monotonic()
    with pytest.raises(ConnectFailed, match="gave up after 1 s"):
        q.work(handler, queue=QUEUE, until_empty=True, connect=unreachable,
               reconnect_timeout=1)
    assert time.monotonic() - started < 10


def test_fused_statement_is_built_from_the_claims_own_pieces() -> None:
    for piece in (queries.CLAIM_LOCKED, queries.LEASE_LOCKED):
        assert piece in queries.FUSED_ACK_CLAIM and piece in queries.CLAIM
    assert queries.CLAIM_CANDIDATES in queries.CLAIM_LOCKED


def test_an_idle_loop_wakes_on_notify_long_before_its_wait_runs_out(
    q: Queue, other: Any
) -> None:
    late = Queue(other)
    stop = threading.Event()
    handled_at: list[float] = []

    def handler(message: Message) -> None:
        handled_at.append(time.monotonic())
        stop.set()

    threading.Timer(0.5, lambda: late.send('{"late": true}', queue=QUEUE)).start()
    started = time.monotonic()
    # Nothing is leased or delayed, so no due time cuts the 60 s sleep short: only the
    # NOTIFY of the send can.
    assert q.work(handler, queue=QUEUE, wait=60, stop=stop) == 1
    assert handled_at and handled_at[0] - started < 5


def test_the_worker_module_imports_no_cli_libraries() -> None:
    code = (
        "import pgq_cli.core.worker, sys; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click'));"
        "assert not leaked, leaked"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_behind_a_transaction_pooler_the_loop_polls_instead_of_listening(
    db_dsn: str, other: Any
) -> None:
    late = Queue(other)
    listening: list[Any] = []
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        pooled = Queue(conn, pool_mode="transaction")

        def handler(message: Message) -> None:
            listening.extend(conn.execute("SELECT pg_listening_channels()").fetchall())

        threading.Timer(0.5, lambda: late.send('{"late": true}', queue=QUEUE)).start()
        started = time.monotonic()
        # No NOTIFY can reach it; the poll (every second at most) finds the late message.
        assert pooled.work(handler, queue=QUEUE, until_empty=True, wait=3) == 1
    assert listening == []
    assert time.monotonic() - started < 10
