"""`pgq doctor`: each check against a real database put into the state it detects.

Every finding that is not ok carries a fix; where the fix is SQL, the test runs it and
doctor must then be satisfied. Exit 3 when any finding is serious, else 0.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN
from psycopg import conninfo, sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue
from pgq_cli.ops import doctor, grants

CHECKS = ["schema", "indexes", "claim_plan", "vacuum", "bloat", "xmin_horizon", "expired_leases"]
LATEST = migrate.available()[-1]


def findings(result: Any) -> list[dict[str, Any]]:
    return [json.loads(line) for line in result.stdout.splitlines()]


def of(result: Any, check: str) -> list[dict[str, Any]]:
    return [f for f in findings(result) if f["check"] == check]


def one(result: Any, check: str) -> dict[str, Any]:
    (finding,) = of(result, check)
    return finding


def server_autovacuum(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute("SELECT current_setting('autovacuum')::boolean").fetchone()
    assert row is not None
    return bool(row[0])


def vacuum_finding(conn: psycopg.Connection[Any]) -> dict[str, Any]:
    """What a healthy table's vacuum finding is on this server (autovacuum on or off)."""
    if server_autovacuum(conn):
        return {"check": "vacuum", "severity": "ok", "fix": "",
                "summary": "autovacuum is on for pgq.messages"}
    return {
        "check": "vacuum",
        "severity": "warning",
        "summary": "autovacuum is off on this server: pgq.messages is cleaned only by manual "
        "VACUUM",
        "fix": "set autovacuum = on (postgresql.conf), or VACUUM the table from cron",
    }


def publish(conn: psycopg.Connection[Any]) -> None:
    """Publish this session's table statistics now (PostgreSQL 15+ batches them)."""
    conn.execute("SELECT pg_stat_force_next_flush()")


def run_fix(conn: psycopg.Connection[Any], fix: str) -> None:
    for statement in fix.split("; "):
        conn.execute(statement.encode())


def indexdefs(conn: psycopg.Connection[Any]) -> dict[str, str]:
    rows = conn.execute(
        "SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
        "WHERE indrelid = 'pgq.messages'::regclass"
    ).fetchall()
    return {str(r[0]): str(r[1]) for r in rows}


def fill(q: Queue, count: int, queue: str = "default") -> None:
    q.conn.execute(
        "INSERT INTO pgq.messages (queue, priority, payload) "
        "SELECT %s, 1 + g %% 10, jsonb_build_object('n', g) FROM generate_series(1, %s) g",
        (queue, count),
    )


# ------------------------------------------------------------------------------ healthy


def test_fresh_database_is_healthy_exit_0(cli: Cli, conn: Any) -> None:
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stderr
    got = findings(result)
    assert [f["check"] for f in got] == CHECKS
    assert got == [
        {"check": "schema", "severity": "ok", "fix": "",
         "summary": f"schema 'pgq' is at version {LATEST.version:04d}, as packaged"},
        {"check": "indexes", "severity": "ok", "fix": "",
         "summary": "the claim path's indexes are present and valid"},
        {"check": "claim_plan", "severity": "ok", "fix": "",
         "summary": "claim uses messages_ready_idx"},
        vacuum_finding(conn),
        {"check": "bloat", "severity": "ok", "fix": "",
         "summary": "0 dead tuples (0%), never vacuumed"},
        {"check": "xmin_horizon", "severity": "ok", "fix": "",
         "summary": "no transaction older than 300s holds back vacuum"},
        {"check": "expired_leases", "severity": "ok", "fix": "",
         "summary": "no expired leases waiting"},
    ]
    assert result.stderr == ""


