"""ack/requeue of several ids: each id on its own, and a refusal says what happened.

The contract (README, "ack and requeue of several ids"): each id is handled on its own;
stdout lists the ids that were done; exit 3 means at least one id was not done, with one
stderr line per such id; `--json` prints {"msg_id", "result"} for every id given. A stale
lease token is refused with what actually became of the message: requeued by its holder,
claimed again by another consumer, gone, or dead.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest
from conftest import Cli

from pgq_cli.core.queue import Queue

COUNT = "SELECT count(*) FROM pgq.messages WHERE msg_id = ANY(%s)"


def _json(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _expire(conn: psycopg.Connection[Any], msg_id: int) -> None:
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 second' WHERE msg_id = %s", (msg_id,)
    )


def test_ack_of_several_ids_acks_the_known_ones_lists_them_and_exits_3(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    ids = [q.send("{}") for _ in range(3)]
    result = cli("ack", *map(str, ids), "999999")
    assert result.exit_code == 3, result
    assert result.stdout == "".join(f"{i}\n" for i in ids)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("pgq: error: no such message: 999999"), line
    assert conn.execute(COUNT, (ids,)).fetchone() == (0,)


def test_ack_json_prints_a_result_for_every_id_in_the_order_given(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    first, second = q.send("{}"), q.send("{}")
    result = cli("ack", "999999", str(second), str(first), "--json")
    assert result.exit_code == 3, result
    assert _json(result.stdout) == [
        {"msg_id": 999999, "result": "unknown"},
        {"msg_id": second, "result": "acked"},
        {"msg_id": first, "result": "acked"},
    ]


def test_ack_of_ids_that_were_all_done_exits_0_with_every_result_acked(
    cli: Cli, q: Queue
) -> None:
    ids = [q.send("{}") for _ in range(2)]
    result = cli("ack", *map(str, ids), "--json")
    assert (result.exit_code, result.stderr) == (0, "")
    assert [r["result"] for r in _json(result.stdout)] == ["acked", "acked"]


def test_requeue_json_says_requeued_stale_lease_and_unknown_per_id(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send("{}")
    (old,) = q.claim(vt=30)
    _expire(conn, msg_id)
    q.claim(vt=300)  # claimed again: the old token is stale
    result = cli("requeue", str(msg_id), "--lease", str(old.lease), "--json")
    assert result.exit_code == 3, result
    assert _json(result.stdout) == [{"msg_id": msg_id, "result": "stale_lease"}]
    fresh = q.send("{}")
    result = cli("requeue", str(fresh), "424242", "--json")
    assert result.exit_code == 3, result
    assert _json(result.stdout) == [
        {"msg_id": fresh, "result": "requeued"},
        {"msg_id": 424242, "result": "unknown"},
    ]


def test_requeue_of_a_dead_letter_without_a_lease_is_not_leased(
    cli: Cli, q: Queue
) -> None:
    msg_id = q.send("{}", queue="jobs")
    q.configure("jobs", max_deliveries=1)
    q.claim(queue="jobs")
    q.requeue([msg_id])  # its last delivery: dead
    result = cli("requeue", str(msg_id), "--json")
    assert result.exit_code == 3, result
    assert _json(result.stdout) == [{"msg_id": msg_id, "result": "not_leased"}]
    assert "is a dead letter" in result.stderr


def _stale_by_requeue(q: Queue, conn: psycopg.Connection[Any]) -> tuple[int, str]:
    msg_id = q.send("{}")
    (m,) = q.claim(vt=300)
    q.requeue([msg_id], lease=m.lease)
    return msg_id, str(m.lease)


def _stale_by_delayed_requeue(q: Queue, conn: psycopg.Connection[Any]) -> tuple[int, str]:
    msg_id = q.send("{}")
    (m,) = q.claim(vt=300)
    q.requeue([msg_id], lease=m.lease, delay=600)
    return msg_id, str(m.lease)


def _stale_by_second_claim(q: Queue, conn: psycopg.Connection[Any]) -> tuple[int, str]:
    msg_id = q.send("{}")
    (m,) = q.claim(vt=30)
    _expire(conn, msg_id)
    q.claim(vt=300)
    return msg_id, str(m.lease)


def _stale_by_ack(q: Queue, conn: psycopg.Connection[Any]) -> tuple[int, str]:
    msg_id = q.send("{}")
    (m,) = q.claim(vt=300)
    q.ack([msg_id], lease=m.lease)
    return msg_id, str(m.lease)


def _stale_by_death(q: Queue, conn: psycopg.Connection[Any]) -> tuple[int, str]:
    msg_id = q.send("{}", queue="once")
    q.configure("once", max_deliveries=1)
    (m,) = q.claim(queue="once", vt=30)
    _expire(conn, msg_id)
    q.requeue_expired()  # its one delivery ran out: dead
    return msg_id, str(m.lease)


@pytest.mark.parametrize(
    ("make_stale", "said"),
    [
        (_stale_by_requeue, "lease is not current: message {id} is ready again: it was "
                            "requeued, or its lease expired and it was returned"),
        (_stale_by_delayed_requeue, "lease is not current: message {id} was requeued by its "
                                    "holder with a delay"),
        (_stale_by_second_claim, "lease is not current: message {id} was claimed again by "
                                 "another consumer (delivery 2)"),
        (_stale_by_ack, "no such message: {id} (acked already, or purged)"),
        (_stale_by_death, "lease is not current: message {id} went to dead letters"),
    ],
    ids=["requeued", "requeued-with-delay", "claimed-again", "acked", "dead"],
)
@pytest.mark.parametrize("command", ["ack", "requeue", "extend"])
def test_a_stale_lease_says_what_happened_to_the_message(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any], make_stale: Any, said: str,
    command: str,
) -> None:
    msg_id, old = make_stale(q, conn)
    before = conn.execute("SELECT * FROM pgq.messages WHERE msg_id = %s", (msg_id,)).fetchone()
    extra = ["--vt", "60"] if command == "extend" else []
    result = cli(command, str(msg_id), "--lease", old, *extra)
    assert result.exit_code == 3, result
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("pgq: error: " + said.format(id=msg_id)), line
    after = conn.execute("SELECT * FROM pgq.messages WHERE msg_id = %s", (msg_id,)).fetchone()
    assert after == before


def test_racing_acks_of_the_same_ids_ack_each_id_exactly_once(
    db_dsn: str, q: Queue
) -> None:
    """Four connections ack the same 200 ids at once: every id is acked by exactly one of
    them, and the others say unknown for it (nothing acked twice, nothing lost)."""
    ids = [q.send("{}") for _ in range(200)]
    racers = 4
    start = threading.Barrier(racers)
    outcomes: list[dict[int, str]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def racer(order: list[int]) -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as conn:
                start.wait(timeout=30)
                got = {r.msg_id: r.result for r in Queue(conn).ack_each(order)}
            with lock:
                outcomes.append(got)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    orders = [ids, ids[::-1], ids[100:] + ids[:100], ids[::2] + ids[1::2]]
    threads = [threading.Thread(target=racer, args=(order,)) for order in orders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert len(outcomes) == racers
    for msg_id in ids:
        results = sorted(o[msg_id] for o in outcomes)
        assert results == ["acked"] + ["unknown"] * (racers - 1), (msg_id, results)
