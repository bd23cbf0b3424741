"""`pgq queues` (settings and depth per queue) and priority bands on claim."""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest

from pgq_cli.core.queue import Queue


def test_queues_lists_settings_and_depth(q: Queue, conn: Any, cli: Any) -> None:
    q.send_many(["1", "2", "3"], queue="alpha")
    q.send("4", queue="alpha", delay=60)
    (held,) = q.claim(queue="alpha")
    q.send("5", queue="beta")
    q.configure("gamma", max_deliveries=4)  # settings, no messages
    q.pause("beta", below_priority=3)
    q.configure("delta", max_deliveries=1)
    q.send("6", queue="delta")
    q.requeue([q.claim(queue="delta")[0].msg_id])  # goes dead
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 s' WHERE msg_id = %s",
                 (held.msg_id,))

    result = cli("queues", "--json")
    assert result.exit_code == 0, result.stderr
    rows = {r["queue"]: r for r in map(json.loads, result.stdout.splitlines())}
    assert list(rows) == ["alpha", "beta", "delta", "gamma"]
    assert rows["alpha"] == {
        "queue": "alpha", "max_deliveries": None, "paused": False,
        "paused_below_priority": None, "ready": 2, "leased": 0, "expired": 1, "delayed": 1,
        "dead": 0,
    }
    assert (rows["beta"]["ready"], rows["beta"]["paused_below_priority"]) == (1, 3)
    assert (rows["gamma"]["max_deliveries"], rows["gamma"]["ready"]) == (4, 0)
    assert (rows["delta"]["dead"], rows["delta"]["ready"]) == (1, 0)

    plain = cli("queues")
    assert plain.exit_code == 0
    assert plain.stdout.splitlines()[0].split("\t") == [
        "alpha", "", "no", "", "2", "0", "1", "1", "0"
    ]
    table = cli("queues", "--format", "table")
    assert table.stdout.splitlines()[0].split()[:3] == ["queue", "max_deliveries", "paused"]


def test_queues_on_an_empty_database(cli: Any) -> None:
    result = cli("queues", "--json")
    assert (result.exit_code, result.stdout) == (0, "")


def test_queues_without_schema_exits_78(empty_db_dsn: str) -> None:
    from conftest import Cli

    result = Cli(empty_db_dsn)("queues")
    assert result.exit_code == 78
    assert "pgq migrate" in result.stderr


# ----------------------------------------------------------------------------- bands


def test_claim_priority_band(q: Queue, cli: Any) -> None:
    for p in (10, 8, 6, 5, 3, 1):
        q.send(json.dumps(p), queue="jobs", priority=p)
    middle = cli("claim", "-q", "jobs", "-n", "10", "--min-priority", "4",
                 "--max-priority", "8", "--json")
    assert middle.exit_code == 0, middle.stderr
    assert [json.loads(line)["priority"] for line in middle.stdout.splitlines()] == [8, 6, 5]
    low = q.claim(queue="jobs", qty=10, max_priority=3)
    assert [m.priority for m in low] == [3, 1]
    assert [m.priority for m in q.claim(queue="jobs", qty=10)] == [10]


@pytest.mark.parametrize(
    "args",
    [("--min-priority", "8", "--max-priority", "4"), ("--min-priority", "0"),
     ("--max-priority", "11")],
)
def test_claim_bad_band_exits_2(cli: Any, q: Queue, args: Any) -> None:
    q.send("1", queue="jobs")
    result = cli("claim", "-q", "jobs", *args)
    assert result.exit_code == 2
    assert result.stderr.startswith("pgq: error: ")
    assert len(q.peek(queue="jobs")) == 1


def test_band_consumers_race_without_overlap(db_dsn: str, q: Queue) -> None:
    """A high-band and a low-band consumer, two connections each, drain one queue
    concurrently: each gets only its band and no message is claimed twice."""
    ids = q.send_many([str(i) for i in range(200)], queue="jobs", priority=9)
    ids += q.send_many([str(i) for i in range(200)], queue="jobs", priority=2)
    claimed: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def consumer(band: str, low: int, high: int) -> None:
        with psycopg.connect(db_dsn, autocommit=True) as c:
            mine = Queue(c)
            while got := mine.claim(queue="jobs", qty=7, min_priority=low, max_priority=high):
                with lock:
                    claimed.extend((band, m.msg_id, m.priority) for m in got)

    threads = [threading.Thread(target=consumer, args=("high", 6, 10)) for _ in range(2)]
    threads += [threading.Thread(target=consumer, args=("low", 1, 5)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(i for _, i, _ in claimed) == sorted(ids)  # all, each once
    assert all((p >= 6) == (band == "high") for band, _, p in claimed)
