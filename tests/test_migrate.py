"""The migrator, by behaviour: version table, idempotence, --list, --sql without a
connection, refusing a foreign "pgq" schema, and a custom schema end to end.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN

from pgq_cli.core import migrate as migrator

FILES = migrator.available()


def _one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params).fetchone()
    assert row is not None
    return row[0]


def _relations(dsn: str, schema: str) -> list[str]:
    with psycopg.connect(dsn) as conn:
        rows = conn.execute(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE n.nspname = %s ORDER BY 1",
            (schema,),
        ).fetchall()
    return [r[0] for r in rows]


def test_migration_files_are_numbered_without_gaps() -> None:
    names = sorted(p.name for p in Path(migrator._sql_dir()).glob("*"))
    assert names, "no migration files found"
    assert all(migrator.FILE_PATTERN.match(n) for n in names), names
    assert [m.version for m in FILES] == list(range(1, len(FILES) + 1))
    for m in FILES:
        assert m.sql_text.lstrip().startswith("-- Why:"), f"{m.filename} must say why it exists"


def test_migrate_empty_database_then_again_is_a_no_op(empty_db_dsn: str) -> None:
    cli = Cli(empty_db_dsn)
    first = cli("migrate")
    assert first.exit_code == 0, first.stderr
    assert first.stdout == ""
    for m in FILES:
        assert f"applied {m.filename}" in first.stderr
    with psycopg.connect(empty_db_dsn) as conn:
        versions = conn.execute(
            "SELECT version, name FROM pgq.pgq_migrations ORDER BY version"
        ).fetchall()
        assert versions == [(m.version, m.name) for m in FILES]
        applied_at = _one(conn, "SELECT max(applied_at) FROM pgq.pgq_migrations")
    relations = _relations(empty_db_dsn, "pgq")
    second = cli("migrate")
    assert second.exit_code == 0, second.stderr
    assert "up to date" in second.stderr and "applied" not in second.stderr
    assert _relations(empty_db_dsn, "pgq") == relations
    with psycopg.connect(empty_db_dsn) as conn:
        assert _one(conn, "SELECT count(*) FROM pgq.pgq_migrations") == len(FILES)
        assert _one(conn, "SELECT max(applied_at) FROM pgq.pgq_migrations") == applied_at
    # And the schema works: send -> claim -> ack.
    msg_id = cli("send", "-p", "3", '{"ok": true}').stdout.strip()
    claimed = json.loads(cli("claim", "--json").stdout)
    assert str(claimed["msg_id"]) == msg_id
    assert cli("ack", msg_id, "--lease", claimed["lease"]).exit_code == 0


def test_migrate_json_prints_a_result_object(empty_db_dsn: str) -> None:
    cli = Cli(empty_db_dsn)
    first = cli("migrate", "--json")
    assert first.exit_code == 0, first.stderr
    assert json.loads(first.stdout) == {
        "schema": "pgq",
        "applied": [{"version": m.version, "name": m.name} for m in FILES],
        "schema_version": FILES[-1].version,
    }
    assert len(first.stdout.splitlines()) == 1
    assert "applied 0001" in first.stderr  # talk stays on stderr
    second = cli("migrate", "--json")
    assert second.exit_code == 0, second.stderr
    assert json.loads(second.stdout) == {
        "schema": "pgq", "applied": [], "schema_version": FILES[-1].version
    }
    assert cli("migrate").stdout == ""  # without --json, stdout stays empty


def test_migrate_list_before_and_after(empty_db_dsn: str) -> None:
    cli = Cli(empty_db_dsn)
    before = cli("migrate", "--list", "--json")
    assert before.exit_code == 0, before.stderr
    rows = [json.loads(line) for line in before.stdout.splitlines()]
    assert [(r["version"], r["name"], r["applied"]) for r in rows] == [
        (m.version, m.name, False) for m in FILES
    ]
    assert _relations(empty_db_dsn, "pgq") == [], "--list must not create anything"
    assert cli("migrate").exit_code == 0
    after = cli("migrate", "--list")
    assert after.exit_code == 0
    lines = [line.split("\t") for line in after.stdout.splitlines()]
    assert [(f[0], f[1], f[2]) for f in lines] == [
        (f"{m.version:04d}", m.name, "applied") for m in FILES
    ]
    assert all(f[3] for f in lines)


def test_migrate_sql_needs_no_connection_and_its_output_works(empty_db_dsn: str) -> None:
    offline = Cli(UNREACHABLE_DSN)("migrate", "--sql")
    assert offline.exit_code == 0, offline.stderr
    assert "could not connect" not in offline.stderr
    script = offline.stdout
    assert "CREATE TABLE messages" in script
    assert script.count("BEGIN;") == len(FILES) == script.count("COMMIT;")
    # Applying the printed SQL by hand leaves a database `pgq migrate` calls up to date.
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        conn.execute(script.encode())
    cli = Cli(empty_db_dsn)
    again = cli("migrate")
    assert again.exit_code == 0 and "up to date" in again.stderr, again.stderr
    assert cli("send", "{}").exit_code == 0
    assert cli("claim", "--fail-if-empty").exit_code == 0


def test_migrate_sql_since_skips_applied_versions() -> None:
    last = FILES[-1]
    result = Cli(UNREACHABLE_DSN)("migrate", "--sql", "--since", str(last.version))
    assert result.exit_code == 0
    assert "BEGIN;" not in result.stdout
    if len(FILES) > 1:
        partial = Cli(UNREACHABLE_DSN)("migrate", "--sql", "--since", "1").stdout
        assert FILES[0].filename not in partial and FILES[1].filename in partial


def test_migrate_sql_uses_the_chosen_schema() -> None:
    result = Cli(UNREACHABLE_DSN)("migrate", "--sql", "--schema", "jobs")
    assert result.exit_code == 0
    assert 'CREATE SCHEMA IF NOT EXISTS "jobs";' in result.stdout
    assert "SET LOCAL search_path TO \"jobs\"" in result.stdout


FOREIGN_PGQ = [
    # Roughly what SkyTools PgQ, another product named "pgq", installs.
    "CREATE SCHEMA pgq",
    "CREATE TABLE pgq.queue (queue_id serial PRIMARY KEY, queue_name text)",
    "CREATE TABLE pgq.event_template (ev_id bigint, ev_data text)",
    "CREATE FUNCTION pgq.insert_event(text, text, text) RETURNS bigint"
    " LANGUAGE sql AS 'SELECT 1::bigint'",
]


@pytest.mark.parametrize(
    "setup",
    [
        FOREIGN_PGQ,
        ["CREATE SCHEMA pgq", "CREATE FUNCTION pgq.tick() RETURNS int LANGUAGE sql AS 'SELECT 1'"],
        ["CREATE SCHEMA pgq", "CREATE TABLE pgq.pgq_migrations (version integer)"],
    ],
    ids=["skytools-like", "functions-only", "lookalike-version-table"],
)
def test_migrate_refuses_a_foreign_pgq_schema(empty_db_dsn: str, setup: list[str]) -> None:
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        for statement in setup:
            conn.execute(statement.encode())
        functions = conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'pgq'"
        ).fetchone()
    relations = _relations(empty_db_dsn, "pgq")
    result = Cli(empty_db_dsn)("migrate")
    assert result.exit_code == 78, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "did not create" in lines[0] and "--schema" in lines[0]
    assert _relations(empty_db_dsn, "pgq") == relations, "nothing may be created in it"
    with psycopg.connect(empty_db_dsn) as conn:
        assert conn.execute(
            "SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace"
            " WHERE n.nspname = 'pgq'"
        ).fetchone() == functions
    # The way out the hint names works in the same database.
    other = Cli(empty_db_dsn)("migrate", "--schema", "pgq_jobs")
    assert other.exit_code == 0, other.stderr


def test_migrate_accepts_an_existing_empty_schema(empty_db_dsn: str) -> None:
    with psycopg.connect(empty_db_dsn, autocommit=True) as conn:
        conn.execute("CREATE SCHEMA pgq")
    result = Cli(empty_db_dsn)("migrate")
    assert result.exit_code == 0, result.stderr
    assert "messages" in _relations(empty_db_dsn, "pgq")


@pytest.mark.parametrize("how", ["--schema", "PGQ_SCHEMA"])
def test_custom_schema_end_to_end(empty_db_dsn: str, how: str) -> None:
    cli = Cli(empty_db_dsn)
    env = {"PGQ_SCHEMA": "work_q"} if how == "PGQ_SCHEMA" else {}
    flag = ["--schema", "work_q"] if how == "--schema" else []

    def run(*args: str, input: str | None = None) -> Any:
        return cli(*args, *flag, input=input, env=env)

    assert run("migrate").exit_code == 0
    assert _relations(empty_db_dsn, "pgq") == [], "the default schema must not be touched"
    assert "messages" in _relations(empty_db_dsn, "work_q")
    low = run("send", "-p", "2", '{"n": 1}').stdout.strip()
    high = run("send", "--file", "-", "-p", "9", input='{"n": 2}\n').stdout.strip()
    assert [m.split("\t")[0] for m in run("peek").stdout.splitlines()] == [high, low]
    claimed = [json.loads(line) for line in run("claim", "-n", "2", "--json").stdout.splitlines()]
    assert [str(m["msg_id"]) for m in claimed] == [high, low]
    assert run("extend", high, "--vt", "60", "--lease", claimed[0]["lease"]).exit_code == 0
    assert run("requeue", low).exit_code == 0
    assert run("ack", high).exit_code == 0
    stats = [json.loads(line) for line in run("stats", "--json").stdout.splitlines()]
    assert [(s["priority"], s["ready"], s["leased"]) for s in stats] == [(2, 1, 0)]
    assert run("requeue", "--expired").exit_code == 0
    lines = run("migrate", "--list").stdout.splitlines()
    assert all(line.split("\t")[2] == "applied" for line in lines)
    with psycopg.connect(empty_db_dsn) as conn:
        assert _one(conn, "SELECT count(*) FROM work_q.messages") == 1
    # Without the schema option the default "pgq" is used, and it is not installed here.
    assert cli("stats").exit_code == 78


def test_invalid_schema_name_is_exit_2(empty_db_dsn: str) -> None:
    result = Cli(empty_db_dsn)("migrate", "--schema", 'pgq"; DROP TABLE x; --')
    assert result.exit_code == 2
    assert re.match(r"pgq: error: invalid schema name", result.stderr)
    assert _relations(empty_db_dsn, "pgq") == []
