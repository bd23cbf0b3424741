"""Hostile and bad input: each refused with its documented exit code, one line on stderr, no
traceback, nothing written and no relation created."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN, assert_failed
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgq_cli.core.checks import MAX_PAYLOAD_BYTES, QUEUE_NAME
from pgq_cli.core.queue import Queue

HYPOTHESIS = settings(max_examples=150, deadline=None, database=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture])


def _fingerprint(conn: psycopg.Connection[Any]) -> tuple[Any, ...]:
    """Every relation in the database, and every message with its lease state."""
    relations = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast') ORDER BY 1, 2"
    ).fetchall()
    messages = conn.execute(
        "SELECT msg_id, queue, priority, state, vt, read_ct, lease, payload"
        " FROM pgq.messages ORDER BY msg_id"
    ).fetchall()
    return tuple(relations), tuple(messages)


@pytest.fixture
def leased(q: Queue) -> Any:
    """A leased message and a ready one, so every id/lease command has a real target."""
    q.send('{"keep": 1}', priority=9)
    q.send('{"keep": 2}', priority=1)
    (message,) = q.claim(qty=1, vt=300)
    return message


@pytest.fixture
def unchanged(conn: psycopg.Connection[Any], leased: Any) -> Iterator[None]:
    before = _fingerprint(conn)
    yield
    assert _fingerprint(conn) == before, "a refused command changed the database"


HOSTILE_QUEUES = [
    "", "a'b", 'a"b', "x'; DROP TABLE pgq.messages; --", "q;q", "--", "a b",
    "é", "队列", "q\u200b", "a\nb", "abc\n", "-leading", "_leading", "a" * 65,
    "a/b", "a\\b", "%", "a)", "$1",
]


@pytest.mark.parametrize("command", ["send", "claim", "peek", "stats"])
def test_hostile_queue_names_are_refused(cli: Cli, unchanged: None, command: str) -> None:
    for name in HOSTILE_QUEUES:
        args = {"send": ["send", "-q", name, "{}"], "claim": ["claim", "-q", name],
                "peek": ["peek", "-q", name], "stats": ["stats", "-q", name]}[command]
        assert_failed(cli(*args), 2)


def test_names_that_look_like_sql_but_fit_the_pattern_are_plain_data(cli: Cli, q: Queue) -> None:
    """Queue names are bound parameters, never identifiers: `a--b` is just a name."""
    for name in ("a--b", "x.y:z", "DROP", "1-1"):
        sent = cli("send", "-q", name, '{"n": 1}')
        assert sent.exit_code == 0, sent.stderr
        (message,) = q.claim(queue=name)
        assert message.queue == name


@HYPOTHESIS
@given(name=st.text(max_size=80).filter(lambda s: not QUEUE_NAME.fullmatch(s) and "\x00" not in s))
def test_any_name_outside_the_pattern_is_refused_before_sql(
    cli: Cli, unchanged: None, name: str
) -> None:
    # The DSN points nowhere: a refusal before any SQL cannot depend on the server.
    result = cli("send", "-q", name, "{}", env={"PGQ_DSN": UNREACHABLE_DSN})
    assert_failed(result, 2)


@HYPOTHESIS
@given(name=st.one_of(st.from_regex(QUEUE_NAME, fullmatch=True), st.text(max_size=70)))
def test_code_and_database_agree_on_queue_names(conn: psycopg.Connection[Any], name: str) -> None:
    """The code's check and the CHECK constraint accept exactly the same names."""
    if "\x00" in name:
        return  # PostgreSQL text cannot hold NUL at all
    code_accepts = QUEUE_NAME.fullmatch(name) is not None
    try:
        with conn.transaction():
            conn.execute("INSERT INTO pgq.messages (queue, payload) VALUES (%s, '{}')", (name,))
            raise _Rollback
    except _Rollback:
        database_accepts = True
    except psycopg.errors.CheckViolation:
        database_accepts = False
    assert code_accepts == database_accepts, repr(name)


class _Rollback(Exception):
    pass


def test_bad_priorities_are_refused(cli: Cli, unchanged: None) -> None:
    for priority in ("0", "11", "-1", "99999999999", "x", "1.5", "", "10e0"):
        assert_failed(cli("send", "-p", priority, "{}"), 2)


def test_payloads_that_are_not_json_exit_65(cli: Cli, unchanged: None) -> None:
    for payload in ("", "{", "nope", "{'a': 1}", "[1,]", "NaN", "Infinity", '{"a": NaN}',
                    '"\\u0000"', "{}{}", "\ufeff{}"):
        assert_failed(cli("send", payload), 65)


def test_payload_over_the_cap_exits_65_in_code(cli: Cli, unchanged: None) -> None:
    big = json.dumps({"p": "x" * MAX_PAYLOAD_BYTES})
    assert_failed(cli("send", big), 65)


