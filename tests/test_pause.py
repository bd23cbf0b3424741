"""Pause and resume per queue and per priority band, honoured by the claim itself."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from helpers import UNREACHABLE_DSN

from pgq_cli.core.queue import Queue


def fill(q: Queue, queue: str, priorities: list[int]) -> list[int]:
    return [q.send(json.dumps(p), queue=queue, priority=p) for p in priorities]


def test_pause_blocks_claim_for_every_connection_and_resume_restores(
    db_dsn: str, q: Queue
) -> None:
    fill(q, "jobs", [9, 5, 1])
    fill(q, "other", [5])
    q.pause("jobs")
    with psycopg.connect(db_dsn, autocommit=True) as c2:
        consumer = Queue(c2)
        assert consumer.claim(queue="jobs", qty=10) == []
        assert len(consumer.claim(queue="other", qty=10)) == 1  # other queues unaffected
        q.resume("jobs")
        assert [m.priority for m in consumer.claim(queue="jobs", qty=10)] == [9, 5, 1]


def test_pause_band_claims_only_priorities_at_or_above(q: Queue) -> None:
    fill(q, "jobs", [1, 4, 5, 7, 10])
    q.pause("jobs", below_priority=5)
    assert [m.priority for m in q.claim(queue="jobs", qty=10)] == [10, 7, 5]
    assert q.claim(queue="jobs", qty=10) == []
    # An explicit band inside the paused one still gets nothing.
    assert q.claim(queue="jobs", qty=10, max_priority=4) == []
    q.resume("jobs")
    assert [m.priority for m in q.claim(queue="jobs", qty=10)] == [4, 1]


def test_pause_replaces_band_and_resume_clears_both(q: Queue) -> None:
    fill(q, "jobs", [9, 2])
    q.pause("jobs", below_priority=5)
    whole = q.pause("jobs")
    assert (whole.paused, whole.paused_below_priority) == (True, None)
    assert q.claim(queue="jobs", qty=10) == []
    band = q.pause("jobs", below_priority=3)
    assert (band.paused, band.paused_below_priority) == (False, 3)
    assert [m.priority for m in q.claim(queue="jobs", qty=10)] == [9]
    resumed = q.resume("jobs")
    assert (resumed.paused, resumed.paused_below_priority) == (False, None)
    assert [m.priority for m in q.claim(queue="jobs", qty=10)] == [2]


def test_pause_does_not_touch_leases_or_sending(q: Queue) -> None:
    (msg_id,) = fill(q, "jobs", [5])
    (held,) = q.claim(queue="jobs")
    q.pause("jobs")
    assert q.extend(msg_id, vt=60, lease=held.lease).msg_id == msg_id
    assert q.ack([msg_id], lease=held.lease) == [msg_id]
    fill(q, "jobs", [5])
    assert q.claim(queue="jobs") == []


def test_paused_queue_keeps_delayed_and_expired_work_unclaimed(q: Queue, conn: Any) -> None:
    (msg_id,) = fill(q, "jobs", [5])
    q.claim(queue="jobs")
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 s'")
    q.pause("jobs")
    assert q.claim(queue="jobs") == []
    (expired,) = q.peek(queue="jobs", state="ready")  # returned to ready, not handed out
    assert expired.msg_id == msg_id and expired.read_ct == 1


def test_stats_and_queues_show_pause(q: Queue, cli: Any) -> None:
    fill(q, "jobs", [9, 3])
    fill(q, "other", [5])
    assert cli("pause", "jobs", "--below-priority", "5").exit_code == 0
    result = cli("stats", "--json")
    assert result.exit_code == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    paused = {(r["queue"], r["priority"]): r["paused"] for r in rows}
    assert paused == {("jobs", 9): False, ("jobs", 3): True, ("other", 5): False}
    plain = cli("stats", "-q", "jobs").stdout.splitlines()
    assert [line.split("\t")[-1] for line in plain] == ["no", "yes"]
    listed = [json.loads(line) for line in cli("queues", "--json").stdout.splitlines()]
    jobs = next(r for r in listed if r["queue"] == "jobs")
    assert (jobs["paused"], jobs["paused_below_priority"]) == (False, 5)
    assert cli("pause", "other").exit_code == 0
    listed = [json.loads(line) for line in cli("queues", "--json").stdout.splitlines()]
    assert next(r for r in listed if r["queue"] == "other")["paused"] is True
    rows = [json.loads(line) for line in cli("stats", "-q", "other", "--json").stdout.splitlines()]
    assert rows[0]["paused"] is True


def test_cli_pause_claim_resume(cli: Any, q: Queue) -> None:
    fill(q, "jobs", [5])
    paused = cli("pause", "jobs", "--json")
    assert paused.exit_code == 0, paused.stderr
    assert json.loads(paused.stdout)["paused"] is True
    empty = cli("claim", "-q", "jobs", "--fail-if-empty")
    assert empty.exit_code == 3 and empty.stdout == ""
    resumed = cli("resume", "jobs", "--json")
    assert resumed.exit_code == 0, resumed.stderr
    assert json.loads(resumed.stdout)["paused"] is False
    claimed = cli("claim", "-q", "jobs", "--json")
    assert claimed.exit_code == 0 and '"priority":5' in claimed.stdout


def test_resume_of_a_queue_that_was_not_paused_says_so(cli: Any) -> None:
    result = cli("resume", "never")
    assert result.exit_code == 0
    assert "was not paused" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("pause", "jobs", "--below-priority", "0"),
        ("pause", "jobs", "--below-priority", "11"),
        ("pause", "jobs", "--below-priority", "1"),
        ("pause", "jobs", "--below-priority", "x"),
        ("pause", "bad;name"),
        ("resume", ""),
        ("pause",),
    ],
)
def test_pause_bad_input_exits_2_and_writes_nothing(cli: Any, conn: Any, args: Any) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stdout == "" or result.stdout.startswith("Usage")
    assert conn.execute("SELECT count(*) FROM pgq.queues").fetchone() == (0,)


def test_pause_unreachable_database_exits_69(cli: Any) -> None:
    result = cli("pause", "jobs", env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 69
    assert result.stderr.startswith("pgq: error: ")
