"""Bulk send (`Queue.send_many`, `pgq send -f`): COPY in text format with ids reserved up
front. What goes in comes out unchanged, ids come back in input order whether or not they
are contiguous, and the payload size cap holds for payloads whose stored form grows.
"""

from __future__ import annotations

import itertools
import json
from typing import Any

import psycopg
import pytest
from conftest import Cli

from pgq_cli.core import checks
from pgq_cli.core.checks import MAX_PAYLOAD_BYTES
from pgq_cli.core.errors import BadPayload
from pgq_cli.core.queue import Queue

# Every character COPY's text format treats specially, in the places JSON allows it: inside
# strings (escaped) and as whitespace between tokens (tab, CR, newline: a pretty-printed
# document spans several lines).
AWKWARD = [
    r'{"path": "C:\\temp\\new", "quote": "say \"hi\"", "tab": "a\tb"}',
    '{\n  "pretty": [\n\t1,\r\n\t2\n  ]\n}',
    r'"\\N"',
    r'"\\."',
    '{"unicode": "zß水🙂", "escaped": "\\u00e9\\u6c34"}',
    '[1.50, -0, 12345678901234567890, 1e3, 2.5E-3]',
    "null",
]


def _stored(conn: psycopg.Connection[Any], ids: list[int]) -> list[tuple[Any, str, str]]:
    rows = conn.execute(
        "SELECT msg_id, payload, state, queue FROM pgq.messages WHERE msg_id = ANY(%s)"
        " ORDER BY msg_id",
        (ids,),
    ).fetchall()
    by_id = {row[0]: (row[1], row[2], row[3]) for row in rows}
    return [by_id[i] for i in ids]


def test_awkward_payloads_are_stored_exactly_in_input_order(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    ids = q.send_many(AWKWARD, queue="copy", priority=7)
    assert ids == sorted(ids) and len(set(ids)) == len(AWKWARD)
    stored = _stored(conn, ids)
    assert [payload for payload, _, _ in stored] == [json.loads(t) for t in AWKWARD]
    assert {(state, queue) for _, state, queue in stored} == {("ready", "copy")}
    # Claim order is input order (FIFO within the one priority).
    assert [m.msg_id for m in q.claim(queue="copy", qty=len(AWKWARD))] == ids


def test_ids_that_are_not_contiguous_still_come_back_in_input_order(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    # Another writer taking ids in between looks like this to the reservation: gaps.
    conn.execute("ALTER TABLE pgq.messages ALTER COLUMN msg_id SET INCREMENT BY 3")
    texts = [json.dumps({"n": i}) for i in range(50)]
    ids = q.send_many(texts, queue="gaps")
    assert ids == sorted(ids) and len(set(ids)) == 50
    assert {b - a for a, b in itertools.pairwise(ids)} == {3}
    assert [payload["n"] for payload, _, _ in _stored(conn, ids)] == list(range(50))


def test_contiguous_ids_are_the_rows_written(q: Queue, conn: psycopg.Connection[Any]) -> None:
    ids = q.send_many([json.dumps({"n": i}) for i in range(5000)], queue="block")
    assert ids == list(range(ids[0], ids[0] + 5000))
    assert [payload["n"] for payload, _, _ in _stored(conn, ids)] == list(range(5000))


def test_delayed_batch_shares_one_vt_in_the_future(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    ids = q.send_many(['{"a": 1}', '{"b": 2}'], queue="later", delay=300)
    rows = conn.execute(
        "SELECT DISTINCT state, vt - enqueued_at FROM pgq.messages WHERE msg_id = ANY(%s)",
        (ids,),
    ).fetchall()
    assert len(rows) == 1
    state, wait = rows[0]
    assert state == "delayed"
    assert wait.total_seconds() == 300
    assert q.claim(queue="later") == []


def test_a_payload_that_grows_past_the_cap_when_stored_is_refused_in_code(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    """jsonb writes `[1, 1, ...]` for `[1,1,...]`: 0.6 MiB of input is 0.9 MiB stored, and
    0.7 MiB of input is over 1 MiB stored."""
    fits = "[" + ",".join(["1"] * 300_000) + "]"
    grows_past = "[" + ",".join(["1"] * 360_000) + "]"
    assert len(grows_past) < MAX_PAYLOAD_BYTES < len(grows_past.replace(",", ", "))
    with pytest.raises(BadPayload, match="line 2 is 1080000 bytes"):
        q.send_many([fits, grows_past])
    assert conn.execute("SELECT count(*) FROM pgq.messages").fetchone() == (0,)
    (msg_id,) = q.send_many([fits])
    row = conn.execute(
        "SELECT octet_length(payload::text) FROM pgq.messages WHERE msg_id = %s", (msg_id,)
    ).fetchone()
    assert row == (len(fits.replace(",", ", ")),)


def test_exponents_are_measured_as_stored() -> None:
    """A number with an exponent takes the exact path (its stored form may be longer);
    small ones pass."""
    assert checks.check_payload("[1e3, 2.5E-3, -1e+2]") == "[1e3, 2.5E-3, -1e+2]"
    too_big = json.dumps({"p": "x" * MAX_PAYLOAD_BYTES, "n": 1e3})
    with pytest.raises(BadPayload, match="limit"):
        checks.check_payload(too_big)


def test_cli_send_file_prints_ids_in_line_order(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    lines = [json.dumps({"n": i}) for i in range(1000)]
    result = cli("send", "-q", "file", "--file", "-", input="\n".join(lines) + "\n\n")
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    ids = [int(line) for line in result.stdout.splitlines()]
    assert len(ids) == 1000
    stored = _stored(conn, ids)
    assert [payload["n"] for payload, _, _ in stored] == list(range(1000))
