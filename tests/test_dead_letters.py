"""Poison messages and dead letters: max deliveries, the expiry and requeue paths, redrive.

Leases are expired by moving vt into the past with SQL (deterministic, no sleeping); the
racing test uses real short leases.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest

from pgq_cli.core.durations import parse_duration
from pgq_cli.core.errors import InvalidInput
from pgq_cli.core.queue import Queue


def expire(conn: psycopg.Connection[Any], *ids: int) -> None:
    """Make these leases run out now (as if the consumer died)."""
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 second' WHERE msg_id = ANY(%s)",
        (list(ids),),
    )


def state_of(conn: psycopg.Connection[Any], msg_id: int) -> tuple[str, int]:
    row = conn.execute(
        "SELECT state, read_ct FROM pgq.messages WHERE msg_id = %s", (msg_id,)
    ).fetchone()
    assert row is not None
    return str(row[0]), int(row[1])


def deliver_and_expire(q: Queue, conn: psycopg.Connection[Any], queue: str) -> list[int]:
    """Claim once and let the lease run out; return the read_cts handed out."""
    got = q.claim(queue=queue)
    expire(conn, *(m.msg_id for m in got))
    return [m.read_ct for m in got]


def test_poison_goes_dead_after_max_deliveries_on_expiry(q: Queue, conn: Any) -> None:
    q.configure("jobs", max_deliveries=3)
    msg_id = q.send('{"poison": true}', queue="jobs")
    handed_out = [ct for _ in range(5) for ct in deliver_and_expire(q, conn, "jobs")]
    assert handed_out == [1, 2, 3]  # never a fourth time
    assert q.claim(queue="jobs") == []
    assert state_of(conn, msg_id) == ("dead", 3)
    (dead,) = q.peek(queue="jobs", state="dead")
    assert dead.msg_id == msg_id and dead.lease is None
    assert q.peek(queue="jobs", state="ready") == []
    (row,) = q.stats(queue="jobs").rows
    assert (row.dead, row.ready, row.expired) == (1, 0, 0)


def test_poison_goes_dead_on_requeue_after_last_delivery(q: Queue, conn: Any) -> None:
    q.configure("jobs", max_deliveries=2)
    msg_id = q.send("1", queue="jobs")
    first = q.claim(queue="jobs")[0]
    assert q.requeue_states([msg_id], lease=first.lease) == {msg_id: "ready"}
    second = q.claim(queue="jobs")[0]
    assert second.read_ct == 2
    assert q.requeue_states([msg_id], lease=second.lease, delay=60) == {msg_id: "dead"}
    assert state_of(conn, msg_id) == ("dead", 2)
    assert q.claim(queue="jobs") == []


def test_cron_requeue_expired_also_kills_poison(q: Queue, conn: Any) -> None:
    q.configure("jobs", max_deliveries=1)
    poison = q.send("1", queue="jobs")
    other = q.send("2", queue="other")  # no limit on this queue
    for queue in ("jobs", "other"):
        expire(conn, *(m.msg_id for m in q.claim(queue=queue)))
    assert q.requeue_expired() == 2
    assert state_of(conn, poison) == ("dead", 1)
    assert state_of(conn, other) == ("ready", 1)


def test_without_a_limit_messages_come_back_forever(q: Queue, conn: Any) -> None:
    q.send("1", queue="jobs")
    handed_out = [ct for _ in range(6) for ct in deliver_and_expire(q, conn, "jobs")]
    assert handed_out == [1, 2, 3, 4, 5, 6]


def test_unlimited_removes_the_limit(q: Queue, conn: Any) -> None:
    q.configure("jobs", max_deliveries=1)
    q.configure("jobs", max_deliveries=None)
    q.send("1", queue="jobs")
    assert [ct for _ in range(3) for ct in deliver_and_expire(q, conn, "jobs")] == [1, 2, 3]


def test_lowering_the_limit_kills_waiting_messages_that_had_their_deliveries(
    q: Queue, conn: Any
) -> None:
    worn = q.send("1", queue="jobs")
    fresh = q.send("2", queue="jobs")
    for _ in range(2):  # two deliveries of `worn` while the queue had no limit
        (got,) = q.claim(queue="jobs", min_priority=5)
        assert got.msg_id == worn
        q.requeue([worn])
    assert state_of(conn, worn) == ("ready", 2)
    result = q.configure("jobs", max_deliveries=2)
    assert result.moved_to_dead == 1
    assert state_of(conn, worn)[0] == "dead"
    assert [m.msg_id for m in q.claim(queue="jobs", qty=5)] == [fresh]


def test_racing_consumers_never_exceed_max_deliveries(db_dsn: str, q: Queue) -> None:
    """Four connections claim with short leases and never ack: every message is handed
    out exactly max_deliveries times in total, then it is dead."""
    max_deliveries, count = 3, 30
    q.configure("race", max_deliveries=max_deliveries)
    ids = q.send_many([str(i) for i in range(count)], queue="race")
    deliveries: list[tuple[int, int]] = []
    lock = threading.Lock()
    deadline = time.monotonic() + 60

    def consumer() -> None:
        with psycopg.connect(db_dsn, autocommit=True) as c:
            mine = Queue(c)
            while time.monotonic() < deadline:
                got = mine.claim(queue="race", qty=4, vt=0.05)
                with lock:
                    deliveries.extend((m.msg_id, m.read_ct) for m in got)
                    if len(deliveries) >= count * max_deliveries:
                        return
                if not got:
                    time.sleep(0.02)

    threads = [threading.Thread(target=consumer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(0.1)
    q.requeue_expired(queue="race")
    per_message: dict[int, list[int]] = {}
    for msg_id, read_ct in deliveries:
        per_message.setdefault(msg_id, []).append(read_ct)
    assert sorted(per_message) == ids
    assert all(sorted(cts) == [1, 2, 3] for cts in per_message.values()), per_message
    dead = q.peek(queue="race", state="dead", limit=100)
    assert sorted(m.msg_id for m in dead) == ids


# ----------------------------------------------------------------------------- redrive


@pytest.fixture
def dead_letters(q: Queue, conn: Any) -> dict[str, list[int]]:
    """Two dead letters in 'a' (one died 3 hours ago), one in 'b', and live work."""
    out: dict[str, list[int]] = {"a": [], "b": []}
    for queue, n in (("a", 2), ("b", 1)):
        q.configure(queue, max_deliveries=1)
        for i in range(n):
            msg_id = q.send(str(i), queue=queue)
            (m,) = q.claim(queue=queue)
            q.requeue([m.msg_id])
            out[queue].append(msg_id)
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '3 hours' WHERE msg_id = %s",
        (out["a"][0],),
    )
    q.send('"live"', queue="a")
    return out


def test_peek_state_dead_cli(cli: Any, dead_letters: dict[str, list[int]]) -> None:
    result = cli("peek", "-q", "a", "--state", "dead", "--json")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert all(
        line.startswith(f'{{"msg_id":{i},')
        for i, line in zip(dead_letters["a"], lines, strict=True)
    )
    assert all('"state":"dead"' in line for line in lines) and len(lines) == 2


def test_redrive_refuses_without_a_filter(cli: Any, q: Queue, dead_letters: Any) -> None:
    result = cli("requeue", "--dead")
    assert result.exit_code == 2
    assert result.stdout == ""
    assert "refusing" in result.stderr and "--all" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert len(q.peek(queue="a", state="dead")) == 2  # nothing changed


@pytest.mark.parametrize(
    "args",
    [
        ("requeue", "--dead", "--older-than", "soon", "--all"),
        ("requeue", "--dead", "--limit", "0", "--all"),
        ("requeue", "--older-than", "1h", "1"),
        ("requeue", "--dead", "--expired", "--all"),
        ("requeue", "--dead", "-q", "bad name;"),
    ],
)
def test_redrive_bad_input_exits_2(cli: Any, q: Queue, dead_letters: Any, args: Any) -> None:
    result = cli(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("pgq: error: ")
    assert len(q.peek(queue="a", state="dead")) == 2


def test_redrive_one_queue(cli: Any, q: Queue, conn: Any, dead_letters: Any) -> None:
    result = cli("requeue", "--dead", "-q", "b", "--json")
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f'{{"msg_id":{dead_letters["b"][0]}}}\n'
    assert state_of(conn, dead_letters["b"][0]) == ("ready", 0)  # fresh attempts
    assert len(q.peek(queue="a", state="dead")) == 2
    (again,) = q.claim(queue="b")
    assert again.read_ct == 1


def test_redrive_json_prints_a_result_when_nothing_was_redriven(cli: Any, q: Queue) -> None:
    q.send("{}", queue="a")  # ready, not dead
    result = cli("requeue", "--dead", "--all", "--json")
    assert (result.exit_code, result.stdout) == (0, '{"redriven":0}\n')
    assert "redrove 0" in result.stderr
    plain = cli("requeue", "--dead", "--all")
    assert (plain.exit_code, plain.stdout) == (0, "")


def test_redrive_older_than(cli: Any, q: Queue, conn: Any, dead_letters: Any) -> None:
    result = cli("requeue", "--dead", "--older-than", "2h")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(dead_letters["a"][0])]
    assert state_of(conn, dead_letters["a"][1])[0] == "dead"


def test_redrive_older_than_a_year(cli: Any, conn: Any, dead_letters: Any) -> None:
    """Ages beyond a year are ordinary for retention (unlike a lease or a delay)."""
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '500 days' WHERE msg_id = %s",
        (dead_letters["a"][0],),
    )
    result = cli("requeue", "--dead", "--older-than", "400d")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.split() == [str(dead_letters["a"][0])]
    assert state_of(conn, dead_letters["a"][1])[0] == "dead"


def test_redrive_limit_takes_oldest_deaths_first(cli: Any, conn: Any, dead_letters: Any) -> None:
    result = cli("requeue", "--dead", "--limit", "2")
    assert result.exit_code == 0, result.stderr
    redriven = [int(x) for x in result.stdout.split()]
    assert len(redriven) == 2 and dead_letters["a"][0] in redriven


def test_redrive_all(cli: Any, q: Queue, dead_letters: Any) -> None:
    result = cli("requeue", "--dead", "--all")
    assert result.exit_code == 0, result.stderr
    assert sorted(int(x) for x in result.stdout.split()) == sorted(
        dead_letters["a"] + dead_letters["b"]
    )
    assert "redrove 3" in result.stderr
    assert q.peek(queue="a", state="dead") == [] and q.peek(queue="b", state="dead") == []


def test_cli_requeue_says_when_a_message_went_dead(cli: Any, q: Queue) -> None:
    assert cli("queue", "config", "jobs", "--max-deliveries", "1").exit_code == 0
    msg_id = q.send("1", queue="jobs")
    q.claim(queue="jobs")
    result = cli("requeue", str(msg_id))
    assert result.exit_code == 0, result.stderr
    assert result.stdout == f"{msg_id}\n"
    assert "dead letters" in result.stderr


# ----------------------------------------------------------------------------- config


def test_queue_config_cli_shows_sets_and_removes(cli: Any) -> None:
    shown = cli("queue", "config", "jobs", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert '"max_deliveries":null' in shown.stdout and '"paused":false' in shown.stdout
    set_ = cli("queue", "config", "jobs", "--max-deliveries", "5", "--json")
    assert set_.exit_code == 0, set_.stderr
    assert '"max_deliveries":5' in set_.stdout and '"moved_to_dead":0' in set_.stdout
    assert '"max_deliveries":5' in cli("queue", "config", "jobs", "--json").stdout
    assert cli("queue", "config", "jobs", "--unlimited").exit_code == 0
    assert '"max_deliveries":null' in cli("queue", "config", "jobs", "--json").stdout


@pytest.mark.parametrize(
    "args",
    [
        ("--max-deliveries", "0"),
        ("--max-deliveries", "-1"),
        ("--max-deliveries", "x"),
        ("--max-deliveries", "3", "--unlimited"),
    ],
)
def test_queue_config_bad_input(cli: Any, conn: Any, args: Any) -> None:
    result = cli("queue", "config", "jobs", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.startswith("pgq: error: ")
    assert conn.execute("SELECT count(*) FROM pgq.queues").fetchone() == (0,)


def test_queue_config_bad_queue_name(cli: Any) -> None:
    result = cli("queue", "config", "no spaces", "--max-deliveries", "1")
    assert result.exit_code == 2 and "invalid queue name" in result.stderr


@pytest.mark.parametrize(
    ("column", "value", "ok"),
    [("max_deliveries", 1, True), ("max_deliveries", 0, False),
     ("paused_below_priority", 1, True), ("paused_below_priority", 10, True),
     ("paused_below_priority", 0, False), ("paused_below_priority", 11, False)],
)
def test_database_checks_the_settings_bounds(conn: Any, column: str, value: int, ok: bool
                                             ) -> None:
    statement = f"INSERT INTO pgq.queues (queue, {column}) VALUES ('q', %s)"
    if ok:
        conn.execute(statement, (value,))
    else:
        with pytest.raises(psycopg.errors.CheckViolation):
            conn.execute(statement, (value,))


# ----------------------------------------------------------------------------- durations


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30), ("15m", 900), ("2h", 7200), ("7d", 604800), ("1h30m", 5400), ("90", 90),
     ("1.5h", 5400), ("2w", 1209600), (" 2H ", 7200)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "x", "-5s", "5x", "1h 30m", "h", "99999d", "1e3"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(InvalidInput):
        parse_duration(text)