def test_ten_megabytes_from_stdin_exit_65_quickly(cli: Cli, unchanged: None) -> None:
    ten_mb = json.dumps({"p": "x" * 10_000_000})
    for args in (("send", "-"), ("send", "--file", "-")):
        started = time.monotonic()
        result = cli(*args, input=ten_mb)
        assert_failed(result, 65)
        assert "limit" in result.stderr
        # Generous: this guards against pathological slowness, it is not a benchmark.
        assert time.monotonic() - started < 10


def test_the_database_check_caps_payload_size_for_other_writers(
    conn: psycopg.Connection[Any], q: Queue
) -> None:
    """A raw INSERT over the cap is refused by messages_payload_size; at the cap it is not.

    `{"p": "xx..."}` is stored as text of len(x) + 9 bytes, which the code measures the same.
    """
    at_cap = "x" * (MAX_PAYLOAD_BYTES - 9)
    msg_id = q.send(json.dumps({"p": at_cap}))  # the code accepts exactly the cap...
    row = conn.execute("SELECT octet_length(payload::text) FROM pgq.messages WHERE msg_id = %s",
                       (msg_id,)).fetchone()
    assert row == (MAX_PAYLOAD_BYTES,)
    with pytest.raises(psycopg.errors.CheckViolation) as raised:
        conn.execute(
            "INSERT INTO pgq.messages (payload) VALUES (jsonb_build_object('p', %s::text))",
            (at_cap + "x",),
        )
    assert raised.value.diag.constraint_name == "messages_payload_size"
    from pgq_cli.core.errors import BadPayload
    with pytest.raises(BadPayload):
        q.send(json.dumps({"p": at_cap + "x"}))


def test_ndjson_with_one_bad_line_inserts_nothing(cli: Cli, unchanged: None) -> None:
    lines = [json.dumps({"n": i}) for i in range(100)]
    lines[49] = '{"n": 49'
    result = cli("send", "--file", "-", input="\n".join(lines) + "\n")
    assert_failed(result, 65)
    assert "line 50" in result.stderr


def test_ndjson_with_one_oversized_line_inserts_nothing(cli: Cli, unchanged: None) -> None:
    lines = ["{}"] * 10 + [json.dumps({"p": "x" * MAX_PAYLOAD_BYTES})] + ["{}"] * 10
    result = cli("send", "--file", "-", input="\n".join(lines))
    assert_failed(result, 65)
    assert "line 11" in result.stderr


@pytest.mark.parametrize("command", ["ack", "requeue", "extend"])
def test_malformed_message_ids_exit_2(cli: Cli, unchanged: None, command: str) -> None:
    extra = ["--vt", "10"] if command == "extend" else []
    for bad_id in ("abc", "0", "-1", "1.5", "9223372036854775808", "1e3", "0x10", ""):
        assert_failed(cli(command, "--", bad_id, *extra), 2)


@pytest.mark.parametrize("command", ["ack", "requeue", "extend"])
def test_unknown_message_id_exits_3(cli: Cli, unchanged: None, command: str) -> None:
    extra = ["--vt", "10"] if command == "extend" else []
    result = cli(command, "9223372036854775807", *extra)
    assert_failed(result, 3)
    assert "no such message" in result.stderr


@pytest.mark.parametrize("command", ["ack", "requeue", "extend"])
def test_malformed_lease_tokens_exit_2(cli: Cli, unchanged: None, leased: Any,
                                       command: str) -> None:
    extra = ["--vt", "10"] if command == "extend" else []
    for token in ("nope", "1234", "'; DROP TABLE x; --", "", "g" * 36):
        assert_failed(cli(command, str(leased.msg_id), "--lease", token, *extra), 2)


@pytest.mark.parametrize("command", ["ack", "requeue", "extend"])
def test_wrong_lease_token_exits_3_and_leaves_the_message_alone(
    cli: Cli, unchanged: None, leased: Any, command: str
) -> None:
    extra = ["--vt", "10"] if command == "extend" else []
    result = cli(command, str(leased.msg_id), "--lease", str(uuid.uuid4()), *extra)
    assert_failed(result, 3)
    assert "lease is not current" in result.stderr


def test_unreachable_port_exits_69(cli: Cli) -> None:
    started = time.monotonic()
    result = cli("stats", env={"PGQ_DSN": UNREACHABLE_DSN})
    assert_failed(result, 69)
    assert time.monotonic() - started < 5


def test_unroutable_host_exits_69_within_the_connect_timeout(cli: Cli) -> None:
    from pgq_cli.core.connect import DEFAULT_CONNECT_TIMEOUT_S

    started = time.monotonic()
    # 192.0.2.0/24 is TEST-NET-1: never routed, so the connect can only time out or fail.
    result = cli("stats", env={"PGQ_DSN": "postgresql://postgres@192.0.2.1:5432/postgres"})
    assert_failed(result, 69)
    assert time.monotonic() - started < DEFAULT_CONNECT_TIMEOUT_S + 2
