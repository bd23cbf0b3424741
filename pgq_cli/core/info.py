"""What `pgq info` reports: where pgq is connected, which setting chose it, and the schema.

It only reads (libpq's connection info, the server version, the migration table) and never
reports a password: the DSN itself is never part of the result.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from .. import __version__
from . import migrate
from .connect import Target


@dataclass(frozen=True)
class ConnectionInfo:
    source: str  # the setting that chose the server: --dsn, PGQ_DSN, DATABASE_URL, libpq, embedded
    libpq_settings: tuple[str, ...]  # with source libpq: the variables that are set
    embedded_dir: Path | None
    host: str  # a host name, an address, or a Unix socket directory
    port: int
    database: str
    user: str
    server_version: str
    schema: str
    schema_version: int  # the highest applied migration; 0 when the schema is missing
    migrations_pending: int
    pgq_version: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "libpq_settings": list(self.libpq_settings),
            "embedded_dir": str(self.embedded_dir) if self.embedded_dir else None,
            "host": self.host,
            "port": self.port,
            "database": self.database,
            "user": self.user,
            "server_version": self.server_version,
            "schema": self.schema,
            "schema_version": self.schema_version,
            "migrations_pending": self.migrations_pending,
            "pgq_version": self.pgq_version,
        }


def describe(conn: psycopg.Connection[Any], target: Target, schema: str) -> ConnectionInfo:
    """Where `conn` (opened for `target`) is connected, and the state of `schema` there."""
    row = conn.execute("SHOW server_version").fetchone()
    assert row is not None
    # "15.10 (Debian 15.10-1.pgdg120+1)": the version is the first word.
    server_version = str(row[0]).split()[0]
    migrations = migrate.status(conn, schema)
    applied = [m.version for m in migrations if m.applied_at is not None]
    return ConnectionInfo(
        source=target.source,
        libpq_settings=target.libpq_settings,
        embedded_dir=target.embedded_dir,
        host=conn.info.host,
        port=conn.info.port,
        database=conn.info.dbname,
        user=conn.info.user,
        server_version=server_version,
        schema=schema,
        schema_version=max(applied, default=0),
        migrations_pending=len(migrations) - len(applied),
        pgq_version=__version__,
    )
