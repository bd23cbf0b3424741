"""Exactly-n under concurrency and under a hostile plan; daemon-free return of due work.

Every test here races real connections (one psycopg connection per thread) or forces a real
plan on a real server: no mocks.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgq_cli.core import queue as core
from pgq_cli.core.errors import NothingDone
from pgq_cli.core.queue import Queue

INITIAL = 400
SENDERS = 2
SENT_PER_SENDER = 100
CLAIMERS = 4
DEADLINE_S = 60.0


def _payloads(tag: str, count: int) -> list[str]:
    return [json.dumps({"tag": tag, "n": i}) for i in range(count)]


class Ledger:
    """What every worker saw, merged under a lock for the assertions."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claims: Counter[int] = Counter()
        self.requeues: Counter[int] = Counter()
        self.acks: Counter[int] = Counter()
        self.over_qty: list[tuple[int, int]] = []
        self.refused: list[str] = []
        self.errors: list[BaseException] = []


def _claimer(dsn: str, ledger: Ledger, expected: int, seed: int) -> None:
    rng = random.Random(seed)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            q = Queue(conn)
            deadline = time.monotonic() + DEADLINE_S
            while time.monotonic() < deadline:
                with ledger.lock:
                    if sum(ledger.acks.values()) >= expected:
                        return
                qty = rng.randint(1, 7)
                found = q.claim(qty=qty, vt=60)
                with ledger.lock:
                    if len(found) > qty:
                        ledger.over_qty.append((qty, len(found)))
                    ledger.claims.update(m.msg_id for m in found)
                for message in found:
                    _handle(q, message, rng, ledger)
    except BaseException as exc:
        with ledger.lock:
            ledger.errors.append(exc)


def _handle(q: Queue, message: core.Message, rng: random.Random, ledger: Ledger) -> None:
    """Ack (with the lease token, so a stolen lease is refused), sometimes after an extend;
    give some back once."""
    try:
        if message.read_ct == 1 and rng.random() < 0.15:
            q.requeue([message.msg_id], lease=message.lease)
            with ledger.lock:
                ledger.requeues[message.msg_id] += 1
            return
        if rng.random() < 0.2:
            q.extend(message.msg_id, vt=120, lease=message.lease)
        q.ack([message.msg_id], lease=message.lease)
        with ledger.lock:
            ledger.acks[message.msg_id] += 1
    except NothingDone as exc:  # stale lease: someone else holds this message
        with ledger.lock:
            ledger.refused.append(f"{message.msg_id}: {exc.message}")


def _sender(dsn: str, ledger: Ledger, tag: str) -> None:
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            q = Queue(conn)
            for index, payload in enumerate(_payloads(tag, SENT_PER_SENDER)):
                q.send(payload, priority=1 + index % 10)
    except BaseException as exc:
        with ledger.lock:
            ledger.errors.append(exc)


