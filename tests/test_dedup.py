"""Idempotent send: `send --dedup-key` / `Queue.send(dedup_key=…)` (sql/0005).

A repeat of a key within the queue's dedup window sends nothing and returns the first
message's id, also after that message was acked; racing senders of one key produce one
message; `queue config --dedup-window` sets the window and purge forgets expired keys.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import assert_failed

from pgq_cli.core.checks import MAX_DEDUP_KEY_BYTES
from pgq_cli.core.queue import Queue


def _messages(conn: psycopg.Connection[Any], queue: str = "default") -> list[int]:
    rows = conn.execute(
        "SELECT msg_id FROM pgq.messages WHERE queue = %s ORDER BY msg_id", (queue,)
    ).fetchall()
    return [int(r[0]) for r in rows]


def _age_keys(conn: psycopg.Connection[Any], seconds: float) -> None:
    conn.execute(
        "UPDATE pgq.dedup_keys SET created_at = created_at - make_interval(secs => %s)",
        (seconds,),
    )


def test_a_repeated_key_sends_nothing_and_returns_the_first_id(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    first = q.send_deduplicated('{"n": 1}', dedup_key="order-17")
    again = q.send_deduplicated('{"n": 2}', dedup_key="order-17")
    assert first.created and not again.created
    assert again.msg_id == first.msg_id
    assert q.send('{"n": 3}', dedup_key="order-17") == first.msg_id
    assert _messages(conn) == [first.msg_id]
    # The first payload is the one kept.
    assert [m.payload for m in q.claim(qty=5)] == [{"n": 1}]


def test_keys_are_per_queue_and_a_send_without_a_key_is_never_deduplicated(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    a = q.send("{}", dedup_key="k", queue="a")
    b = q.send("{}", dedup_key="k", queue="b")
    assert a != b
    plain = [q.send("{}", queue="a") for _ in range(2)]
    assert len(set(plain)) == 2
    assert _messages(conn, "a") == [a, *plain]
    assert conn.execute("SELECT count(*) FROM pgq.dedup_keys").fetchone() == (2,)


def test_the_key_outlives_the_acked_message(q: Queue, conn: psycopg.Connection[Any]) -> None:
    first = q.send("{}", dedup_key="once")
    (claimed,) = q.claim()
    q.ack([claimed.msg_id], lease=claimed.lease)
    assert _messages(conn) == []
    retried = q.send_deduplicated("{}", dedup_key="once")
    assert (retried.msg_id, retried.created) == (first, False)
    assert _messages(conn) == []


def test_after_the_window_the_key_sends_again(q: Queue, conn: psycopg.Connection[Any]) -> None:
    window = q.set_dedup_window("default", 60)
    assert (window.seconds, window.is_default) == (60.0, False)
    first = q.send("{}", dedup_key="k")
    _age_keys(conn, 59)
    assert q.send("{}", dedup_key="k") == first
    _age_keys(conn, 2)
    later = q.send_deduplicated("{}", dedup_key="k")
    assert later.created and later.msg_id > first
    assert _messages(conn) == [first, later.msg_id]
    # The record now names the new message, with a fresh age.
    assert q.send("{}", dedup_key="k") == later.msg_id


def test_the_default_window_is_a_day(q: Queue, conn: psycopg.Connection[Any]) -> None:
    assert q.dedup_window("default").to_json() == {
        "queue": "default", "dedup_window_s": 86400.0, "default": True,
    }
    first = q.send("{}", dedup_key="k")
    _age_keys(conn, 86400 - 60)
    assert q.send("{}", dedup_key="k") == first
    _age_keys(conn, 120)
    assert q.send("{}", dedup_key="k") != first


def test_racing_senders_of_one_key_produce_one_message(
    db_dsn: str, conn: psycopg.Connection[Any]
) -> None:
    senders = 8
    rounds = 25
    barrier = threading.Barrier(senders)
    results: list[list[tuple[int, bool]]] = [[] for _ in range(senders)]
    errors: list[BaseException] = []

    def sender(index: int) -> None:
        try:
            with psycopg.connect(db_dsn, autocommit=True) as own:
                queue = Queue(own)
                for round_number in range(rounds):
                    barrier.wait(timeout=30)
                    sent = queue.send_deduplicated(
                        json.dumps({"by": index}), dedup_key=f"race-{round_number}"
                    )
                    results[index].append((sent.msg_id, sent.created))
        except BaseException as exc:  # reported below, not lost in the thread
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(senders)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    stored = _messages(conn)
    assert len(stored) == rounds
    for round_number in range(rounds):
        answers = {results[i][round_number] for i in range(senders)}
        ids = {msg_id for msg_id, _ in answers}
        assert len(ids) == 1, answers  # every sender got the same id
        assert sum(created for _, created in
                   (results[i][round_number] for i in range(senders))) == 1
        assert ids <= set(stored)


def test_cli_send_with_dedup_key_prints_the_first_id_and_says_nothing_was_sent(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    first = cli("send", "-q", "jobs", "--dedup-key", "invoice-9", '{"a": 1}')
    assert first.exit_code == 0, first.stderr
    again = cli("send", "-q", "jobs", "--dedup-key", "invoice-9", '{"a": 1}')
    assert again.exit_code == 0, again.stderr
    assert again.stdout == first.stdout
    assert "already sent message" in again.stderr and "nothing sent" in again.stderr
    assert _messages(conn, "jobs") == [int(first.stdout)]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--dedup-key", "", "{}"), "--dedup-key must be a non-empty string"),
        (("--dedup-key", "x" * (MAX_DEDUP_KEY_BYTES + 1), "{}"), "limit"),
        (("--dedup-key", "k", "--file", "-"), "not --file"),
    ],
)
def test_cli_refuses_a_bad_dedup_key_before_connecting(
    cli: Cli, args: tuple[str, ...], says: str
) -> None:
    result = cli("send", *args, env={"PGQ_DSN": "postgresql://postgres@127.0.0.1:1/x"})
    assert says in assert_failed(result, 2)


def test_queue_config_sets_and_shows_the_dedup_window(cli: Cli) -> None:
    shown = cli("queue", "config", "jobs", "--show-dedup-window", "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout) == {"queue": "jobs", "dedup_window_s": 86400.0,
                                        "default": True}
    set_ = cli("queue", "config", "jobs", "--dedup-window", "2h", "--json")
    assert set_.exit_code == 0, set_.stderr
    assert json.loads(set_.stdout)["dedup_window_s"] == 7200.0
    again = cli("queue", "config", "jobs", "--show-dedup-window", "--json")
    assert json.loads(again.stdout) == {"queue": "jobs", "dedup_window_s": 7200.0,
                                        "default": False}
    assert "not a duration" in assert_failed(
        cli("queue", "config", "jobs", "--dedup-window", "soon"), 2
    )
    assert "--dedup-window must be more than 0" in assert_failed(
        cli("queue", "config", "jobs", "--dedup-window", "0"), 2
    )


def test_purge_forgets_only_the_queues_expired_keys(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    q.set_dedup_window("jobs", 3600)
    q.send("{}", queue="jobs", dedup_key="old")
    q.send("{}", queue="other", dedup_key="old")
    _age_keys(conn, 7200)  # past jobs' 1 h window, within other's default day
    q.send("{}", queue="jobs", dedup_key="new")

    dry = q.purge("jobs", states=["dead"], dry_run=True)
    assert dry.expired_dedup_keys == 1
    assert conn.execute("SELECT count(*) FROM pgq.dedup_keys").fetchone() == (3,)

    result = q.purge("jobs", states=["dead"])
    assert result.to_json()["expired_dedup_keys"] == 1
    left = conn.execute("SELECT queue, dedup_key FROM pgq.dedup_keys ORDER BY 1, 2").fetchall()
    assert left == [("jobs", "new"), ("other", "old")]


def test_a_deduplicated_send_keeps_its_fairness_key(q: Queue) -> None:
    first = q.send('{"n": 1}', dedup_key="order-7", key="tenant-a")
    assert q.send('{"n": 2}', dedup_key="order-7", key="tenant-b") == first
    (message,) = q.peek(limit=10)
    assert (message.msg_id, message.key) == (first, "tenant-a")


def test_cli_send_with_dedup_key_and_key(cli: Cli) -> None:
    sent = cli("send", "--dedup-key", "d1", "--key", "tenant-a", "{}")
    assert sent.exit_code == 0, sent.stderr
    peeked = json.loads(cli("peek", "--json").stdout)
    assert (peeked["msg_id"], peeked["key"]) == (int(sent.stdout), "tenant-a")


def test_cli_envelope_lines_with_a_dedup_key_send_once_in_file_order(
    cli: Cli, tmp_path: Any, conn: psycopg.Connection[Any]
) -> None:
    path = tmp_path / "orders.ndjson"
    path.write_text(
        '{"payload": {"n": 1}}\n'
        '{"payload": {"n": 2}, "dedup_key": "order-2"}\n'
        '{"payload": {"n": 3}, "priority": 8}\n'
        '{"payload": {"n": 2}, "dedup_key": "order-2"}\n'
        '{"payload": {"n": 4}, "dedup_key": "order-4", "key": "acme", "priority": 9}\n'
    )
    first = cli("send", "-q", "jobs", "--file", str(path), "--envelope")
    assert first.exit_code == 0, first.stderr
    ids = [int(line) for line in first.stdout.splitlines()]
    assert len(ids) == 5
    assert ids[3] == ids[1]  # the same key twice in one file: one message
    assert ids[0] < ids[1] < ids[2] < ids[4]  # file order, across the COPY runs
    assert _messages(conn, "jobs") == sorted({*ids})
    row = conn.execute(
        "SELECT payload, priority, key FROM pgq.messages WHERE msg_id = %s", (ids[4],)
    ).fetchone()
    assert row == ({"n": 4}, 9, "acme")

    # The producer retries the whole file: lines with a dedup key send nothing and give
    # the first ids; lines without are sent again.
    again = cli("send", "-q", "jobs", "--file", str(path), "--envelope")
    assert again.exit_code == 0, again.stderr
    retried = [int(line) for line in again.stdout.splitlines()]
    assert (retried[1], retried[3], retried[4]) == (ids[1], ids[3], ids[4])
    assert retried[0] not in ids and retried[2] not in ids
    assert len(_messages(conn, "jobs")) == 4 + 2
    assert conn.execute("SELECT count(*) FROM pgq.dedup_keys").fetchone() == (2,)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ('{"payload": 1, "dedup_key": ""}', "line 2: dedup_key must be a non-empty string"),
        ('{"payload": 1, "dedup_key": 7}', "line 2: dedup_key must be a non-empty string"),
    ],
)
def test_a_bad_dedup_key_in_an_envelope_line_writes_nothing(
    cli: Cli, tmp_path: Any, conn: psycopg.Connection[Any], line: str, says: str
) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text('{"payload": {"ok": true}, "dedup_key": "fine"}\n' + line + "\n")
    result = cli("send", "--file", str(path), "--envelope")
    assert says in assert_failed(result, 2)
    assert _messages(conn) == []
    assert conn.execute("SELECT count(*) FROM pgq.dedup_keys").fetchone() == (0,)
