"""Fair claiming across keys, on real connections: rotation, priority first, FIFO within a
key, weights, the per-key cap under racing claimers, exactly-n, and the bookkeeping that
the claim, ack, requeue and expiry keep in fair_keys. No mocks.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from typing import Any

import psycopg
import pytest

from pgq_cli.core.errors import InvalidInput
from pgq_cli.core.queue import Queue

Q = "tenants"


def _fair(q: Queue, *, cap: int | None = None) -> None:
    q.configure_fairness(Q, fair=True, max_inflight_per_key=cap, set_max_inflight=True)


def _send(q: Queue, key: str | None, count: int, *, priority: int = 5) -> list[int]:
    payloads = [json.dumps({"key": key, "n": i}) for i in range(count)]
    return q.send_many(payloads, queue=Q, key=key, priority=priority)


def _claim_keys(q: Queue, claims: int) -> list[str | None]:
    out: list[str | None] = []
    for _ in range(claims):
        (message,) = q.claim(queue=Q, vt=300)
        out.append(message.key)
    return out


def _inflight(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT key, inflight FROM pgq.fair_keys WHERE queue = %s", (Q,)
    ).fetchall()
    return {str(k): int(n) for k, n in rows}


def _leased_by_key(conn: psycopg.Connection[Any]) -> dict[str, int]:
    rows = conn.execute(
        "SELECT coalesce(key, ''), count(*) FROM pgq.messages"
        " WHERE queue = %s AND state = 'leased' GROUP BY 1",
        (Q,),
    ).fetchall()
    return {str(k): int(n) for k, n in rows}


def test_a_late_small_key_is_not_starved_by_a_huge_backlog(q: Queue) -> None:
    _fair(q)
    _send(q, "A", 100_000)
    b_ids = set(_send(q, "B", 10))
    taken = [m.msg_id for _ in range(20) for m in q.claim(queue=Q, vt=300)]
    assert len(taken) == 20
    assert b_ids <= set(taken), f"only {len(b_ids & set(taken))} of B's 10 came out"


def test_claims_rotate_across_keys_and_keep_fifo_within_a_key(q: Queue) -> None:
    _fair(q)
    sent = {key: _send(q, key, 4) for key in ("A", "B", "C")}
    sent[""] = [q.send("{}", queue=Q)]  # no key: a lane of its own
    order = [m for _ in range(13) for m in q.claim(queue=Q, vt=300)]
    assert len(order) == 13
    first_round = {m.key for m in order[:4]}
    assert first_round == {"A", "B", "C", None}, "every key, and no key, in the first round"
    for key in ("A", "B", "C"):
        assert [m.msg_id for m in order if m.key == key] == sent[key], f"FIFO within {key}"
    # Rounds: no key gets a second turn while another with work has had fewer.
    for n in range(1, 13):
        counts = Counter(m.key for m in order[:n])
        live = [k for k in ("A", "B", "C") if counts[k] < 4]
        assert max(counts[k] for k in live) - min(counts[k] for k in live) <= 1 if live else True


def test_priority_comes_first_whatever_the_key(q: Queue) -> None:
    _fair(q)
    _send(q, "A", 50)
    _send(q, "B", 50)
    urgent = {q.send("{}", queue=Q, key=k, priority=9) for k in ("C", "A", "D")}
    first = [m for _ in range(3) for m in q.claim(queue=Q, vt=300)]
    assert {m.msg_id for m in first} == urgent
    assert all(m.priority == 5 for m in q.claim(queue=Q, qty=10, vt=300))
    late = q.send("{}", queue=Q, key="A", priority=7)
    assert [m.msg_id for m in q.claim(queue=Q, vt=300)] == [late]


def test_a_batch_claim_spreads_across_keys(q: Queue) -> None:
    _fair(q)
    for key in ("A", "B", "C"):
        _send(q, key, 10)
    batch = q.claim(queue=Q, qty=6, vt=300)
    assert Counter(m.key for m in batch) == {"A": 2, "B": 2, "C": 2}
    # ...and the rotation continues from there: the next single claims cycle all three.
    assert sorted(_claim_keys(q, 3)) == ["A", "B", "C"]


def test_weight_two_gets_twice_the_claims_in_every_window_of_300(q: Queue) -> None:
    _fair(q)
    q.set_key_weight(Q, "gold", 2)
    q.set_key_weight(Q, "free", 1)
    _send(q, "gold", 1000)
    _send(q, "free", 1000)
    keys = _claim_keys(q, 900)  # gold still has backlog at the end (600 of 1000 taken)
    for start in range(0, len(keys) - 300 + 1):
        window = Counter(keys[start : start + 300])
        ratio = window["gold"] / window["free"]
        assert 1.8 <= ratio <= 2.2, f"window at {start}: {dict(window)}"


def test_a_weight_can_be_set_for_the_no_key_lane_and_is_checked(q: Queue) -> None:
    result = q.set_key_weight(Q, None, 3)
    assert (result.key, result.weight) == (None, 3.0)
    for bad in (0, -1, 1001, float("nan")):
        with pytest.raises(InvalidInput):
            q.set_key_weight(Q, "A", bad)


def test_a_key_at_its_cap_yields_nothing_even_at_higher_priority(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    _fair(q, cap=2)
    _send(q, "A", 5, priority=9)
    _send(q, "B", 5, priority=5)
    first = q.claim(queue=Q, qty=10, vt=300)
    assert Counter((m.key, m.priority) for m in first) == {("A", 9): 2, ("B", 5): 2}
    assert q.claim(queue=Q, vt=300) == [], "both keys are at their cap"
    assert _inflight(conn) == {"A": 2, "B": 2}
    q.ack([first[0].msg_id], lease=first[0].lease)  # an A: A may have one more
    (again,) = q.claim(queue=Q, qty=5, vt=300)
    assert (again.key, again.priority) == ("A", 9)
    b_lease = next(m for m in first if m.key == "B")
    q.requeue([b_lease.msg_id], lease=b_lease.lease)
    (back,) = q.claim(queue=Q, qty=5, vt=300)
    assert back.msg_id == b_lease.msg_id, "requeued: B's cap freed, its message first again"
    assert _inflight(conn) == _leased_by_key(conn) == {"A": 2, "B": 2}


def test_an_expired_lease_frees_its_key_at_the_next_claim(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    _fair(q, cap=1)
    _send(q, "A", 3)
    (held,) = q.claim(queue=Q, vt=300)
    assert q.claim(queue=Q, vt=300) == []
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 s' WHERE msg_id = %s", (held.msg_id,)
    )
    (again,) = q.claim(queue=Q, vt=300)
    assert again.msg_id == held.msg_id and again.read_ct == 2
    assert _inflight(conn) == {"A": 1}


def test_turning_fairness_on_registers_waiting_work_and_off_falls_back(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    early = {key: _send(q, key, 3) for key in ("A", "B")}
    _fair(q)
    assert _claim_keys(q, 2) in (["A", "B"], ["B", "A"])
    q.configure_fairness(Q, fair=False)
    rest = [m.msg_id for m in q.claim(queue=Q, qty=10, vt=300)]
    assert rest == sorted(early["A"][1:] + early["B"][1:]), "ordinary claim order again"
    for message_id in rest:
        q.ack([message_id])
    assert q.fairness(Q).fair is False


def test_a_queue_turned_fair_behind_a_long_lived_queue_object(
    q: Queue, db_dsn: str
) -> None:
    """Another connection turns the queue fair: this Queue finds out at its next claim."""
    _send(q, "A", 3)
    _send(q, "B", 3)
    assert q.claim(queue=Q, vt=300)[0].key == "A"  # ordinary: FIFO
    with psycopg.connect(db_dsn, autocommit=True) as other:
        Queue(other).configure_fairness(Q, fair=True)
    keys = _claim_keys(q, 4)
    assert Counter(keys) == {"A": 2, "B": 2}


def test_ordinary_queues_ignore_keys(q: Queue, conn: psycopg.Connection[Any]) -> None:
    ids = [q.send("{}", key=k) for k in ("B", "A", "B", None)]
    q.send_many(["{}"] * 3, key="C")
    found = q.claim(qty=4)
    assert [m.msg_id for m in found] == ids
    assert [m.key for m in found] == ["B", "A", "B", None]
    q.requeue([found[0].msg_id])
    q.ack([m.msg_id for m in found[1:]])
    # No bookkeeping for ordinary queues: no key rows, no counted leases.
    assert conn.execute("SELECT count(*) FROM pgq.fair_keys").fetchone() == (0,)
    assert conn.execute(
        "SELECT count(*) FROM pgq.messages WHERE lease_counted IS NOT NULL"
    ).fetchone() == (0,)


# pg_trigger.tgtype bits (PostgreSQL's trigger.h): row-level, BEFORE, fires on DELETE.
TRIGGER_TYPE_ROW, TRIGGER_TYPE_BEFORE, TRIGGER_TYPE_DELETE = 1, 2, 8


def test_no_row_trigger_runs_before_an_ack(conn: psycopg.Connection[Any]) -> None:
    """A BEFORE DELETE row trigger makes PostgreSQL lock every deleted row before it reads
    the trigger's WHEN, so every ack of every queue would write a tuple-lock WAL record
    (sql/0006 moved the fair counter's delete trigger to AFTER)."""
    mask = TRIGGER_TYPE_ROW | TRIGGER_TYPE_BEFORE | TRIGGER_TYPE_DELETE
    before_delete = conn.execute(
        "SELECT tgname FROM pg_trigger WHERE tgrelid = 'pgq.messages'::regclass"
        " AND NOT tgisinternal AND tgtype::int & %s = %s",
        (mask, mask),
    ).fetchall()
    assert before_delete == []
    # The counter trigger is still there, after the delete.
    after = conn.execute(
        "SELECT tgtype::int & %s FROM pg_trigger WHERE tgrelid = 'pgq.messages'::regclass"
        " AND tgname = 'messages_fair_lease_ended_delete'",
        (mask,),
    ).fetchall()
    assert after == [(TRIGGER_TYPE_ROW | TRIGGER_TYPE_DELETE,)]


def test_a_band_claim_serves_the_keys_whose_work_is_in_the_band(q: Queue) -> None:
    _fair(q)
    for key in ("A1", "A2", "A3", "A4"):  # first in turn order, but above the band
        _send(q, key, 1, priority=9)
    low = {m for key in ("B", "C") for m in _send(q, key, 2, priority=2)}
    taken = q.claim(queue=Q, qty=4, vt=300, max_priority=3)
    assert {m.msg_id for m in taken} == low


def test_a_paused_fair_queue_yields_nothing(q: Queue) -> None:
    _fair(q)
    _send(q, "A", 2, priority=3)
    _send(q, "B", 2, priority=8)
    q.pause(Q, below_priority=5)
    assert {m.key for m in q.claim(queue=Q, qty=10, vt=300)} == {"B"}
    q.pause(Q)
    _send(q, "C", 1, priority=9)
    assert q.claim(queue=Q, vt=300) == []
    q.resume(Q)
    assert [m.key for m in q.claim(queue=Q, vt=300)] == ["C"]


CLAIMERS = 8
KEYS = 12
PER_KEY = 40
CAP = 3


class RaceLedger:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.claimed: Counter[int] = Counter()
        self.over_qty: list[tuple[int, int]] = []
        # key -> (start, end) client-side times a lease was certainly live: after the claim
        # returned and before the ack was sent. Overlaps here are overlaps in the database.
        self.held: dict[str, list[tuple[float, float]]] = {}
        self.errors: list[BaseException] = []


def _race_claimer(dsn: str, ledger: RaceLedger, seed: int, deadline: float) -> None:
    rng = random.Random(seed)
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            q = Queue(conn)
            while time.monotonic() < deadline:
                qty = rng.randint(1, 7)
                found = q.claim(queue=Q, qty=qty, vt=120)
                got_at = time.monotonic()
                with ledger.lock:
                    if len(found) > qty:
                        ledger.over_qty.append((qty, len(found)))
                    ledger.claimed.update(m.msg_id for m in found)
                if not found:
                    with ledger.lock:
                        if sum(ledger.claimed.values()) >= KEYS * PER_KEY:
                            return
                    time.sleep(0.01)
                    continue
                time.sleep(rng.random() * 0.01)  # hold the leases a little
                for m in found:
                    released_at = time.monotonic()
                    with ledger.lock:
                        ledger.held.setdefault(str(m.key), []).append((got_at, released_at))
                    q.ack([m.msg_id], lease=m.lease)
    except BaseException as exc:  # surfaced by the test
        with ledger.lock:
            ledger.errors.append(exc)


def _max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    live = peak = 0
    for _, step in events:
        live += step
        peak = max(peak, live)
    return peak


def test_racing_claimers_respect_exactly_n_and_the_cap(
    q: Queue, db_dsn: str, conn: psycopg.Connection[Any]
) -> None:
    _fair(q, cap=CAP)
    for k in range(KEYS):
        _send(q, f"k{k}", PER_KEY, priority=random.Random(k).choice((4, 5, 6)))
    ledger = RaceLedger()
    stop_sampling = threading.Event()
    sampled_peak: list[int] = []

    def sample() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as watcher:
            while not stop_sampling.is_set():
                counts = _leased_by_key(watcher)
                sampled_peak.append(max(counts.values(), default=0))

    deadline = time.monotonic() + 90
    threads = [
        threading.Thread(target=_race_claimer, args=(db_dsn, ledger, seed, deadline))
        for seed in range(CLAIMERS)
    ]
    sampler = threading.Thread(target=sample)
    sampler.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop_sampling.set()
    sampler.join()
    assert ledger.errors == []
    assert ledger.over_qty == [], "a claim returned more than its qty"
    assert sum(ledger.claimed.values()) == KEYS * PER_KEY, "everything was claimed"
    assert max(ledger.claimed.values()) == 1, "a message was handed out twice"
    assert max(sampled_peak) <= CAP, "a key held more leases than its cap"
    assert all(_max_overlap(iv) <= CAP for iv in ledger.held.values())
    assert set(_inflight(conn).values()) == {0}, "every lease was uncounted when acked"


def test_racing_claimers_never_hand_out_a_message_twice_without_a_cap(
    q: Queue, db_dsn: str
) -> None:
    _fair(q)
    for k in range(KEYS):
        _send(q, f"k{k}", PER_KEY)
    ledger = RaceLedger()
    deadline = time.monotonic() + 90
    threads = [
        threading.Thread(target=_race_claimer, args=(db_dsn, ledger, seed + 100, deadline))
        for seed in range(CLAIMERS)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.errors == []
    assert ledger.over_qty == []
    assert sum(ledger.claimed.values()) == KEYS * PER_KEY
    assert max(ledger.claimed.values()) == 1


def test_sends_racing_claims_never_leave_a_key_without_its_turn(
    q: Queue, db_dsn: str, conn: psycopg.Connection[Any]
) -> None:
    """A key's head is recomputed under its row lock: work sent while a claim serves the
    key is never lost from the rotation (it would sit ready with no head, never claimed)."""
    _fair(q)
    total = 300
    done = threading.Event()
    errors: list[BaseException] = []

    def producer() -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as pconn:
                pq = Queue(pconn)
                for i in range(total):
                    pq.send(json.dumps({"i": i}), queue=Q, key=f"k{i % 3}")
        except BaseException as exc:
            errors.append(exc)
        finally:
            done.set()

    claimed = 0

    def consumer(seed: int) -> None:
        nonlocal claimed
        try:
            with psycopg.connect(db_dsn, autocommit=True) as cconn:
                cq = Queue(cconn)
                idle_after_done = 0
                while idle_after_done < 20:
                    found = cq.claim(queue=Q, qty=2, vt=300)
                    for m in found:
                        cq.ack([m.msg_id], lease=m.lease)
                    with lock:
                        claimed += len(found)
                    if not found and done.is_set():
                        idle_after_done += 1
                        time.sleep(0.01)
        except BaseException as exc:
            errors.append(exc)

    lock = threading.Lock()
    threads = [threading.Thread(target=producer)] + [
        threading.Thread(target=consumer, args=(s,)) for s in range(3)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert claimed == total
    ready_without_head = conn.execute(
        "SELECT count(*) FROM pgq.messages m JOIN pgq.fair_keys k"
        " ON k.queue = m.queue AND k.key = coalesce(m.key, '')"
        " WHERE m.state = 'ready' AND k.head_priority IS NULL"
    ).fetchone()
    assert ready_without_head == (0,)


def test_the_consumer_loop_claims_a_fair_queue_fairly(q: Queue) -> None:
    """Queue.work's fused statement claims ordinary queues only: on a fair queue it settles
    acks and claims through fair_claim, so keys rotate and an until_empty run drains it."""
    _fair(q)
    _send(q, "a", 6)
    _send(q, "b", 2)
    keys: list[str | None] = []
    acked = q.work(lambda m: keys.append(m.key), queue=Q, until_empty=True)
    assert acked == 8
    assert sorted(k or "" for k in keys) == ["a"] * 6 + ["b"] * 2
    assert keys[:4].count("b") == 2  # b is not made to wait behind all of a's backlog
    assert q.claim(queue=Q, qty=10) == []
