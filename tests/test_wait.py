"""`claim --wait`: woken by NOTIFY from other connections, polling for due work.

Timing bounds are deliberately generous (the machine is shared and noisy): they prove
"woke on the event, long before the wait ran out" and "waited about as long as asked",
not latency. Latency belongs in bench/.
"""

from __future__ import annotations

import os
import subprocess
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgq_cli.core.queue import Queue

LONG_WAIT_S = 30.0  # a waiter that runs this long was not woken


def later(delay: float, action: Callable[[], object]) -> threading.Thread:
    def run() -> None:
        time.sleep(delay)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def send_from_another_connection(dsn: str, queue: str, payload: str = '"hello"', **kw: Any
                                 ) -> Callable[[], int]:
    def send() -> int:
        with psycopg.connect(dsn, autocommit=True) as c:
            return Queue(c).send(payload, queue=queue, **kw)

    return send


def test_wait_wakes_on_a_send_from_another_connection(db_dsn: str, q: Queue) -> None:
    sender = later(0.3, send_from_another_connection(db_dsn, "jobs"))
    started = time.monotonic()
    # poll far longer than the wait: only a NOTIFY can end it early
    found = q.claim(wait=LONG_WAIT_S, queue="jobs", poll=LONG_WAIT_S)
    elapsed = time.monotonic() - started
    sender.join()
    assert [m.payload for m in found] == ["hello"]
    assert found[0].state == "leased"
    assert elapsed < LONG_WAIT_S / 3


def test_wait_ignores_other_queues_and_times_out(db_dsn: str, q: Queue) -> None:
    sender = later(0.2, send_from_another_connection(db_dsn, "other"))
    started = time.monotonic()
    found = q.claim(wait=1.5, queue="jobs")
    elapsed = time.monotonic() - started
    sender.join()
    assert found == []
    assert 1.4 <= elapsed < 15
    assert len(q.peek(queue="other")) == 1  # not claimed by the waiter


def test_wait_picks_up_a_delayed_message_coming_due_by_polling(q: Queue) -> None:
    q.send('"later"', queue="jobs", delay=1.0)
    started = time.monotonic()
    found = q.claim(wait=LONG_WAIT_S, queue="jobs", poll=LONG_WAIT_S)
    elapsed = time.monotonic() - started
    assert [m.payload for m in found] == ["later"]
    assert 0.9 <= elapsed < LONG_WAIT_S / 3  # woken by the next-due time, not the poll


def test_wait_picks_up_an_expired_lease(db_dsn: str, q: Queue) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as c2:
        other = Queue(c2)
        q.send('"work"', queue="jobs")
        (first,) = other.claim(queue="jobs", vt=1.0)  # this consumer then "dies"
    found = q.claim(wait=LONG_WAIT_S, queue="jobs", poll=0.2)
    assert [(m.msg_id, m.read_ct) for m in found] == [(first.msg_id, 2)]
    assert found[0].lease != first.lease


def test_wait_wakes_when_a_paused_queue_is_resumed(db_dsn: str, q: Queue) -> None:
    q.send('"held"', queue="jobs")
    q.pause("jobs")

    def resume() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as c:
            Queue(c).resume("jobs")

    resumer = later(0.5, resume)
    started = time.monotonic()
    found = q.claim(wait=LONG_WAIT_S, queue="jobs", poll=LONG_WAIT_S)
    resumer.join()
    assert [m.payload for m in found] == ["held"]
    assert 0.4 <= time.monotonic() - started < LONG_WAIT_S / 3


def test_many_waiters_each_get_a_different_message(db_dsn: str) -> None:
    results: list[list[int]] = []
    lock = threading.Lock()

    def waiter() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as c:
            got = Queue(c).claim(wait=20, queue="jobs", poll=0.5)
        with lock:
            results.append([m.msg_id for m in got])

    threads = [threading.Thread(target=waiter) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    with psycopg.connect(db_dsn, autocommit=True) as c:
        sent = Queue(c).send_many(['"a"', '"b"', '"c"', '"d"'], queue="jobs")
    for t in threads:
        t.join()
    claimed = [i for r in results for i in r]
    assert sorted(claimed) == sorted(sent)  # each once: no message to two waiters


def test_bulk_send_notifies_once_per_statement_and_queue(db_dsn: str, q: Queue) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as listener:
        listener.execute('LISTEN "pgq_ready:pgq"')
        q.send_many([str(i) for i in range(2000)], queue="bulk")
        q.conn.execute(
            "INSERT INTO pgq.messages (queue, payload)"
            " SELECT CASE WHEN i % 2 = 0 THEN 'x' ELSE 'y' END, to_jsonb(i)"
            " FROM generate_series(1, 1000) AS i"
        )
        q.send("1", queue="later", delay=60)  # not ready: no wake-up
        got = [n.payload for n in listener.notifies(timeout=1.0)]
    assert sorted(got) == ["bulk", "x", "y"]


def test_requeue_notifies_but_claim_does_not(db_dsn: str, q: Queue) -> None:
    msg_id = q.send("1", queue="jobs")
    with psycopg.connect(db_dsn, autocommit=True) as listener:
        listener.execute('LISTEN "pgq_ready:pgq"')
        q.claim(queue="jobs")
        assert [n.payload for n in listener.notifies(timeout=0.5)] == []
        q.requeue([msg_id])
        assert [n.payload for n in listener.notifies(timeout=1.0)] == ["jobs"]


# ----------------------------------------------------------------------------- CLI


def test_cli_wait_times_out_with_fail_if_empty(cli: Any) -> None:
    started = time.monotonic()
    result = cli("claim", "-q", "jobs", "--wait", "1", "--fail-if-empty")
    elapsed = time.monotonic() - started
    assert result.exit_code == 3
    assert result.stdout == ""
    assert 0.9 <= elapsed < 15


def test_cli_wait_returns_the_message_sent_by_another_process(
    db_dsn: str, pgq_bin: str
) -> None:
    env = {**os.environ, "PGQ_DSN": db_dsn}
    waiter = subprocess.Popen(
        [pgq_bin, "claim", "-q", "jobs", "--wait", str(LONG_WAIT_S), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    time.sleep(0.5)
    sent = subprocess.run(
        [pgq_bin, "send", "-q", "jobs", '{"n": 1}'], env=env, capture_output=True, text=True,
        timeout=60,
    )
    assert sent.returncode == 0, sent.stderr
    out, err = waiter.communicate(timeout=LONG_WAIT_S)
    assert waiter.returncode == 0, err
    assert f'"msg_id":{sent.stdout.strip()},' in out and '"payload":{"n":1}' in out


@pytest.mark.parametrize("value", ["-1", "x", "nan", "100000"])
def test_cli_bad_wait_exits_2(cli: Any, value: str) -> None:
    result = cli("claim", "--wait", value)
    assert result.exit_code == 2
    assert result.stderr.startswith("pgq: error: ")
