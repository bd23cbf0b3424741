"""The fairness migrations on a populated table: claims keep flowing while they run, and
the non-transactional index step recovers from a run that died halfway."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgq_cli.core import migrate, pooler, queries

ROWS = 500_000
BEFORE_FAIRNESS = 2  # the last migration before fair claiming


def _migrate_up_to(dsn: str, version: int, monkeypatch: pytest.MonkeyPatch) -> None:
    every = migrate.available()
    with psycopg.connect(dsn, autocommit=True) as conn:
        monkeypatch.setattr(
            migrate, "available", lambda directory=None: [m for m in every if m.version <= version]
        )
        migrate.migrate(conn, "pgq")
    monkeypatch.undo()


def _fill(dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO pgq.messages (queue, priority, payload)"
            " SELECT 'busy', 1 + i %% 10, '{}' FROM generate_series(1, %s) AS i",
            (ROWS,),
        )
        conn.execute("VACUUM ANALYZE pgq.messages")


def _claim_of_the_build_before() -> sql.Composed:
    """What a consumer still running the previous release sends while the schema is
    migrated under it: today's claim without the columns it does not know yet."""
    text = queries.CLAIM.replace("WHEN paused OR fair THEN", "WHEN paused THEN").replace(
        "m.lease, m.payload, m.key", "m.lease, m.payload"
    )
    assert "fair" not in text and "m.key" not in text
    return sql.SQL(text).format(  # type: ignore[arg-type]
        messages=sql.Identifier("pgq", "messages"), queues=sql.Identifier("pgq", "queues")
    )


def _index_state(conn: psycopg.Connection[Any]) -> tuple[bool, str] | None:
    row = conn.execute(
        "SELECT i.indisvalid, pg_get_indexdef(i.indexrelid) FROM pg_index i"
        " WHERE i.indexrelid = to_regclass('pgq.messages_fair_ready_idx')"
    ).fetchone()
    return None if row is None else (bool(row[0]), str(row[1]))


def test_claims_keep_flowing_while_fairness_is_migrated_in(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _migrate_up_to(empty_db_dsn, BEFORE_FAIRNESS, monkeypatch)
    _fill(empty_db_dsn)
    latencies: list[float] = []
    migrating = threading.Event()
    finished = threading.Event()
    errors: list[BaseException] = []

    def claimer() -> None:
        try:
            claim = _claim_of_the_build_before()
            params = {"queue": "busy", "qty": 1, "vt": 30, "min_priority": 1,
                      "max_priority": 10}
            with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
                while not finished.is_set():
                    started = time.monotonic()
                    found = conn.execute(claim, params).fetchall()
                    if migrating.is_set():
                        latencies.append(time.monotonic() - started)
                    conn.execute("DELETE FROM pgq.messages WHERE msg_id = ANY(%s)",
                                 ([row[0] for row in found],))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=claimer)
    thread.start()
    try:
        time.sleep(0.2)  # the claimer is warm
        with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
            migrating.set()
            started = time.monotonic()
            applied = migrate.migrate(conn, "pgq")
            took = time.monotonic() - started
            state = _index_state(conn)
    finally:
        finished.set()
        thread.join()
    assert errors == []
    assert [m.version for m in applied] == [
        m.version for m in migrate.available() if m.version > BEFORE_FAIRNESS
    ]
    assert state is not None and state[0], "the index was built and is valid"
    assert len(latencies) >= 5, f"claims ran during the {took:.2f} s migration"
    assert max(latencies) < 1.0, f"a claim waited {max(latencies):.2f} s"


def test_an_index_step_that_died_halfway_is_rebuilt(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    index_step = next(m for m in migrate.available() if not m.transactional)
    _migrate_up_to(empty_db_dsn, index_step.version - 1, monkeypatch)
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        # What a crash can leave: an index of that name (here a wrong one), not recorded.
        conn.execute("CREATE INDEX messages_fair_ready_idx ON pgq.messages (msg_id)")
        applied = migrate.migrate(conn, "pgq")
        assert index_step in applied
        state = _index_state(conn)
    assert state is not None and state[0]
    assert "(queue, COALESCE(key, ''::text), priority DESC, msg_id)" in state[1]
    assert "WHERE ((state = 'ready'::text) AND" in state[1]


def test_the_index_step_runs_outside_a_transaction(empty_db_dsn: str) -> None:
    index_step = next(m for m in migrate.available() if not m.transactional)
    assert [s.split()[:3] for s in index_step.statements()] == [
        ["DROP", "INDEX", "CONCURRENTLY"],
        ["CREATE", "INDEX", "CONCURRENTLY"],
    ]
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        migrate.migrate(conn, "pgq")
        # Building concurrently is only possible outside a transaction block: had the
        # migrator wrapped it in one, PostgreSQL would have refused and nothing applied.
        assert migrate.schema_version(conn, "pgq") == index_step.version or (
            migrate.schema_version(conn, "pgq") > index_step.version
        )
        settings = conn.execute(
            "SELECT current_setting('search_path'), current_setting('statement_timeout')"
        ).fetchone()
    assert settings is not None and "pgq" not in settings[0], "search_path restored"


def test_through_a_transaction_pooler_the_index_step_runs_in_one_transaction(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Behind PgBouncer in transaction mode no session state survives between statements:
    the step is built in one transaction (without CONCURRENTLY) and recorded."""
    index_step = next(m for m in migrate.available() if not m.transactional)
    _migrate_up_to(empty_db_dsn, index_step.version - 1, monkeypatch)
    monkeypatch.setattr(pooler, "transaction_pooled", lambda conn, mode="auto": True)
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        # The index step and every migration after it (later ones are transactional).
        pending = [m.version for m in migrate.available() if m.version >= index_step.version]
        assert [m.version for m in migrate.migrate(conn, "pgq")] == pending
        assert migrate.schema_version(conn, "pgq") >= index_step.version
        state = _index_state(conn)
    assert state is not None and state[0]
    assert "(queue, COALESCE(key, ''::text), priority DESC, msg_id)" in state[1]
