"""The schema migrator: numbered files in sql/, a version table, one transaction per file.

Owns: finding migration files (shipped in the wheel as `pgq_cli/sql`, or the repository's
top-level `sql/` when run from a checkout), the version table `<schema>.pgq_migrations`,
and the advisory lock that makes concurrent migrators take turns. It never prints.

A file whose opening comment has the line `-- pgq: no transaction` runs outside a transaction, one
statement at a time (statements end with `;` at the end of a line), and its version is
recorded afterwards in a transaction of its own: that is the only way to run
`CREATE INDEX CONCURRENTLY`, which builds an index on a large table without blocking
writers. Such a file must be safe to run again from the start if it died halfway.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from . import pooler
from .checks import check_schema
from .errors import SchemaForeign, Temporary
from .translate import translated

FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Fixed key for pg_advisory_xact_lock: "pgq" + "mig" in ASCII, so every migrator agrees.
ADVISORY_LOCK_KEY = 0x706771_6D6967
# Marks the version table as ours, so a foreign "pgq" schema is never mistaken for ours.
VERSION_TABLE_COMMENT = "pgq schema migrations (managed by pgq migrate)"
# A line of the opening comment of a migration file that must run outside a transaction.
NO_TRANSACTION_MARKER = "-- pgq: no transaction"
# How often a migrator waiting for another one's non-transactional file asks again.
LOCK_POLL_S = 0.1


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql_text: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"

    @property
    def transactional(self) -> bool:
        header = []
        for line in self.sql_text.splitlines():
            if not line.startswith("--"):
                break
            header.append(line.rstrip())
        return NO_TRANSACTION_MARKER not in header

    def statements(self) -> list[str]:
        """A non-transactional file's statements, each to be sent on its own (a string of
        several would run as one implicit transaction). Comment lines are dropped."""
        code = "\n".join(
            line for line in self.sql_text.splitlines() if not line.lstrip().startswith("--")
        )
        parts = (part.strip().rstrip(";").strip() for part in code.split(";\n"))
        return [part for part in parts if part]


@dataclass(frozen=True)
class MigrationStatus:
    version: int
    name: str
    applied_at: datetime | None  # None: pending

    def to_json(self) -> dict[str, Any]:
        return {
            "version": self.version,
            "name": self.name,
            "applied": self.applied_at is not None,
            "applied_at": self.applied_at.isoformat() if self.applied_at else None,
        }


def _sql_dir() -> Path:
    checkout = Path(__file__).resolve().parents[2] / "sql"
    if checkout.is_dir():  # running from a source checkout (editable install)
        return checkout
    return Path(str(resources.files("pgq_cli") / "sql"))


def available(directory: Path | None = None) -> list[Migration]:
    """All migration files, in version order. Raises if a file is misnamed or duplicated."""
    directory = directory or _sql_dir()
    found: dict[int, Migration] = {}
    for path in sorted(directory.glob("*.sql")):
        match = FILE_PATTERN.match(path.name)
        if not match:
            raise ValueError(f"misnamed migration file {path.name}: want NNNN_what_it_does.sql")
        version = int(match.group(1))
        if version in found:
            raise ValueError(f"two migrations numbered {version:04d}")
        found[version] = Migration(version, match.group(2), path.read_text(encoding="utf-8"))
    return [found[v] for v in sorted(found)]


_CREATE_VERSION_TABLE = """
CREATE TABLE IF NOT EXISTS {table} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


def _schema_state(conn: psycopg.Connection[Any], schema: str) -> tuple[bool, bool, int]:
    """(schema exists, our version table exists, number of objects in the schema).

    Objects are counted through pg_depend (what DROP SCHEMA … CASCADE would drop), so a
    schema holding only functions or types is seen as occupied too, not just one with tables.
    """
    row = conn.execute(
        """
        SELECT
            EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %(s)s),
            EXISTS (
                SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
                WHERE n.nspname = %(s)s AND c.relname = 'pgq_migrations'
                  AND obj_description(c.oid, 'pg_class') = %(comment)s
            ),
            (SELECT count(*) FROM pg_depend d JOIN pg_namespace n ON n.oid = d.refobjid
             WHERE d.refclassid = 'pg_namespace'::regclass AND n.nspname = %(s)s)
        """,
        {"s": schema, "comment": VERSION_TABLE_COMMENT},
    ).fetchone()
    assert row is not None
    return bool(row[0]), bool(row[1]), int(row[2])