def test_racing_claimers_with_senders_acks_requeues_and_extends(db_dsn: str, q: Queue) -> None:
    for priority in (2, 5, 9):
        q.send_many(_payloads(f"p{priority}", INITIAL // 4), priority=priority)
    q.send_many(_payloads("p10", INITIAL - 3 * (INITIAL // 4)), priority=10)
    expected = INITIAL + SENDERS * SENT_PER_SENDER
    ledger = Ledger()
    threads = [
        threading.Thread(target=_claimer, args=(db_dsn, ledger, expected, seed))
        for seed in range(CLAIMERS)
    ] + [threading.Thread(target=_sender, args=(db_dsn, ledger, f"s{i}")) for i in range(SENDERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S + 10)
    assert not any(t.is_alive() for t in threads), "a worker hung"
    assert not ledger.errors, ledger.errors
    assert ledger.over_qty == []
    # A second live lease on one message would make one holder's token-checked ack or
    # requeue fail (refused), or make one message acked twice.
    assert ledger.refused == []
    assert len(ledger.acks) == expected, "every message delivered and acked"
    assert set(ledger.acks.values()) == {1}, "no message acked twice"
    # Each message was claimed once per time it was given back, plus the final delivery:
    # nobody was handed a message that another consumer still held.
    for msg_id, claims in ledger.claims.items():
        assert claims == ledger.requeues[msg_id] + 1, msg_id
    assert sum(ledger.requeues.values()) > 0, "the race exercised requeue"
    assert q.stats().total == 0


# ----------------------------------------------------------------------------- hostile plan

# The tempting claim shape docs/design.md forbids, kept here only to prove the test can see the
# failure it guards against.
IN_SUBQUERY_CLAIM = """
UPDATE {messages}
SET state = 'leased',
    vt = now() + interval '30 seconds',
    read_ct = read_ct + 1,
    lease = gen_random_uuid()
WHERE msg_id IN (
    SELECT msg_id
    FROM {messages}
    WHERE queue = %(queue)s
      AND state = 'ready'
    ORDER BY priority DESC, msg_id
    LIMIT %(qty)s
    FOR UPDATE SKIP LOCKED
)
RETURNING msg_id
"""

# No hash join, merge join, hash aggregate, sort or materialize: the planner must put the
# subquery on the inner side of a nested loop and re-run it for every outer row.
NESTED_LOOP_ONLY = ("enable_hashjoin", "enable_mergejoin", "enable_hashagg", "enable_sort",
                    "enable_material")


def test_forced_nested_loop_in_form_over_claims_while_the_claim_stays_exact(
    conn: psycopg.Connection[Any], q: Queue
) -> None:
    q.send_many(_payloads("plan", 50), queue="plan")
    conn.execute("ANALYZE pgq.messages")
    for setting in NESTED_LOOP_ONLY:
        conn.execute(sql.SQL("SET {} = off").format(sql.Identifier(setting)))
    in_form = sql.SQL(IN_SUBQUERY_CLAIM).format(messages=sql.Identifier("pgq", "messages"))
    plan = "\n".join(
        str(r[0]) for r in conn.execute(sql.SQL("EXPLAIN ") + in_form, {"queue": "plan", "qty": 2})
    )
    assert "Nested Loop" in plan, plan
    with conn.transaction(force_rollback=True):
        over = conn.execute(in_form, {"queue": "plan", "qty": 2}).fetchall()
    assert len(over) > 2, "the IN form did not over-claim: this test proves nothing"

    claimed = q.claim(queue="plan", qty=2)
    assert len(claimed) == 2
    assert [m.msg_id for m in claimed] == sorted(m.msg_id for m in claimed)
    counts = {r.priority: (r.ready, r.leased) for r in q.stats(queue="plan").rows}
    assert counts == {5: (48, 2)}


# ----------------------------------------------------------------------------- due work


def _age(conn: psycopg.Connection[Any], state: str) -> None:
    """Let time pass for every row in `state`: its vt is now in the past."""
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 second' WHERE state = %s", (state,)
    )


def test_expired_leases_and_due_delayed_come_back_through_claim_in_priority_order(
    conn: psycopg.Connection[Any], q: Queue
) -> None:
    leased_ids = [q.send(json.dumps({"leased": p}), priority=p) for p in (3, 8, 5)]
    assert len(q.claim(qty=3, vt=600)) == 3
    delayed_ids = [q.send(json.dumps({"delayed": p}), priority=p, delay=600) for p in (9, 4, 8)]
    assert q.claim(qty=10) == [], "nothing is due yet"
    _age(conn, "leased")
    _age(conn, "delayed")

    back = q.claim(qty=10)  # no cron, no daemon: the claim itself returns them
    by_id = {m.msg_id: m for m in back}
    assert set(by_id) == set(leased_ids) | set(delayed_ids)
    assert [m.priority for m in back] == [9, 8, 8, 5, 4, 3]
    assert [m.msg_id for m in back if m.priority == 8] == sorted(
        m.msg_id for m in back if m.priority == 8
    ), "FIFO within a priority"
    assert all(by_id[i].read_ct == 2 for i in leased_ids), "redelivery counts"
    assert all(by_id[i].read_ct == 1 for i in delayed_ids)


def test_mass_expiry_is_returned_in_bounded_batches(
    conn: psycopg.Connection[Any], q: Queue, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(core, "RETURN_DUE_BATCH", 10)
    q.send_many(_payloads("mass", 35))
    assert len(q.claim(qty=35, vt=600)) == 35
    _age(conn, "leased")

    def counts() -> tuple[int, int]:
        row = conn.execute(
            "SELECT count(*) FILTER (WHERE state = 'ready'),"
            " count(*) FILTER (WHERE state = 'leased' AND vt <= now())"
            " FROM pgq.messages"
        ).fetchone()
        assert row is not None
        return int(row[0]), int(row[1])

    first = q.claim(qty=1, vt=600)
    assert len(first) == 1
    # One claim returned one batch (10), took one of them: 9 ready, 25 still expired.
    assert counts() == (9, 25)
    second = q.claim(qty=1, vt=600)
    assert len(second) == 1
    # The next claim returned the next batch: 9 + 10 - 1 ready, 15 still expired.
    assert counts() == (18, 15)
    # A claim larger than the batch returns at least qty rows' worth.
    rest = q.claim(qty=40, vt=600)
    assert len(rest) == 33
    assert counts() == (0, 0)
    assert {m.read_ct for m in first + second + rest} == {2}


BIG_READY_BACKLOG = 200_000


def test_due_work_comes_back_within_a_second_of_its_vt_behind_a_large_ready_backlog(
    db_dsn: str, conn: psycopg.Connection[Any], q: Queue
) -> None:
    """No daemon, and no waiting behind ready work: an expired priority-10 lease and a
    priority-10 delayed message are handed out by ordinary claims (of one message each, by
    a consumer busy with 200,000 ready priority-1 messages) at most 1 s after their vt.

    Times are the server's: when the consumer's claim leased it is its new vt minus the
    lease length."""
    conn.execute(
        "INSERT INTO pgq.messages (queue, priority, payload)"
        " SELECT 'big', 1, jsonb_build_object('n', g) FROM generate_series(1, %s) AS g",
        (BIG_READY_BACKLOG,),
    )
    conn.execute("VACUUM (ANALYZE) pgq.messages")
    urgent = q.send('{"urgent": "lease"}', queue="big", priority=10)
    (leased,) = q.claim(queue="big", vt=0.5)
    assert leased.msg_id == urgent
    delayed = q.send('{"urgent": "delayed"}', queue="big", priority=10, delay=0.5)
    row = conn.execute("SELECT vt FROM pgq.messages WHERE msg_id = %s", (delayed,)).fetchone()
    assert row is not None
    due_at = {urgent: leased.vt, delayed: row[0]}

    lease_s = 60.0
    handed_out: dict[int, core.Message] = {}
    ready_claims = 0
    with psycopg.connect(db_dsn, autocommit=True) as consumer_conn:
        consumer = Queue(consumer_conn)
        deadline = time.monotonic() + 20
        while len(handed_out) < 2 and time.monotonic() < deadline:
            for message in consumer.claim(queue="big", qty=1, vt=lease_s):
                if message.priority == 10:
                    handed_out[message.msg_id] = message
                else:
                    ready_claims += 1
                    consumer.ack([message.msg_id], lease=message.lease)
    assert set(handed_out) == {urgent, delayed}
    assert ready_claims > 0, "the consumer was claiming ready work meanwhile"
    for msg_id, message in handed_out.items():
        claimed_at = message.vt - timedelta(seconds=lease_s)
        late = (claimed_at - due_at[msg_id]).total_seconds()
        assert 0 <= late <= 1.0, (msg_id, late)
    assert handed_out[urgent].read_ct == 2
    assert handed_out[delayed].read_ct == 1
