"""Least-privilege roles for pgq, and the SQL that grants them (`pgq migrate --print-grants`).

Owns: which role may touch which table, column, sequence and function of the pgq schema.
This is the one place for that SQL. It never connects and never prints.

Three NOLOGIN group roles; a service logs in as its own role that is a member of one:

- producer: send only (INSERT, plus the msg_id it gets back and the id sequence that bulk
  send reserves ids from).
- consumer: claim, ack, requeue, extend (and peek/stats: it reads payloads anyway).
- monitor: stats without payloads: column-level SELECT that leaves out `payload` and the
  lease token (a capability), plus the queue settings and the migration version; and the
  built-in `pg_monitor`, so `pgq doctor` sees standbys (pg_stat_replication) and every
  session's transaction age.

Every table, sequence and function the migrations create must appear below, either with
grants or in OWNER_ONLY with a reason: tests/test_grants.py fails when a migration adds an
object that this module does not mention, so the roles stay right as the schema grows.
The script revokes everything first, so re-running it after an upgrade also takes away
what a role no longer needs.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..core.checks import check_schema
from ..core.errors import InvalidInput

ROLE_KINDS = ("producer", "consumer", "monitor")
DEFAULT_ROLE_PREFIX = "pgq"
ROLE_PREFIX = re.compile(r"^[a-z_][a-z0-9_]{0,40}$")

# Columns the monitor may read: everything but the payload and the lease token; and the
# system column ctid, by which `stats --estimate` reads its sampled pages.
MONITOR_MESSAGE_COLUMNS = (
    "msg_id", "queue", "priority", "state", "vt", "read_ct", "enqueued_at", "key", "ctid"
)

# table -> role kind -> privileges (SQL text, fixed here, never from input).
TABLE_PRIVILEGES: dict[str, dict[str, str]] = {
    "messages": {
        # INSERT ... RETURNING msg_id reads msg_id back.
        "producer": "INSERT, SELECT (msg_id)",
        # claim = UPDATE ... RETURNING *, ack = DELETE, requeue/extend = UPDATE.
        "consumer": "SELECT, UPDATE, DELETE",
        "monitor": f"SELECT ({', '.join(MONITOR_MESSAGE_COLUMNS)})",
    },
    # Per-queue settings (max_deliveries, pause) that claim and stats read; only the owner
    # changes them (`pgq queue config`, `pgq pause`).
    "queues": {
        # send --dedup-key reads the queue's dedup window (sql/0005).
        "producer": "SELECT (queue, dedup_window)",
        "consumer": "SELECT",
        "monitor": "SELECT",
    },
    # send --dedup-key records its key (INSERT … ON CONFLICT DO UPDATE needs SELECT and
    # UPDATE too, for a record past its window); purge deletes expired ones, and its dry
    # run counts them. Keys are not payloads: the monitor may read them.
    "dedup_keys": {
        "producer": "SELECT, INSERT, UPDATE",
        "consumer": "SELECT, DELETE",
        "monitor": "SELECT",
    },
    # The schema version, for `pgq migrate --list` and `pgq doctor`.
    "pgq_migrations": {"consumer": "SELECT", "monitor": "SELECT"},
    # Fair queues' keys: the fair claim (run as the consumer) locks and advances them.
    "fair_keys": {"consumer": "SELECT, UPDATE", "monitor": "SELECT"},
}

SEQUENCE_PRIVILEGES: dict[str, dict[str, str]] = {
    # Bulk send (COPY) reserves its ids with nextval() first.
    "messages_msg_id_seq": {"producer": "USAGE"},
}

FUNCTION_PRIVILEGES: dict[str, dict[str, str]] = {
    # The claim of a fair queue (SECURITY INVOKER: it acts with the consumer's rights).
    "fair_claim": {"consumer": "EXECUTE"},
}

# Built-in roles granted to a role kind. pg_monitor lets the monitor read
# pg_stat_replication (standby lag, sync state) and other roles' sessions in
# pg_stat_activity, which pgq doctor checks.
BUILTIN_ROLES: dict[str, tuple[str, ...]] = {"monitor": ("pg_monitor",)}

# Objects no role needs a grant on, and why.
OWNER_ONLY: dict[str, str] = {
    # Trigger functions run when the trigger fires; EXECUTE is checked only when the
    # trigger is created, so no role needs it.
    "notify_ready_inserted": "trigger function",
    "notify_ready_updated": "trigger function",
    # SECURITY DEFINER trigger functions that keep fair_keys for any role that writes.
    "fair_keys_sent": "trigger function",
    "fair_key_became_ready": "trigger function",
    "fair_lease_ended": "trigger function",
    # Called by those trigger functions and by `pgq queue key` (the owner's command).
    "fair_clock": "helper of the fairness trigger functions",
    "fair_key_has_work": "helper of the fairness trigger functions",
}


@dataclass(frozen=True)
class Roles:
    producer: str
    consumer: str
    monitor: str

    @classmethod
    def with_prefix(cls, prefix: str = DEFAULT_ROLE_PREFIX) -> Roles:
        if not ROLE_PREFIX.fullmatch(prefix):
            raise InvalidInput(
                f"invalid role prefix {prefix[:50]!r}",
                hint="use a lower-case SQL identifier of at most 41 characters, e.g. pgq",
            )
        return cls(f"{prefix}_producer", f"{prefix}_consumer", f"{prefix}_monitor")

    def of(self, kind: str) -> str:
        return str(getattr(self, kind))

    def all(self) -> tuple[str, ...]:
        return tuple(self.of(kind) for kind in ROLE_KINDS)


def mentioned_objects() -> set[str]:
    """Every object name this module grants on or deliberately leaves to the owner."""
    return {*TABLE_PRIVILEGES, *SEQUENCE_PRIVILEGES, *FUNCTION_PRIVILEGES, *OWNER_ONLY}


def grant_sql(schema: str = "pgq", prefix: str = DEFAULT_ROLE_PREFIX) -> str:
    """The SQL script creating the roles (if missing) and granting them; one transaction."""
    # Imported here: `pgq migrate --help` shows DEFAULT_ROLE_PREFIX without loading psycopg.
    from psycopg import sql

    check_schema(schema)
    roles = Roles.with_prefix(prefix)

    def ident(*names: str) -> str:
        return sql.Identifier(*names).as_string(None)

    everyone = ", ".join(ident(r) for r in roles.all())
    s = ident(schema)
    out = [
        f"-- pgq least-privilege roles for schema {s}. Run as the schema owner (or a superuser).",
        "-- Group roles are NOLOGIN: create a login role per service and GRANT the group to it,",
        f"-- e.g. CREATE ROLE billing_worker LOGIN PASSWORD '...' IN ROLE {roles.consumer};",
        "BEGIN;",
    ]
    for role in roles.all():
        literal = sql.Literal(role).as_string(None)
        out.append(
            f"DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = {literal}) "
            f"THEN CREATE ROLE {ident(role)} NOLOGIN; END IF; END $$;"
        )
    out += [
        "-- Nobody gets in by default; then start each role from nothing, so re-running this",
        "-- after an upgrade also takes away what a role no longer needs.",
        f"REVOKE ALL ON SCHEMA {s} FROM PUBLIC, {everyone};",
        f"REVOKE ALL ON ALL TABLES IN SCHEMA {s} FROM PUBLIC, {everyone};",
        f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {s} FROM PUBLIC, {everyone};",
        f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC, {everyone};",
        f"GRANT USAGE ON SCHEMA {s} TO {everyone};",
    ]
    for kind_of_object, grants in (
        ("TABLE", TABLE_PRIVILEGES),
        ("SEQUENCE", SEQUENCE_PRIVILEGES),
        ("FUNCTION", FUNCTION_PRIVILEGES),
    ):
        for name, per_role in grants.items():
            for kind, privileges in per_role.items():
                out.append(
                    f"GRANT {privileges} ON {kind_of_object} {ident(schema, name)} "
                    f"TO {ident(roles.of(kind))};"
                )
    for kind, builtins in BUILTIN_ROLES.items():
        for builtin in builtins:
            # Granting a built-in role needs a superuser (or its ADMIN OPTION); a schema
            # owner without it still gets the rest of the script, and a warning.
            warning = sql.Literal(
                f"pgq: could not grant {builtin} to {roles.of(kind)} (run this as a "
                "superuser for that): pgq doctor will not see standbys"
            ).as_string(None)
            out.append(
                f"DO $$ BEGIN GRANT {ident(builtin)} TO {ident(roles.of(kind))}; "
                f"EXCEPTION WHEN insufficient_privilege THEN RAISE WARNING {warning}; END $$;"
            )
    out.append("COMMIT;")
    return "\n".join(out) + "\n"