def test_small_analyzed_queue_is_not_a_claim_plan_problem(cli: Cli, q: Queue) -> None:
    """A table of a few pages is read whole by the planner, rightly: that is not a finding.
    (doctor used to call it serious and exit 3 on every small, healthy installation.)"""
    fill(q, 100)
    q.conn.execute("ANALYZE pgq.messages")
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stdout
    plan = one(result, "claim_plan")
    assert plan["severity"] == "ok"
    assert re.fullmatch(
        r"claim reads the whole table while it is this small \(Seq Scan, [1-9] pages\); "
        r"messages_ready_idx is usable and takes over as the table grows",
        plan["summary"],
    ), plan["summary"]
    # The same table grown past SMALL_TABLE_PAGES: the planner walks the index.
    fill(q, 20_000)
    q.conn.execute("ANALYZE pgq.messages")
    grown = cli("doctor", "--json")
    assert grown.exit_code == 0, grown.stdout
    assert one(grown, "claim_plan")["summary"] == "claim uses messages_ready_idx"


# ------------------------------------------------------------------------------ indexes


@pytest.mark.parametrize(
    ("name", "drop", "exit_code"),
    [
        ("messages_ready_idx", "DROP INDEX pgq.messages_ready_idx", 3),
        ("messages_due_idx", "DROP INDEX pgq.messages_due_idx", 3),
        ("messages_dead_idx", "DROP INDEX pgq.messages_dead_idx", 0),
        ("messages_pkey", "ALTER TABLE pgq.messages DROP CONSTRAINT messages_pkey", 3),
    ],
)
def test_missing_index_is_found_and_its_fix_rebuilds_exactly_it(
    cli: Cli, conn: Any, name: str, drop: str, exit_code: int
) -> None:
    before = indexdefs(conn)
    conn.execute(drop.encode())
    result = cli("doctor", "--json")
    assert result.exit_code == exit_code, result.stdout
    (finding,) = of(result, "indexes")
    expected = doctor.EXPECTED_INDEXES[name]
    assert finding == {
        "check": "indexes",
        "severity": "serious" if exit_code == 3 else "warning",
        "summary": f"index pgq.{name} is missing: {expected.why}",
        "fix": expected.create.format(table="pgq.messages"),
    }
    if exit_code == 3:
        assert "pgq: doctor found" in result.stderr
    if name == "messages_ready_idx":
        assert one(result, "claim_plan") == {
            "check": "claim_plan",
            "severity": "serious",
            "summary": "claim cannot use messages_ready_idx (Seq Scan): its cost grows "
            "with the table",
            "fix": "recreate the index (see the indexes finding); then ANALYZE pgq.messages",
        }
    run_fix(conn, finding["fix"])
    assert indexdefs(conn) == before  # the very definition the migrations built
    healed = cli("doctor", "--json")
    assert healed.exit_code == 0, healed.stdout
    assert one(healed, "indexes")["severity"] == "ok"
    assert one(healed, "claim_plan")["severity"] == "ok"


def test_index_left_invalid_by_a_failed_concurrent_build_is_serious(
    cli: Cli, q: Queue, conn: Any
) -> None:
    """An operator rebuilds the ready index CONCURRENTLY and the build fails: the index
    exists, invalid, ignored by the planner."""
    before = indexdefs(conn)
    q.send_many(["1", "2"], queue="jobs")
    conn.execute("DROP INDEX pgq.messages_ready_idx")
    with pytest.raises(psycopg.errors.UniqueViolation):
        # UNIQUE by mistake: two ready messages of one queue make the build fail.
        conn.execute(
            "CREATE UNIQUE INDEX CONCURRENTLY messages_ready_idx ON pgq.messages (queue) "
            "WHERE state = 'ready'"
        )
    valid = conn.execute(
        "SELECT indisvalid FROM pg_index WHERE indexrelid = 'pgq.messages_ready_idx'::regclass"
    ).fetchone()
    assert valid == (False,)
    result = cli("doctor", "--json")
    assert result.exit_code == 3, result.stdout
    (finding,) = of(result, "indexes")
    create = doctor.EXPECTED_INDEXES["messages_ready_idx"].create.format(table="pgq.messages")
    assert finding == {
        "check": "indexes",
        "severity": "serious",
        "summary": "index pgq.messages_ready_idx is invalid (a failed CREATE INDEX "
        "CONCURRENTLY?): claim walks it in claim order; without it claim scans",
        "fix": f"DROP INDEX CONCURRENTLY pgq.messages_ready_idx; {create}",
    }
    assert one(result, "claim_plan")["severity"] == "serious"
    run_fix(conn, finding["fix"])
    assert indexdefs(conn) == before
    assert cli("doctor").exit_code == 0


