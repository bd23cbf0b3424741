"""Least privilege: `pgq migrate --print-grants` and every command as every role.

Roles are cluster-wide, so each test makes role names unique to it and drops them after.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN
from psycopg import conninfo, sql

from pgq_cli.core.queue import Queue
from pgq_cli.ops import grants

# Queue settings (queue config, pause, resume) and migrate stay with the schema owner.
# purge needs DELETE, which the consumer holds anyway (ack is a DELETE); a dry run only
# counts, so the monitor may run it. Everything read-only works for the monitor, so a
# cron line or a dashboard never needs a role that can see payloads.
READ_ONLY = {"stats", "stats_prometheus", "stats_estimate", "stats_fail_if", "queues",
             "purge_dry_run", "watch", "doctor", "migrate_list"}
ALLOWED: dict[str, set[str]] = {
    "producer": {"send"},
    "consumer": {"claim", "claim_wait", "peek", "ack", "requeue", "requeue_expired",
                 "requeue_dead", "extend", "purge", *READ_ONLY},
    "monitor": READ_ONLY,
}
COMMANDS = ("send", "claim", "claim_wait", "peek", "ack", "requeue", "requeue_expired",
            "requeue_dead", "extend", "stats", "stats_prometheus", "stats_estimate",
            "stats_fail_if", "queues", "purge", "purge_dry_run", "watch", "doctor",
            "queue_config", "pause", "resume", "migrate", "migrate_list")
CHANGING = ("send", "claim", "claim_wait", "ack", "requeue", "extend", "purge")


def test_print_grants_needs_no_connection_and_matches_the_module(cli: Cli) -> None:
    result = cli("migrate", "--print-grants", "--schema", "jobs", "--role-prefix", "app",
                 env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 0, result.stderr
    assert result.stdout == grants.grant_sql("jobs", "app")
    assert 'REVOKE ALL ON SCHEMA "jobs" FROM PUBLIC' in result.stdout
    assert "CREATE ROLE \"app_monitor\" NOLOGIN" in result.stdout
    # The monitor's column list leaves out the payload.
    monitor_line = next(line for line in result.stdout.splitlines()
                        if '"messages" TO "app_monitor"' in line)
    assert "payload" not in monitor_line and "lease" not in monitor_line


@pytest.mark.parametrize("prefix", ["Bad", "x;drop", "a" * 42, ""])
def test_print_grants_refuses_a_bad_role_prefix(cli: Cli, prefix: str) -> None:
    result = cli("migrate", "--print-grants", "--role-prefix", prefix)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_every_schema_object_is_covered_by_the_grants(conn: psycopg.Connection[Any]) -> None:
    """A migration that adds a table, sequence or function must say who may use it."""
    rows = conn.execute(
        """
        SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = 'pgq' AND c.relkind IN ('r', 'p', 'S', 'v', 'm', 'f')
        UNION ALL
        SELECT p.proname FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = 'pgq'
        """
    ).fetchall()
    in_schema = {r[0] for r in rows}
    assert in_schema - grants.mentioned_objects() == set(), "grant these in pgq_cli/ops/grants.py"
    assert grants.mentioned_objects() - in_schema == set(), "grants.py names a missing object"


@pytest.fixture
def roles(db_dsn: str) -> Iterator[dict[str, str]]:
    """Group roles from --print-grants (unique names) and a login member of each."""
    prefix = f"pgqt_{uuid.uuid4().hex[:10]}"
    group = grants.Roles.with_prefix(prefix)
    logins = {kind: f"{prefix}_{kind}_login" for kind in grants.ROLE_KINDS}
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        try:
            admin.execute(grants.grant_sql("pgq", prefix).encode())
            for kind, login in logins.items():
                admin.execute(sql.SQL("CREATE ROLE {} LOGIN IN ROLE {}").format(
                    sql.Identifier(login), sql.Identifier(group.of(kind))))
            yield {kind: conninfo.make_conninfo(db_dsn, user=login)
                   for kind, login in logins.items()}
        finally:
            for name in (*logins.values(), *group.all()):
                admin.execute(sql.SQL(
                    "DO $$ BEGIN IF EXISTS (SELECT FROM pg_roles WHERE rolname = {lit}) THEN "
                    "EXECUTE 'DROP OWNED BY ' || quote_ident({lit}); "
                    "EXECUTE 'DROP ROLE ' || quote_ident({lit}); END IF; END $$"
                ).format(lit=sql.Literal(name)))


def _snapshot(q: Queue) -> list[tuple[Any, ...]]:
    messages = q.conn.execute(
        "SELECT msg_id, state, vt, read_ct, lease FROM pgq.messages ORDER BY msg_id"
    ).fetchall()
    settings = q.conn.execute(
        "SELECT queue, max_deliveries, paused, paused_below_priority FROM pgq.queues"
    ).fetchall()
    return [*messages, *settings]


def _prepare(command: str, q: Queue) -> tuple[str, ...]:
    """As the owner: one leased message (the target) and one ready; return the role's args."""
    q.conn.execute("DELETE FROM pgq.messages")
    q.send_many(['{"cell": 1}', '{"cell": 2}'], queue="g")
    (target,) = q.claim(queue="g", qty=1, vt=60)
    msg_id, lease = str(target.msg_id), str(target.lease)
    return {
        "send": ("send", "-q", "g", '{"x": 1}'),
        "claim": ("claim", "-q", "g", "--json"),
        "claim_wait": ("claim", "-q", "g", "--wait", "0.2", "--json"),
        "peek": ("peek", "-q", "g", "--state", "all", "--json"),
        "ack": ("ack", msg_id, "--lease", lease),
        "requeue": ("requeue", msg_id, "--lease", lease),
        "requeue_expired": ("requeue", "--expired"),
        "requeue_dead": ("requeue", "--dead", "--all"),
        "extend": ("extend", msg_id, "--vt", "120", "--lease", lease, "--json"),
        "stats": ("stats", "--json"),
        "stats_prometheus": ("stats", "--format", "prometheus"),
        "stats_estimate": ("stats", "--estimate", "--json"),
        "stats_fail_if": ("stats", "--fail-if", "oldest_ready_age>3600",
                          "--fail-if", "leased_expired>0"),
        "purge": ("purge", "g", "--state", "ready"),
        "purge_dry_run": ("purge", "g", "--state", "ready", "--dry-run"),
        "watch": ("watch", "--once", "--json"),
        "doctor": ("doctor", "--max-xact-age", "1h"),
        "queues": ("queues", "--json"),
        "queue_config": ("queue", "config", "g", "--max-deliveries", "7"),
        "pause": ("pause", "g"),
        "resume": ("resume", "g"),
        "migrate": ("migrate",),
        "migrate_list": ("migrate", "--list", "--json"),
    }[command]