def _applied(conn: psycopg.Connection[Any], schema: str) -> dict[int, datetime]:
    rows = conn.execute(
        sql.SQL("SELECT version, applied_at FROM {}").format(
            sql.Identifier(schema, "pgq_migrations")
        )
    ).fetchall()
    return {int(v): at for v, at in rows}


def status(conn: psycopg.Connection[Any], schema: str = "pgq") -> list[MigrationStatus]:
    """Applied and pending migrations. Read-only."""
    check_schema(schema)
    with translated():
        _, ours, _ = _schema_state(conn, schema)
        applied = _applied(conn, schema) if ours else {}
    return [MigrationStatus(m.version, m.name, applied.get(m.version)) for m in available()]


def schema_version(conn: psycopg.Connection[Any], schema: str = "pgq") -> int:
    """The highest applied migration, 0 when none is."""
    applied = [s.version for s in status(conn, schema) if s.applied_at is not None]
    return max(applied, default=0)


def migrate(conn: psycopg.Connection[Any], schema: str = "pgq") -> list[Migration]:
    """Apply every pending migration; return those applied (empty: already up to date).

    Each file runs with its version record in one transaction, after taking a
    transaction-scoped advisory lock, so two migrators serialize and the second finds
    nothing left to do. lock_timeout (set on the connection) bounds waiting for table locks.
    A `-- pgq: no transaction` file runs as described in the module docstring
    (`_apply_without_transaction`). Refuses a schema that holds objects (tables,
    functions, types…) but not our version table.
    """
    check_schema(schema)
    done: list[Migration] = []
    with translated():
        # Through a transaction pooler every statement may reach another server connection,
        # so nothing can be spread over several of them (a session search_path, a session
        # lock): there even a non-transactional file runs in one transaction, its index
        # built without CONCURRENTLY, as `pending_sql` prints it.
        pooled = pooler.transaction_pooled(conn)
        for migration in available():
            with conn.transaction():
                if not _pending(conn, schema, migration):
                    continue
                if migration.transactional or pooled:
                    _set_search_path(conn, schema, local=True)
                    text = migration.sql_text if migration.transactional else (
                        _in_one_transaction(migration)
                    )
                    conn.execute(text.encode())  # file text, no parameters
                    _record(conn, schema, migration)
                    done.append(migration)
                    continue
            if _apply_without_transaction(conn, schema, migration):
                done.append(migration)
    return done


def _pending(conn: psycopg.Connection[Any], schema: str, migration: Migration) -> bool:
    """In the caller's transaction: take the migrators' lock, check the schema is ours,
    create the version table if need be; whether `migration` is still to be applied."""
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
    exists, ours, objects = _schema_state(conn, schema)
    if exists and not ours and objects > 0:
        raise SchemaForeign(f"schema {schema!r} holds {objects} objects that pgq did not create")
    _ensure_version_table(conn, schema)
    return migration.version not in _applied(conn, schema)