def test_some_other_invalid_index_is_a_warning(cli: Cli, q: Queue, conn: Any) -> None:
    q.send_many(["1", "2"], queue="jobs")
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute("CREATE UNIQUE INDEX CONCURRENTLY messages_by_queue ON pgq.messages (queue)")
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stdout
    assert of(result, "indexes") == [{
        "check": "indexes",
        "severity": "warning",
        "summary": "index pgq.messages_by_queue is invalid (a failed CREATE INDEX "
        "CONCURRENTLY?): every write maintains it and no query uses it",
        "fix": "DROP INDEX CONCURRENTLY pgq.messages_by_queue; build it again if it is needed",
    }]
    conn.execute("DROP INDEX CONCURRENTLY pgq.messages_by_queue")
    assert one(cli("doctor", "--json"), "indexes")["severity"] == "ok"


# ---------------------------------------------------------------------------- claim plan


def test_claim_plan_that_avoids_a_usable_index_is_serious(
    cli: Cli, q: Queue, conn: Any
) -> None:
    """Planner settings of the database steer the claim off its index on a table that is
    no longer small: serious, though every index is present and valid."""
    fill(q, 10_000)
    conn.execute("ANALYZE pgq.messages")
    dbname = conn.info.dbname
    alter = sql.SQL("ALTER DATABASE {} SET {} = off")
    for setting in ("enable_indexscan", "enable_bitmapscan"):
        conn.execute(alter.format(sql.Identifier(dbname), sql.Identifier(setting)))
    pages = conn.execute(
        "SELECT pg_relation_size('pgq.messages') / current_setting('block_size')::int"
    ).fetchone()
    assert pages is not None and pages[0] > doctor.SMALL_TABLE_PAGES
    result = cli("doctor", "--json")
    assert result.exit_code == 3, result.stdout
    assert one(result, "indexes")["severity"] == "ok"
    assert one(result, "claim_plan") == {
        "check": "claim_plan",
        "severity": "serious",
        "summary": "claim does not use messages_ready_idx (Seq Scan) on a table of "
        f"{pages[0]} pages, though it could: its cost grows with the table",
        "fix": "ANALYZE pgq.messages; then look for planner settings that steer it away "
        "(enable_indexscan, enable_bitmapscan, random_page_cost) in postgresql.conf or "
        "ALTER DATABASE/ROLE ... SET",
    }
    conn.execute(sql.SQL("ALTER DATABASE {} RESET ALL").format(sql.Identifier(dbname)))
    healed = cli("doctor", "--json")
    assert healed.exit_code == 0, healed.stdout
    assert one(healed, "claim_plan")["summary"] == "claim uses messages_ready_idx"


def test_claim_plan_is_checked_for_the_queue_given(cli: Cli, q: Queue) -> None:
    fill(q, 10_000, queue="jobs")
    q.conn.execute("ANALYZE pgq.messages")
    for queue in ("jobs", "default", "never-used"):
        result = cli("doctor", "--json", "-q", queue)
        assert result.exit_code == 0, result.stdout
        assert one(result, "claim_plan")["summary"] == "claim uses messages_ready_idx"


# -------------------------------------------------------------------------------- schema


