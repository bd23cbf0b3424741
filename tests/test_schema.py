"""The database's own guards and shape: CHECK constraints that agree with the code's bounds
(read from pgq_cli.core.queue, so the two cannot drift), the claim's partial indexes, storage
parameters, and no enum types.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors

from pgq_cli.core import queue as core
from pgq_cli.core.errors import InvalidInput

INSERT = "INSERT INTO pgq.messages (queue, priority, payload) VALUES (%s, %s, '{}')"


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("priority", [core.MIN_PRIORITY, core.MAX_PRIORITY])
def test_check_accepts_the_code_bounds(conn: psycopg.Connection[Any], priority: int) -> None:
    assert core.check_priority(priority) == priority
    conn.execute(INSERT, ("default", priority))
    assert _count(conn) == 1


@pytest.mark.parametrize("priority", [core.MIN_PRIORITY - 1, core.MAX_PRIORITY + 1])
def test_check_rejects_just_outside_the_code_bounds(
    conn: psycopg.Connection[Any], priority: int
) -> None:
    with pytest.raises(InvalidInput):
        core.check_priority(priority)
    with pytest.raises(pgerrors.CheckViolation) as caught:
        conn.execute(INSERT, ("default", priority))
    assert caught.value.diag.constraint_name == "messages_priority_range"
    assert _count(conn) == 0


def test_bounds_are_the_documented_ones() -> None:
    # The README's contract: 1..10, 10 most urgent, default 5.
    assert (core.MIN_PRIORITY, core.MAX_PRIORITY, core.DEFAULT_PRIORITY) == (1, 10, 5)


def test_database_default_priority_matches_the_code(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "INSERT INTO pgq.messages (payload) VALUES ('{}') RETURNING priority, queue, state"
    ).fetchone()
    assert row == (core.DEFAULT_PRIORITY, core.DEFAULT_QUEUE, "ready")


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("default", True),
        ("a", True),
        ("Jobs.emails:v2-high_1", True),
        ("9lives", True),
        ("x" * 64, True),
        ("x" * 65, False),
        ("", False),
        ("_leading", False),
        ("-leading", False),
        ("has space", False),
        ("semi;colon", False),
        ("quote'", False),
        ("ünïcode", False),
        ("new\nline", False),
    ],
)
def test_queue_name_rule_is_the_same_in_code_and_database(
    conn: psycopg.Connection[Any], name: str, valid: bool
) -> None:
    if valid:
        assert core.check_queue(name) == name
        conn.execute(INSERT, (name, 5))
        assert _count(conn) == 1
        return
    with pytest.raises(InvalidInput):
        core.check_queue(name)
    with pytest.raises(pgerrors.CheckViolation) as caught:
        conn.execute(INSERT, (name, 5))
    assert caught.value.diag.constraint_name == "messages_queue_name"


def test_state_and_lease_checks(conn: psycopg.Connection[Any]) -> None:
    with pytest.raises(pgerrors.CheckViolation):
        conn.execute("INSERT INTO pgq.messages (state, payload) VALUES ('running', '{}')")
    with pytest.raises(pgerrors.CheckViolation):
        conn.execute(
            "INSERT INTO pgq.messages (state, lease, payload)"
            " VALUES ('ready', gen_random_uuid(), '{}')"
        )
    assert _count(conn) == 0


def test_payload_size_check_matches_the_code_cap(conn: psycopg.Connection[Any]) -> None:
    overhead = len('{"b": ""}')
    fits = '{"b": "' + "x" * (core.MAX_PAYLOAD_BYTES - overhead) + '"}'
    core.check_payload(fits)
    conn.execute("INSERT INTO pgq.messages (payload) VALUES (%s::jsonb)", (fits,))
    too_big = '{"b": "' + "x" * (core.MAX_PAYLOAD_BYTES - overhead + 1) + '"}'
    with pytest.raises(pgerrors.CheckViolation):
        conn.execute("INSERT INTO pgq.messages (payload) VALUES (%s::jsonb)", (too_big,))
    assert _count(conn) == 1


def _indexdef(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'pgq' AND indexname = %s", (name,)
    ).fetchone()
    assert row is not None, f"index {name} is missing"
    return " ".join(str(row[0]).split())


def test_claim_index_is_partial_over_ready_rows_in_claim_order(
    conn: psycopg.Connection[Any],
) -> None:
    ready = _indexdef(conn, "messages_ready_idx")
    assert "(queue, priority DESC, msg_id)" in ready
    assert "WHERE (state = 'ready'::text)" in ready
    due = _indexdef(conn, "messages_due_idx")
    assert "(queue, vt)" in due
    assert "'leased'" in due and "'delayed'" in due and "'ready'" not in due


def test_claim_uses_the_ready_index_not_a_scan_of_in_flight_rows(
    conn: psycopg.Connection[Any],
) -> None:
    conn.execute(
        "INSERT INTO pgq.messages (priority, state, vt, lease, payload)"
        " SELECT 10, 'leased', now() + interval '1 hour', gen_random_uuid(), '{}'"
        " FROM generate_series(1, 5000)"
    )
    conn.execute("INSERT INTO pgq.messages (priority, payload) VALUES (5, '{}')")
    conn.execute("ANALYZE pgq.messages")
    plan = conn.execute(
        "EXPLAIN (ANALYZE, COSTS OFF, FORMAT JSON)"
        " SELECT msg_id FROM pgq.messages WHERE queue = 'default' AND state = 'ready'"
        " AND priority BETWEEN 1 AND 10 ORDER BY priority DESC, msg_id LIMIT 1"
        " FOR UPDATE SKIP LOCKED"
    ).fetchone()
    assert plan is not None
    text = str(plan[0])
    assert "messages_ready_idx" in text
    assert "Rows Removed by Filter" not in text or "'Rows Removed by Filter': 0" in text


def test_storage_parameters_for_a_churn_heavy_table(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute("SELECT reloptions FROM pg_class WHERE oid = 'pgq.messages'::regclass"
                       ).fetchone()
    assert row is not None
    options = dict(opt.split("=", 1) for opt in row[0])
    assert int(options["fillfactor"]) < 100
    assert float(options["autovacuum_vacuum_scale_factor"]) < 0.2  # below the server default


def test_no_enum_types_in_the_schema(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace"
        " WHERE n.nspname = 'pgq' AND t.typtype = 'e'"
    ).fetchone()
    assert row == (0,)
