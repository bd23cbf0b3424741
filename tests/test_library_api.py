"""The library API (`pgq_cli.core.queue.Queue`) on its own: no CLI, no printing, no Typer/rich,
frozen dataclasses, validation before SQL, and the error family at its edge.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from typing import Any

import psycopg
import pytest

from pgq_cli.core import queue as core
from pgq_cli.core.errors import BadPayload, InvalidInput, NotFound, SchemaMissing
from pgq_cli.core.queue import Message, Queue


@pytest.mark.parametrize(
    "module",
    [
        "pgq_cli.core.queue",
        "pgq_cli.core.queries",
        "pgq_cli.core.errors",
        "pgq_cli.core.migrate",
        "pgq_cli.core.connect",
    ],
)
def test_core_modules_do_not_import_typer_or_rich(module: str) -> None:
    code = (
        f"import {module}, sys; "
        "leaked = sorted(m for m in sys.modules if m.split('.')[0] in ('typer', 'rich', 'click'));"
        "assert not leaked, leaked"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_check_in_the_brief_passes_verbatim() -> None:
    code = (
        "import pgq_cli.core.queue, sys; "
        "assert 'typer' not in sys.modules and 'rich' not in sys.modules"
    )
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_core_prints_nothing(q: Queue, capfd: pytest.CaptureFixture[str]) -> None:
    msg_id = q.send('{"a": 1}')
    q.send_many(['{"b": 2}'])
    (m,) = q.claim()
    q.peek(state="all")
    q.extend(msg_id, vt=10, lease=m.lease)
    q.requeue([msg_id])
    q.requeue_expired()
    q.stats()
    q.ack([msg_id])
    with pytest.raises(NotFound):
        q.ack([msg_id])
    out, err = capfd.readouterr()
    assert (out, err) == ("", "")


def test_message_is_frozen_and_json_has_stable_fields(q: Queue) -> None:
    q.send('{"x": [1, 2]}', priority=7, queue="api")
    (m,) = q.claim(queue="api")
    assert isinstance(m, Message)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.priority = 1  # type: ignore[misc]
    as_json = m.to_json()
    assert list(as_json) == [
        "msg_id", "queue", "priority", "state", "payload", "read_ct", "lease", "vt", "enqueued_at",
        "key",
    ]
    assert json.loads(json.dumps(as_json)) == as_json
    assert (as_json["queue"], as_json["priority"], as_json["state"]) == ("api", 7, "leased")
    assert as_json["payload"] == {"x": [1, 2]}
    assert as_json["lease"] == str(m.lease)


def test_send_many_keeps_input_order_and_is_all_or_nothing(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    ids = q.send_many(['{"n": 1}', '{"n": 2}', '{"n": 3}'], priority=4)
    assert ids == sorted(ids) and len(set(ids)) == 3
    assert [m.payload["n"] for m in q.claim(qty=3)] == [1, 2, 3]
    with pytest.raises(BadPayload, match="line 2"):
        q.send_many(['{"ok": 1}', "{broken", '{"ok": 3}'])
    assert q.send_many([]) == []
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row == (3,)


@pytest.mark.parametrize(
    ("call", "error"),
    [
        (lambda q: q.send("{}", priority=0), InvalidInput),
        (lambda q: q.send("{}", priority=11), InvalidInput),
        (lambda q: q.send("{}", priority=True), InvalidInput),
        (lambda q: q.send("{}", priority=5.0), InvalidInput),
        (lambda q: q.send("{}", queue="no spaces"), InvalidInput),
        (lambda q: q.send("{}", delay=-1), InvalidInput),
        (lambda q: q.send("{}", delay=float("nan")), InvalidInput),
        (lambda q: q.send("not json"), BadPayload),
        (lambda q: q.send('{"a": NaN}'), BadPayload),
        (lambda q: q.send('"\\u0000"'), BadPayload),
        (lambda q: q.send_many(["{}"], priority=11), InvalidInput),
        (lambda q: q.claim(qty=0), InvalidInput),
        (lambda q: q.claim(qty=core.MAX_QTY + 1), InvalidInput),
        (lambda q: q.claim(vt=0), InvalidInput),
        (lambda q: q.claim(min_priority=8, max_priority=3), InvalidInput),
        (lambda q: q.peek(state="nope"), InvalidInput),
        (lambda q: q.peek(limit=0), InvalidInput),
        (lambda q: q.ack([]), InvalidInput),
        (lambda q: q.ack([-1]), InvalidInput),
        (lambda q: q.ack([2**63]), InvalidInput),
        (lambda q: q.ack([1], lease="nope"), InvalidInput),
        (lambda q: q.extend(1, vt=-1), InvalidInput),
        (lambda q: q.stats(queue="x y"), InvalidInput),
    ],
)
def test_validation_raises_before_any_sql(
    q: Queue, conn: psycopg.Connection[Any], call: Any, error: type[Exception]
) -> None:
    q.send('{"seed": true}')
    before = conn.execute("SELECT msg_id, state, vt, read_ct, lease FROM pgq.messages").fetchall()
    with pytest.raises(error):
        call(q)
    after = conn.execute("SELECT msg_id, state, vt, read_ct, lease FROM pgq.messages").fetchall()
    assert after == before


def test_invalid_schema_name_is_refused_before_sql(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(InvalidInput):
        Queue(conn, 'pgq"; DROP SCHEMA pgq CASCADE; --')


def test_missing_schema_raises_schema_missing(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        q = Queue(conn)
        for call in (
            lambda: q.send("{}"),
            lambda: q.send_many(["{}"]),
            lambda: q.claim(),
            lambda: q.peek(),
            lambda: q.stats(),
            lambda: q.ack([1]),
        ):
            with pytest.raises(SchemaMissing):
                call()
        # The connection is still usable afterwards (no aborted transaction left behind).
        assert conn.execute("SELECT 1").fetchone() == (1,)


def test_claim_returns_dataclasses_with_server_times(q: Queue, conn: psycopg.Connection[Any]
                                                    ) -> None:
    q.send("{}")
    (m,) = q.claim(vt=120)
    row = conn.execute("SELECT now()").fetchone()
    assert row is not None
    assert m.enqueued_at <= row[0] < m.vt
    assert 100 < (m.vt - row[0]).total_seconds() <= 120


def test_stats_total_and_rows(q: Queue) -> None:
    q.send("{}", priority=10)
    q.send("{}", priority=1, delay=300)
    q.claim()
    result = q.stats()
    assert result.total == 2
    assert [(r.priority, r.ready, r.leased, r.delayed) for r in result.rows] == [
        (10, 0, 1, 0), (1, 0, 0, 1)
    ]
    assert q.stats(queue="elsewhere").rows == ()