def test_schema_behind_the_package_is_serious(cli: Cli, conn: Any) -> None:
    conn.execute("DELETE FROM pgq.pgq_migrations WHERE version = %s", (LATEST.version,))
    result = cli("doctor", "--json")
    assert result.exit_code == 3, result.stdout
    assert one(result, "schema") == {
        "check": "schema",
        "severity": "serious",
        "summary": f"1 migration(s) not applied: {LATEST.version:04d}_{LATEST.name}",
        "fix": "pgq migrate --schema pgq",
    }
    assert result.stderr.strip() == "pgq: doctor found 1 serious problem(s)"


def test_database_at_an_older_schema_version_reports_it_instead_of_failing(
    empty_db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database migrated by an older pgq (only the first migration): doctor says what is
    pending (it used to exit 78, its claim plan check tripping over the missing table)."""
    first = migrate.available()[:1]
    with psycopg.connect(empty_db_dsn, autocommit=True) as c:
        with monkeypatch.context() as older_package:
            older_package.setattr(migrate, "available", lambda directory=None: first)
            migrate.migrate(c, "pgq")
        assert c.execute("SELECT to_regclass('pgq.queues')").fetchone() == (None,)
        Queue(c).conn.execute(
            "INSERT INTO pgq.messages (queue, payload, state, vt, read_ct) "
            "VALUES ('jobs', '{}', 'leased', now() - interval '1 minute', 1)"
        )
    result = Cli(empty_db_dsn)("doctor", "--json")
    assert result.exit_code == 3, result.stderr
    pending = [m for m in migrate.available() if m.version > first[0].version]
    names = ", ".join(f"{m.version:04d}_{m.name}" for m in pending)
    got = findings(result)
    assert [f["check"] for f in got] == [
        "schema", "indexes", "vacuum", "bloat", "xmin_horizon", "expired_leases"
    ]
    assert got[0] == {
        "check": "schema",
        "severity": "serious",
        "summary": f"{len(pending)} migration(s) not applied: {names}",
        "fix": "pgq migrate --schema pgq",
    }
    assert got[1] == {
        "check": "indexes",
        "severity": "info",
        "summary": "indexes and claim plan not checked: the schema is older than this pgq",
        "fix": "pgq migrate --schema pgq; then pgq doctor again",
    }
    assert got[5]["severity"] == "warning"
    assert got[5]["summary"].startswith("1 lease(s) ran out")


def test_schema_newer_than_the_package_is_a_warning(cli: Cli, conn: Any) -> None:
    conn.execute("INSERT INTO pgq.pgq_migrations (version, name) VALUES (9999, 'future')")
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stdout
    assert one(result, "schema") == {
        "check": "schema",
        "severity": "warning",
        "summary": f"the database has migration(s) [9999] this pgq ({LATEST.version:04d}) "
        "does not know",
        "fix": "upgrade pgq-cli to the version that applied them",
    }


def test_database_without_pgq_is_serious_and_stops_there(empty_db_dsn: str) -> None:
    result = Cli(empty_db_dsn)("doctor", "--json", "--schema", "jobsq")
    assert result.exit_code == 3, result.stderr
    assert findings(result) == [{
        "check": "schema",
        "severity": "serious",
        "summary": "pgq is not installed in schema 'jobsq'",
        "fix": "pgq migrate --schema jobsq",
    }]


# ---------------------------------------------------------------------- leases, xmin, bloat


def test_expired_leases_waiting_are_a_warning(cli: Cli, q: Queue, conn: Any) -> None:
    q.send_many(["1", "2", "3"], queue="jobs")
    first, second, _ = q.claim(queue="jobs", qty=3)
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - make_interval(secs => %s) WHERE msg_id = %s",
        (90, first.msg_id),
    )
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '5 seconds' WHERE msg_id = %s",
        (second.msg_id,),
    )
    result = cli("doctor", "--json")
    assert result.exit_code == 0, result.stdout
    finding = one(result, "expired_leases")
    assert finding["severity"] == "warning"
    assert re.fullmatch(
        r"2 lease\(s\) ran out, the oldest 9[0-5]s ago: consumers died or are slower than "
        r"their --vt",
        finding["summary"],
    ), finding["summary"]
    assert finding["fix"] == (
        "pgq requeue --expired returns them now; raise --vt or use pgq extend for long work"
    )
    assert q.requeue_expired() == 2  # the fix, as its library call
    assert one(cli("doctor", "--json"), "expired_leases")["severity"] == "ok"


def test_idle_transaction_holding_a_snapshot_is_serious(
    cli: Cli, db_dsn: str, q: Queue
) -> None:
    holder = psycopg.connect(db_dsn, application_name="holder")
    try:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        holder.execute("SELECT count(*) FROM pgq.messages")  # takes the snapshot
        pid = holder.info.backend_pid
        q.send_many(["1"])  # each a transaction the snapshot is older than
        q.send_many(["2"])
        q.send_many(["3"])
        time.sleep(1.2)
        # Default --max-xact-age 5m: a transaction one second old is no finding.
        assert one(cli("doctor", "--json"), "xmin_horizon")["severity"] == "ok"
        result = cli("doctor", "--json", "--max-xact-age", "1s")
        assert result.exit_code == 3, result.stdout
        finding = one(result, "xmin_horizon")
        assert finding["severity"] == "serious"
        match = re.fullmatch(
            rf"pid {pid} \(postgres, holder\) has been idle in transaction for [1-9]s: "
            r"vacuum cannot remove rows deleted since it began \((\d+) transactions so far\)",
            finding["summary"],
        )
        assert match and int(match[1]) >= 3, finding["summary"]
        assert finding["fix"] == (
            f"end it (SELECT pg_terminate_backend({pid})) and fix the client; set "
            "idle_in_transaction_session_timeout"
        )
    finally:
        holder.rollback()
        holder.close()
    after = cli("doctor", "--json", "--max-xact-age", "1s")
    assert after.exit_code == 0, after.stdout
    assert one(after, "xmin_horizon") == {
        "check": "xmin_horizon", "severity": "ok", "fix": "",
        "summary": "no transaction older than 1s holds back vacuum",
    }


@pytest.fixture
def monitor_dsn(db_dsn: str) -> Iterator[str]:
    """A login in the monitor group role of `pgq migrate --print-grants` (reads, no payload).

    Roles are cluster-wide: unique names, dropped afterwards."""
    prefix = f"pgqt_{uuid.uuid4().hex[:10]}"
    group = grants.Roles.with_prefix(prefix)
    login = f"{prefix}_doctor"
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        try:
            admin.execute(grants.grant_sql("pgq", prefix).encode())
            admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                sql.Identifier(login), sql.Identifier(group.monitor)))
            yield conninfo.make_conninfo(db_dsn, user=login)
        finally:
            for name in (login, *group.all()):
                admin.execute(sql.SQL(
                    "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN "
                    "EXECUTE 'DROP OWNED BY ' || quote_ident({lit}); "
                    "EXECUTE 'DROP ROLE ' || quote_ident({lit}); END IF; END $$"
                ).format(lit=sql.Literal(name)))


def test_monitor_role_runs_doctor_and_is_told_what_it_cannot_see(
    monitor_dsn: str, db_dsn: str, cli: Cli, q: Queue
) -> None:
    """The least-privilege monitor role can run every check (EXPLAIN of the claim's UPDATE
    needed the UPDATE privilege: doctor used to exit 77), but pg_stat_activity hides other
    roles' transactions from it: it says so instead of reporting all clear.

    The grants script gives the monitor pg_monitor, which shows them; this is the monitor
    of a script run without the right to grant it (tests/test_grants.py)."""
    fill(q, 100)
    monitor = Cli(monitor_dsn)
    user = conninfo.conninfo_to_dict(monitor_dsn)["user"]
    group = user.removesuffix("_doctor") + "_monitor"
    q.conn.execute(sql.SQL("REVOKE pg_monitor FROM {}").format(sql.Identifier(group)))
    holder = psycopg.connect(db_dsn, application_name="holder")
    try:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        holder.execute("SELECT 1")
        time.sleep(1.2)
        assert one(cli("doctor", "--json", "--max-xact-age", "1s"), "xmin_horizon")[
            "severity"] == "serious"
        result = monitor("doctor", "--json", "--max-xact-age", "1s")
        assert result.exit_code == 0, result.stderr
        assert [f["check"] for f in findings(result)] == CHECKS
        assert one(result, "claim_plan")["severity"] == "ok"
        assert one(result, "xmin_horizon") == {
            "check": "xmin_horizon",
            "severity": "info",
            "summary": "no transaction of this role older than 1s holds back vacuum; other "
            "roles' sessions are hidden from it",
            "fix": "GRANT pg_read_all_stats TO the role pgq doctor runs as (or run it as a "
            "superuser) to check every session",
        }
        q.conn.execute(sql.SQL("GRANT pg_read_all_stats TO {}").format(sql.Identifier(user)))
        granted = monitor("doctor", "--json", "--max-xact-age", "1s")
        assert granted.exit_code == 3, granted.stderr
        assert one(granted, "xmin_horizon")["summary"].startswith(
            f"pid {holder.info.backend_pid} (postgres, holder) has been idle in transaction"
        )
    finally:
        holder.rollback()
        holder.close()


def test_monitor_role_with_pg_monitor_sees_every_session(
    monitor_dsn: str, db_dsn: str, cli: Cli, q: Queue
) -> None:
    """As granted by the script, the monitor sees another role's old transaction."""
    holder = psycopg.connect(db_dsn, application_name="holder")
    try:
        holder.isolation_level = psycopg.IsolationLevel.REPEATABLE_READ
        holder.execute("SELECT 1")
        time.sleep(1.2)
        result = Cli(monitor_dsn)("doctor", "--json", "--max-xact-age", "1s")
        assert result.exit_code == 3, result.stderr
        assert one(result, "xmin_horizon")["summary"].startswith(
            f"pid {holder.info.backend_pid} (postgres, holder) has been idle in transaction"
        )
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize(
    ("rows", "deleted", "severity", "percent"),
    [(20_000, 15_000, "serious", 75), (40_000, 12_000, "warning", 30), (20_000, 5_000, "ok", 25)],
)
def test_dead_tuples_after_mass_delete_without_vacuum(
    cli: Cli, q: Queue, conn: Any, rows: int, deleted: int, severity: str, percent: int
) -> None:
    # Per-table autovacuum off, so that no autovacuum (on servers that run it) cleans up
    # before doctor looks; doctor says that too, as serious.
    conn.execute("ALTER TABLE pgq.messages SET (autovacuum_enabled = false)")
    fill(q, rows)
    conn.execute("DELETE FROM pgq.messages WHERE msg_id <= %s", (deleted,))
    publish(conn)
    result = cli("doctor", "--json")
    assert result.exit_code == 3, result.stdout
    assert one(result, "vacuum") == {
        "check": "vacuum",
        "severity": "serious",
        "summary": "autovacuum is disabled for pgq.messages: every claim and ack leaves a "
        "dead tuple that nothing removes",
        "fix": "ALTER TABLE pgq.messages RESET (autovacuum_enabled)",
    }
    bloat = one(result, "bloat")
    if severity == "ok":  # under DEAD_TUPLES_MIN: not worth a finding
        assert bloat == {"check": "bloat", "severity": "ok", "fix": "",
                         "summary": f"{deleted} dead tuples ({percent}%), never vacuumed"}
        return
    assert bloat == {
        "check": "bloat",
        "severity": severity,
        "summary": f"{deleted} dead tuples, {percent}% of pgq.messages (never vacuumed)",
        "fix": "VACUUM (VERBOSE) pgq.messages; if it removes little, look for long "
        "transactions",
    }
    conn.execute("VACUUM pgq.messages")
    conn.execute("ALTER TABLE pgq.messages RESET (autovacuum_enabled)")
    healed = cli("doctor", "--json")
    assert healed.exit_code == 0, healed.stdout
    assert one(healed, "vacuum") == vacuum_finding(conn)
    healed_bloat = one(healed, "bloat")
    assert healed_bloat["severity"] == "ok"
    assert re.fullmatch(r"0 dead tuples \(0%\), last vacuumed \d{4}-\d\d-\d\dT\S+",
                        healed_bloat["summary"]), healed_bloat["summary"]


# ------------------------------------------------------------------------------- output


def test_problems_shows_only_what_is_not_ok(cli: Cli, q: Queue, conn: Any) -> None:
    q.send("1", queue="jobs")
    (held,) = q.claim(queue="jobs")
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 minute'")
    result = cli("doctor", "--json", "--problems")
    assert result.exit_code == 0, result.stdout
    expected = ["expired_leases"] if server_autovacuum(conn) else ["vacuum", "expired_leases"]
    assert [f["check"] for f in findings(result)] == expected
    assert all(f["severity"] != "ok" and f["fix"] for f in findings(result))
    assert held.read_ct == 1


def test_problems_on_a_healthy_database_prints_nothing_but_a_warning_if_any(
    cli: Cli, conn: Any
) -> None:
    result = cli("doctor", "--problems", "--json")
    assert result.exit_code == 0
    assert findings(result) == ([] if server_autovacuum(conn) else [vacuum_finding(conn)])


def test_problems_leaves_out_info_findings_that_need_no_action(
    monitor_dsn: str, db_dsn: str
) -> None:
    """A monitor role without pg_monitor (a grants script run without the right to grant
    it) always gets an info finding (other roles' sessions are hidden): `--problems` in its
    cron job must not print it every run."""
    monitor = Cli(monitor_dsn)
    group = conninfo.conninfo_to_dict(monitor_dsn)["user"].removesuffix("_doctor") + "_monitor"
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("REVOKE pg_monitor FROM {}").format(sql.Identifier(group)))
    everything = findings(monitor("doctor", "--json"))
    assert "info" in [f["severity"] for f in everything]
    problems = monitor("doctor", "--json", "--problems")
    assert problems.exit_code == 0, problems.stderr
    assert findings(problems) == [f for f in everything if f["severity"] in ("warning", "serious")]
    plain = monitor("doctor", "--problems", "--format", "plain")
    assert "info\t" not in plain.stdout
    assert len(plain.stdout.splitlines()) == len(findings(problems))