def test_every_command_as_every_role(roles: dict[str, str], q: Queue) -> None:
    q.conn.execute("INSERT INTO pgq.queues (queue, max_deliveries) VALUES ('g', 100)")
    cells: list[str] = []
    for kind, dsn in roles.items():
        for command in COMMANDS:
            args = _prepare(command, q)
            before = _snapshot(q)
            result = Cli(dsn)(*args)
            after = _snapshot(q)
            cell = f"{kind} {command}: exit {result.exit_code} {result.stderr.strip()[:160]}"
            cells.append(cell)
            if command in ALLOWED[kind]:
                assert result.exit_code == 0, cell
                if command in CHANGING:
                    assert after != before, f"{cell}: nothing changed"
            else:
                assert result.exit_code == 77, cell
                assert result.stdout == "", cell
                assert len(result.stderr.strip().splitlines()) == 1, cell
                assert result.stderr.startswith("pgq: error: permission denied"), cell
                assert "Traceback" not in result.stderr, cell
                assert after == before, f"{cell}: a forbidden command changed something"
    assert len(cells) == len(roles) * len(COMMANDS)


def test_monitor_cannot_read_payloads_even_with_raw_sql(roles: dict[str, str], q: Queue) -> None:
    q.send('{"secret": "card number"}')
    with psycopg.connect(roles["monitor"], autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pgq.messages").fetchone() == (1,)
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("SELECT payload FROM pgq.messages")


def test_public_has_nothing(roles: dict[str, str], db_dsn: str, q: Queue) -> None:
    """A login role in no pgq group cannot even see the schema's tables."""
    outsider = f"pgqt_{uuid.uuid4().hex[:10]}_outsider"
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(outsider)))
        try:
            result = Cli(conninfo.make_conninfo(db_dsn, user=outsider))("stats")
            assert result.exit_code == 77, result.stderr
        finally:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(outsider)))


