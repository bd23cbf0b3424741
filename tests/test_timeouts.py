"""Timeouts: a migration behind a held lock, a statement timeout, concurrent migrators."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Any

import psycopg
import pytest
from conftest import Cli

from pgq_cli.core import migrate

LOCK_TIMEOUT_MS = 1000


def _versions(dsn: str) -> list[int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        if conn.execute("SELECT to_regclass('pgq.pgq_migrations')").fetchone() == (None,):
            return []
        return [r[0] for r in conn.execute(
            "SELECT version FROM pgq.pgq_migrations ORDER BY version").fetchall()]


def _relations(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        return [r[0] for r in conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = 'pgq' ORDER BY 1").fetchall()]


def _assert_temporary(result: Any, started: float, budget_s: float) -> None:
    elapsed = time.monotonic() - started
    assert result.exit_code == 75, result.stderr
    assert elapsed <= budget_s, f"took {elapsed:.2f} s"
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("pgq: error: temporary failure")
    assert "retry" in result.stderr


def test_migrate_behind_another_migrator_exits_75_then_succeeds(empty_db_dsn: str) -> None:
    cli = Cli(empty_db_dsn)
    with psycopg.connect(empty_db_dsn, autocommit=True) as holder:
        # A migrator that is stuck holding the migration lock.
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate.ADVISORY_LOCK_KEY,))
        started = time.monotonic()
        result = cli("migrate", "--lock-timeout", str(LOCK_TIMEOUT_MS))
        _assert_temporary(result, started, LOCK_TIMEOUT_MS / 1000 + 1)
        assert _relations(empty_db_dsn) == [], "nothing may be created behind the lock"
        holder.execute("SELECT pg_advisory_unlock_all()")
    again = cli("migrate", "--lock-timeout", str(LOCK_TIMEOUT_MS))
    assert again.exit_code == 0, again.stderr
    assert _versions(empty_db_dsn) == [m.version for m in migrate.available()]


def test_migrate_behind_a_busy_table_exits_75_and_leaves_the_schema_untouched(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An application transaction holds messages; the next migration needs it."""
    every = migrate.available()
    assert len(every) >= 2
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        monkeypatch.setattr(migrate, "available", lambda directory=None: every[:1])
        migrate.migrate(conn, "pgq")
    monkeypatch.undo()
    before = _relations(empty_db_dsn)
    cli = Cli(empty_db_dsn)
    with psycopg.connect(empty_db_dsn) as app_tx:  # an open transaction, as a busy app has
        app_tx.execute("LOCK TABLE pgq.messages IN ROW EXCLUSIVE MODE")
        started = time.monotonic()
        result = cli("migrate", "--lock-timeout", str(LOCK_TIMEOUT_MS))
        _assert_temporary(result, started, LOCK_TIMEOUT_MS / 1000 + 1)
        assert _versions(empty_db_dsn) == [1]
        assert _relations(empty_db_dsn) == before
        app_tx.rollback()
    again = cli("migrate", "--lock-timeout", str(LOCK_TIMEOUT_MS))
    assert again.exit_code == 0, again.stderr
    assert _versions(empty_db_dsn) == [m.version for m in every]


def test_statement_timeout_exits_75_with_nothing_on_stdout(cli: Cli, db_dsn: str) -> None:
    assert cli("send", '{"a": 1}').exit_code == 0
    with psycopg.connect(db_dsn) as blocker:
        blocker.execute("LOCK TABLE pgq.messages IN ACCESS EXCLUSIVE MODE")
        started = time.monotonic()
        result = cli("claim", "--statement-timeout", "300", "--json")
        _assert_temporary(result, started, 0.3 + 2)
        assert "statement timeout" in result.stderr
        blocker.rollback()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT state, read_ct FROM pgq.messages").fetchall() == [("ready", 0)]


def test_two_concurrent_migrates_serialize(empty_db_dsn: str, pgq_bin: str) -> None:
    env = {**os.environ, "PGQ_DSN": empty_db_dsn, "PYTHONWARNINGS": "ignore"}
    with psycopg.connect(empty_db_dsn, autocommit=True) as holder:
        # Hold the lock until both migrators are queued on it, so they truly race.
        holder.execute("SELECT pg_advisory_lock(%s)", (migrate.ADVISORY_LOCK_KEY,))
        procs = [subprocess.Popen([pgq_bin, "migrate", "--lock-timeout", "30000"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
        try:
            deadline = time.monotonic() + 60
            while holder.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
                " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            ).fetchone() != (2,):
                assert time.monotonic() < deadline, "the migrators never queued on the lock"
                assert all(p.poll() is None for p in procs), "a migrator exited early"
                time.sleep(0.05)
            holder.execute("SELECT pg_advisory_unlock_all()")
            outputs = [p.communicate(timeout=60) for p in procs]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.kill()
                    p.communicate()
    assert [p.returncode for p in procs] == [0, 0], [err for _, err in outputs]
    applied_lines = [line for _, err in outputs for line in err.decode().splitlines()
                     if line.startswith("pgq: applied ")]
    every = migrate.available()
    # Each migration applied exactly once, by one or the other.
    assert sorted(applied_lines) == sorted(f"pgq: applied {m.filename}" for m in every)
    assert _versions(empty_db_dsn) == [m.version for m in every]