def test_json_plain_and_table_formats(cli: Cli) -> None:
    as_json = findings(cli("doctor", "--json"))
    assert all(list(f) == ["check", "severity", "summary", "fix"] for f in as_json)
    assert all(f["severity"] in set(doctor.Severity) for f in as_json)
    plain = cli("doctor", "--format", "plain")
    assert plain.exit_code == 0
    assert [line.split("\t") for line in plain.stdout.splitlines()] == [
        [f["severity"], f["check"], f["summary"], f["fix"]] for f in as_json
    ]
    table = cli("doctor", "--format", "table").stdout.splitlines()
    assert table[0].split() == ["severity", "check", "finding", "fix"]
    assert len(table) == 2 + len(as_json)


# ---------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "args",
    [
        ("--max-xact-age", "soon"),
        ("--max-xact-age", "-5s"),
        ("--max-xact-age", "20y"),
        ("--max-xact-age", "11000d"),
        ("-q", "bad;name"),
        ("--queue", ""),
    ],
)
def test_bad_input_exits_2_before_connecting(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("doctor", *args, env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("pgq: error: ")
    assert result.stdout == ""


def test_good_input_with_unreachable_database_exits_69(cli: Cli) -> None:
    result = cli("doctor", "--max-xact-age", "30s", env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 69, result.stderr
    assert result.stderr.startswith("pgq: error: could not connect")
