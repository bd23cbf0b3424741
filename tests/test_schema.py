"""The database's own guards and shape: CHECK constraints that agree with the code's bounds
(read from pgq_cli.core.checks, so the two cannot drift), the claim's partial indexes, storage
parameters, and no enum types.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from psycopg import errors as pgerrors

from pgq_cli.core import checks, queries
from pgq_cli.core.errors import InvalidInput
from pgq_cli.core.queue import Queue
from pgq_cli.core.states import EffectiveState, State

INSERT = "INSERT INTO pgq.messages (queue, priority, payload) VALUES (%s, %s, '{}')"


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("priority", [checks.MIN_PRIORITY, checks.MAX_PRIORITY])
def test_check_accepts_the_code_bounds(conn: psycopg.Connection[Any], priority: int) -> None:
    assert checks.check_priority(priority) == priority
    conn.execute(INSERT, ("default", priority))
    assert _count(conn) == 1


@pytest.mark.parametrize("priority", [checks.MIN_PRIORITY - 1, checks.MAX_PRIORITY + 1])
def test_check_rejects_just_outside_the_code_bounds(
    conn: psycopg.Connection[Any], priority: int
) -> None:
    with pytest.raises(InvalidInput):
        checks.check_priority(priority)
    with pytest.raises(pgerrors.CheckViolation) as caught:
        conn.execute(INSERT, ("default", priority))
    assert caught.value.diag.constraint_name == "messages_priority_range"
    assert _count(conn) == 0


def test_bounds_are_the_documented_ones() -> None:
    # The README's contract: 1..10, 10 most urgent, default 5.
    assert (checks.MIN_PRIORITY, checks.MAX_PRIORITY, checks.DEFAULT_PRIORITY) == (1, 10, 5)


def test_database_default_priority_matches_the_code(conn: psycopg.Connection[Any]) -> None:
    row = conn.execute(
        "INSERT INTO pgq.messages (payload) VALUES ('{}') RETURNING priority, queue, state"
    ).fetchone()
    assert row == (checks.DEFAULT_PRIORITY, checks.DEFAULT_QUEUE, "ready")


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
        assert checks.check_queue(name) == name
        conn.execute(INSERT, (name, 5))
        assert _count(conn) == 1
        return
    with pytest.raises(InvalidInput):
        checks.check_queue(name)
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
    fits = '{"b": "' + "x" * (checks.MAX_PAYLOAD_BYTES - overhead) + '"}'
    checks.check_payload(fits)
    conn.execute("INSERT INTO pgq.messages (payload) VALUES (%s::jsonb)", (fits,))
    too_big = '{"b": "' + "x" * (checks.MAX_PAYLOAD_BYTES - overhead + 1) + '"}'
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


def test_the_stored_states_are_the_ones_the_database_allows(
    conn: psycopg.Connection[Any],
) -> None:
    for state in State:
        conn.execute("INSERT INTO pgq.messages (state, payload) VALUES (%s, '{}')", (state.value,))
    assert _count(conn) == len(State) == 4
    with pytest.raises(pgerrors.CheckViolation):
        conn.execute("INSERT INTO pgq.messages (state, payload) VALUES ('expired', '{}')")
    assert [s.value for s in EffectiveState] == ["ready", "leased", "expired", "delayed", "dead"]
    assert set(EffectiveState) - set(State) == {EffectiveState.EXPIRED}


def test_queue_names_probes_every_partial_index_and_no_table_scan(
    conn: psycopg.Connection[Any], q: Queue
) -> None:
    """QUEUE_NAMES is generated from PARTIAL_INDEX_PREDICATES, one CTE per index: a
    predicate that is not its index's own would make that CTE scan the table."""
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = conn.execute(
            b"EXPLAIN (FORMAT JSON) " + q.compose(queries.QUEUE_NAMES).as_bytes(conn),
            {"prefix": "", "limit": 10},
        ).fetchone()
    assert plan is not None
    text = json.dumps(plan[0])
    for index in ("messages_ready_idx", "messages_due_idx", "messages_dead_idx"):
        assert f'"Index Name": "{index}"' in text, index
    assert '"Seq Scan"' not in text.replace('"Relation Name": "queues"', "")


def test_the_claim_locks_the_candidates_that_doctor_explains() -> None:
    assert queries.CLAIM_CANDIDATES in queries.CLAIM
    locked = queries.CLAIM.split("WITH locked AS (", 1)[1].split("\n)\nUPDATE", 1)[0]
    assert locked == queries.CLAIM_CANDIDATES + "\n    FOR UPDATE SKIP LOCKED"
    assert "FOR UPDATE" not in queries.CLAIM_CANDIDATES