def test_grants_run_twice_and_take_back_what_a_role_should_not_have(
    roles: dict[str, str], db_dsn: str, q: Queue
) -> None:
    """Re-running the script (say after an upgrade) is safe and resets each role."""
    producer_group = conninfo.conninfo_to_dict(roles["producer"])["user"].removesuffix("_login")
    prefix = producer_group.removesuffix("_producer")
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("GRANT DELETE ON pgq.messages TO {}").format(
            sql.Identifier(producer_group)))
        admin.execute(grants.grant_sql("pgq", prefix).encode())
        admin.execute(grants.grant_sql("pgq", prefix).encode())
    (msg_id,) = q.send_many(["{}"])
    result = Cli(roles["producer"])("ack", str(msg_id))
    assert result.exit_code == 77, result.stderr
    assert Cli(roles["producer"])("send", "{}").exit_code == 0


def test_only_the_monitor_gets_pg_monitor(roles: dict[str, str], db_dsn: str) -> None:
    """pgq doctor reads pg_stat_replication (standby lag) through it."""
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        for kind, dsn in roles.items():
            login = conninfo.conninfo_to_dict(dsn)["user"]
            row = admin.execute(
                "SELECT pg_has_role(%s, 'pg_monitor', 'USAGE')", (login,)
            ).fetchone()
            assert row == (kind == "monitor",), kind


def test_grants_without_the_right_to_grant_pg_monitor_still_apply(db_dsn: str) -> None:
    """A schema owner who is not a superuser gets every other grant and a warning."""
    prefix = f"pgqt_{uuid.uuid4().hex[:10]}"
    owner = f"{prefix}_owner"
    group = grants.Roles.with_prefix(prefix)
    with psycopg.connect(db_dsn, autocommit=True) as admin:
        # The groups exist already, made by an administrator; the owner cannot make roles.
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(owner)))
        for name in group.all():
            admin.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(name)))
        admin.execute(sql.SQL("ALTER SCHEMA pgq OWNER TO {}").format(sql.Identifier(owner)))
        admin.execute(sql.SQL("GRANT ALL ON ALL TABLES IN SCHEMA pgq TO {} WITH GRANT OPTION")
                      .format(sql.Identifier(owner)))
        admin.execute(sql.SQL("GRANT ALL ON ALL SEQUENCES IN SCHEMA pgq TO {} WITH GRANT OPTION")
                      .format(sql.Identifier(owner)))
        try:
            warnings: list[str] = []
            with psycopg.connect(conninfo.make_conninfo(db_dsn, user=owner),
                                 autocommit=True) as conn:
                conn.add_notice_handler(lambda notice: warnings.append(str(notice.message_primary)))
                conn.execute(grants.grant_sql("pgq", prefix).encode())
            assert any("could not grant pg_monitor" in w for w in warnings), warnings
            row = admin.execute(
                "SELECT has_column_privilege(%s, 'pgq.messages', 'state', 'SELECT'),"
                " pg_has_role(%s, 'pg_monitor', 'USAGE')",
                (group.monitor, group.monitor),
            ).fetchone()
            assert row == (True, False)
        finally:
            # The database is this test's own: dropping the schema takes every grant on
            # it (column grants by the owner survive DROP OWNED), then the roles can go.
            admin.execute("DROP SCHEMA pgq CASCADE")
            names = sql.SQL(", ").join(map(sql.Identifier, (owner, *group.all())))
            admin.execute(sql.SQL("DROP OWNED BY {}").format(names))
            admin.execute(sql.SQL("DROP ROLE {}").format(names))