def _apply_without_transaction(
    conn: psycopg.Connection[Any], schema: str, migration: Migration
) -> bool:
    """Run a non-transactional file, then record it; False if another migrator did first.

    The migrators' lock is NOT held while the statements run: CREATE INDEX CONCURRENTLY
    waits for every transaction older than it, and a second migrator blocked on that lock
    inside its transaction would wait for us in turn (a deadlock). Instead, the file's own
    advisory lock is taken by polling pg_try_advisory_lock, so a migrator waiting for it
    holds no transaction and no snapshot between polls; the wait is bounded by
    lock_timeout like any other (Temporary, exit 75). Statements run in autocommit with no
    statement_timeout: an index build takes as long as the table needs, and blocks no
    claim meanwhile.
    """
    timeout_row = conn.execute(
        "SELECT current_setting('lock_timeout'),"
        " extract(epoch FROM current_setting('lock_timeout')::interval)"
    ).fetchone()
    assert timeout_row is not None
    lock_timeout_s = float(timeout_row[1]) or None  # 0: wait as long as it takes
    deadline = None if lock_timeout_s is None else time.monotonic() + lock_timeout_s
    key = ADVISORY_LOCK_KEY + migration.version
    while not _try_lock(conn, key):
        if deadline is not None and time.monotonic() > deadline:
            raise Temporary(
                f"another migrator is applying {migration.filename}",
                hint="retry when it has finished",
            )
        time.sleep(LOCK_POLL_S)
    try:
        with conn.transaction():
            if not _pending(conn, schema, migration):
                return False
        saved = conn.execute(
            "SELECT current_setting('search_path'), current_setting('statement_timeout')"
        ).fetchone()
        assert saved is not None
        try:
            _set_search_path(conn, schema, local=False)
            conn.execute("SET statement_timeout = 0")
            for statement in migration.statements():
                conn.execute(statement.encode())  # file text, no parameters
        finally:
            conn.execute(
                "SELECT set_config('search_path', %s, false),"
                " set_config('statement_timeout', %s, false)",
                saved,
            )
        with conn.transaction():
            if not _pending(conn, schema, migration):
                return False
            _record(conn, schema, migration)
        return True
    finally:
        conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def _try_lock(conn: psycopg.Connection[Any], key: int) -> bool:
    row = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
    return bool(row and row[0])


def _set_search_path(conn: psycopg.Connection[Any], schema: str, *, local: bool) -> None:
    scope = sql.SQL("SET LOCAL" if local else "SET")
    conn.execute(
        sql.SQL("{} search_path TO {}, pg_catalog").format(scope, sql.Identifier(schema))
    )


def _record(conn: psycopg.Connection[Any], schema: str, migration: Migration) -> None:
    conn.execute(
        sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
            sql.Identifier(schema, "pgq_migrations")
        ),
        (migration.version, migration.name),
    )


def _ensure_version_table(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    table = sql.Identifier(schema, "pgq_migrations")
    conn.execute(sql.SQL(_CREATE_VERSION_TABLE).format(table=table))
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(VERSION_TABLE_COMMENT))
    )


def _in_one_transaction(migration: Migration) -> str:
    """A non-transactional file's statements in one transaction (the offline script, and
    `migrate` through a transaction pooler): without CONCURRENTLY, saying what that costs."""
    statements = [s.replace(" CONCURRENTLY", "") for s in migration.statements()]
    return "\n".join(
        [
            "-- `pgq migrate` runs this file outside a transaction, with CREATE INDEX",
            "-- CONCURRENTLY. In this script it runs in the transaction like the others and",
            "-- blocks writes to the table while the index builds: on a large table, apply",
            "-- this step with `pgq migrate` instead.",
            *(f"{statement};" for statement in statements),
        ]
    )


def pending_sql(schema: str = "pgq", since: int = 0) -> str:
    """The SQL `migrate` would run for versions above `since`, as one script. No connection."""
    check_schema(schema)
    ident = sql.Identifier(schema).as_string(None)
    out = [f"-- pgq migrations for schema {ident}, versions after {since}"]
    for m in available():
        if m.version <= since:
            continue
        out += [
            f"\n-- {m.filename}",
            "BEGIN;",
            f"CREATE SCHEMA IF NOT EXISTS {ident};",
            f"CREATE TABLE IF NOT EXISTS {ident}.pgq_migrations (version integer PRIMARY KEY,"
            " name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now());",
            f"COMMENT ON TABLE {ident}.pgq_migrations IS '{VERSION_TABLE_COMMENT}';",
            f"SET LOCAL search_path TO {ident}, pg_catalog;",
            m.sql_text.rstrip() if m.transactional else _in_one_transaction(m),
            f"INSERT INTO {ident}.pgq_migrations (version, name)"
            f" VALUES ({m.version}, '{m.name}');",
            "COMMIT;",
        ]
    return "\n".join(out) + "\n"
