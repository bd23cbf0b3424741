"""Claim order and visibility, against a real server: the contract of docs/design.md.

Highest priority first, FIFO by msg_id within a priority, the same one at a time and as one
batch; a leased message is invisible until its vt and then comes back (read_ct + 1, a new
lease) through the claim path alone, with no daemon.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import psycopg
from conftest import Cli

from pgq_cli.core.queue import Message, Queue

# (label, priority) in the order they are sent; "old" is sent before "new".
SENT = [("one", 1), ("three-old", 3), ("nine", 9), ("three-new", 3), ("seven", 7)]
EXPECTED = ["nine", "seven", "three-old", "three-new", "one"]


def _send_mixed(q: Queue) -> dict[int, str]:
    return {q.send(json.dumps({"label": label}), priority=p): label for label, p in SENT}


def test_claim_one_at_a_time_is_priority_desc_then_fifo(q: Queue) -> None:
    labels = _send_mixed(q)
    claimed = [q.claim() for _ in range(len(SENT))]
    assert all(len(batch) == 1 for batch in claimed)
    assert [labels[b[0].msg_id] for b in claimed] == EXPECTED
    assert [b[0].payload["label"] for b in claimed] == EXPECTED
    assert q.claim() == []


def test_claim_as_one_batch_comes_back_in_claim_order(q: Queue) -> None:
    _send_mixed(q)
    batch = q.claim(qty=10)
    assert [m.payload["label"] for m in batch] == EXPECTED
    assert [m.priority for m in batch] == [9, 7, 3, 3, 1]
    assert len({m.lease for m in batch}) == len(batch), "each message gets its own lease"
    assert all(m.state == "leased" and m.read_ct == 1 for m in batch)


def test_claim_batch_smaller_than_queue_takes_the_most_urgent(q: Queue) -> None:
    _send_mixed(q)
    assert [m.payload["label"] for m in q.claim(qty=2)] == ["nine", "seven"]
    assert [m.payload["label"] for m in q.claim(qty=2)] == ["three-old", "three-new"]
    assert [m.payload["label"] for m in q.claim(qty=2)] == ["one"]


def test_cli_claim_order_one_at_a_time_and_as_batch(cli: Cli) -> None:
    for label, priority in SENT:
        assert cli("send", "-p", str(priority), json.dumps({"label": label})).exit_code == 0
    batch = cli("claim", "-n", "3", "--json")
    assert batch.exit_code == 0, batch.stderr
    lines = [json.loads(line) for line in batch.stdout.splitlines()]
    assert [m["payload"]["label"] for m in lines] == EXPECTED[:3]
    singles = [cli("claim", "--json") for _ in range(3)]
    assert [json.loads(s.stdout)["payload"]["label"] for s in singles[:2]] == EXPECTED[3:]
    assert singles[2].exit_code == 0 and singles[2].stdout == ""


def test_visible_low_priority_beats_leased_high_priority(q: Queue) -> None:
    high = q.send('{"p": 10}', priority=10)
    (leased,) = q.claim(vt=60)
    assert leased.msg_id == high
    low = q.send('{"p": 1}', priority=1)
    (got,) = q.claim(vt=60)
    assert got.msg_id == low
    assert q.claim() == []


def test_claim_priority_band(q: Queue) -> None:
    ids = {p: q.send("{}", priority=p) for p in (1, 4, 6, 9)}
    band = q.claim(qty=10, min_priority=4, max_priority=6)
    assert [m.msg_id for m in band] == [ids[6], ids[4]]
    assert [m.msg_id for m in q.claim(qty=10)] == [ids[9], ids[1]]


def test_queues_are_separate(q: Queue) -> None:
    a = q.send('{"q": "a"}', queue="a", priority=1)
    b = q.send('{"q": "b"}', queue="b", priority=10)
    assert [m.msg_id for m in q.claim(queue="a", qty=5)] == [a]
    assert [m.msg_id for m in q.claim(queue="b", qty=5)] == [b]
    assert q.claim(queue="default") == []


def _server_now(conn: psycopg.Connection[Any]) -> Any:
    row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    return row[0]


def test_invisible_until_vt_then_redelivered_with_new_lease(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send('{"job": "slow"}', priority=8)
    (first,) = q.claim(vt=2)
    assert first.read_ct == 1
    # Poll with real claims. One that starts before the lease runs out (server clock) must
    # come back empty; one that starts after it must return the message.
    empty_claims = 0
    redelivered: list[Message] = []
    deadline = time.monotonic() + 20
    while not redelivered:
        assert time.monotonic() < deadline, "expired lease was never redelivered"
        started = _server_now(conn)
        redelivered = q.claim(vt=30)
        if not redelivered:
            assert started < first.vt, "claim returned nothing after the lease ran out"
            empty_claims += 1
            time.sleep(0.05)
    assert empty_claims > 0, "the message was never seen invisible"
    (second,) = redelivered
    assert second.msg_id == msg_id
    assert second.read_ct == 2
    assert second.lease is not None and second.lease != first.lease
    assert second.payload == {"job": "slow"}
    # The new lease was granted (server clock: vt - 30 s) no earlier than the old one ran out.
    assert second.vt - timedelta(seconds=30) >= first.vt


def test_redelivery_is_daemon_free_and_keeps_priority_order(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    low = q.send("{}", priority=2)
    high = q.send("{}", priority=9)
    q.claim(qty=2, vt=60)
    # Time passing is simulated by moving the leases' end into the past; no daemon runs.
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 second'")
    again = q.claim(qty=5)
    assert [m.msg_id for m in again] == [high, low]
    assert [m.read_ct for m in again] == [2, 2]


def test_delayed_message_is_claimed_only_when_due(q: Queue, conn: psycopg.Connection[Any]) -> None:
    delayed = q.send('{"later": true}', priority=10, delay=3600)
    ready = q.send('{"now": true}', priority=1)
    assert [m.msg_id for m in q.claim(qty=5)] == [ready]
    assert [m.msg_id for m in q.peek(state="delayed")] == [delayed]
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 second' WHERE msg_id = %s", (delayed,)
    )
    (due,) = q.claim(qty=5)
    assert due.msg_id == delayed and due.read_ct == 1


def test_claim_qty_10000_in_one_batch(q: Queue, conn: psycopg.Connection[Any]) -> None:
    payloads = [json.dumps({"i": i}) for i in range(10_000)]
    ids = q.send_many(payloads, priority=5)
    top = q.send('{"urgent": true}', priority=10)
    batch = q.claim(qty=10_000, vt=60)
    assert len(batch) == 10_000
    assert batch[0].msg_id == top
    assert [m.msg_id for m in batch[1:]] == ids[:9_999]
    assert len({m.msg_id for m in batch}) == 10_000
    row = conn.execute("SELECT count(*) FROM pgq.messages WHERE state = 'ready'").fetchone()
    assert row == (1,)


def test_cli_claim_qty_10000(cli: Cli, q: Queue) -> None:
    q.send_many([json.dumps({"i": i}) for i in range(10_000)], priority=3)
    result = cli("claim", "-n", "10000", "--json")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 10_000
    ids = [json.loads(line)["msg_id"] for line in lines]
    assert ids == sorted(ids) and len(set(ids)) == 10_000
