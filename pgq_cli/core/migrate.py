"""The schema migrator: numbered files in sql/, a version table, one transaction per file.

Owns: finding migration files (shipped in the wheel as `pgq_cli/sql`, or the repository's
top-level `sql/` when run from a checkout), the version table `<schema>.pgq_migrations`,
and the advisory lock that makes concurrent migrators take turns. It never prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from .checks import check_schema
from .errors import SchemaForeign
from .translate import translated

FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
# Fixed key for pg_advisory_xact_lock: "pgq" + "mig" in ASCII, so every migrator agrees.
ADVISORY_LOCK_KEY = 0x706771_6D6967
# Marks the version table as ours, so a foreign "pgq" schema is never mistaken for ours.
VERSION_TABLE_COMMENT = "pgq schema migrations (managed by pgq migrate)"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql_text: str

    @property
    def filename(self) -> str:
        return f"{self.version:04d}_{self.name}.sql"


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
    Refuses a schema that holds objects (tables, functions, types…) but not our version
    table.
    """
    check_schema(schema)
    done: list[Migration] = []
    with translated():
        for migration in available():
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
                exists, ours, objects = _schema_state(conn, schema)
                if exists and not ours and objects > 0:
                    raise SchemaForeign(
                        f"schema {schema!r} holds {objects} objects that pgq did not create"
                    )
                _ensure_version_table(conn, schema)
                if migration.version in _applied(conn, schema):
                    continue
                conn.execute(
                    sql.SQL("SET LOCAL search_path TO {}, pg_catalog").format(
                        sql.Identifier(schema)
                    )
                )
                conn.execute(migration.sql_text.encode())  # file text, no parameters
                conn.execute(
                    sql.SQL("INSERT INTO {} (version, name) VALUES (%s, %s)").format(
                        sql.Identifier(schema, "pgq_migrations")
                    ),
                    (migration.version, migration.name),
                )
                done.append(migration)
    return done


def _ensure_version_table(conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    table = sql.Identifier(schema, "pgq_migrations")
    conn.execute(sql.SQL(_CREATE_VERSION_TABLE).format(table=table))
    conn.execute(
        sql.SQL("COMMENT ON TABLE {} IS {}").format(table, sql.Literal(VERSION_TABLE_COMMENT))
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
            m.sql_text.rstrip(),
            f"INSERT INTO {ident}.pgq_migrations (version, name)"
            f" VALUES ({m.version}, '{m.name}');",
            "COMMIT;",
        ]
    return "\n".join(out) + "\n"
