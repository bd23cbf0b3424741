"""A real PgBouncer in transaction pooling mode, in front of the test server.

The pooler tests need the `pgbouncer` binary (Debian package `pgbouncer`). Without it they
skip and name the command that installs it, unless `PGQ_REQUIRE_PGBOUNCER=1` (which
`.ci/run` sets): then they fail, so CI cannot pass without having run them.

PgBouncer refuses to run as root: as root it is started with `-u <user>`, and its
directory (ini, user list, log, pid file) is owned by that user: `postgres` for a server
reached over TCP, the socket directory's owner for the embedded server (which listens on
no port, only on a Unix socket inside its data directory, readable by its owner alone).
It listens on 127.0.0.1 on a free port and forwards every database name (`*`) to the test
server.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import psycopg
import pytest
from psycopg import conninfo

INSTALL_COMMAND = (
    "apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "
    "--no-install-recommends pgbouncer"
)
# Read at import (collection time): the autouse fixture that scrubs PGQ_* variables runs
# before any test, so a fixture reading it later would never see it.
REQUIRE_PGBOUNCER = os.environ.get("PGQ_REQUIRE_PGBOUNCER") == "1"
BINARY_CANDIDATES = ("/usr/sbin/pgbouncer", "pgbouncer")
# PgBouncer runs as this user when the tests run as root and the server is on TCP.
RUN_AS = "postgres"


def pgbouncer_binary() -> str:
    """The pgbouncer executable; skips (or fails, if required) the test without it."""
    for candidate in BINARY_CANDIDATES:
        found = shutil.which(candidate)
        if found:
            return found
    message = f"pgbouncer is not installed: {INSTALL_COMMAND}"
    if REQUIRE_PGBOUNCER:
        pytest.fail(f"{message} (PGQ_REQUIRE_PGBOUNCER=1)", pytrace=False)
    pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_address(admin_dsn: str) -> tuple[str, str]:
    """(host, port) of the server behind an admin DSN; host may be a socket directory."""
    params = conninfo.conninfo_to_dict(admin_dsn)
    return str(params.get("host") or "/var/run/postgresql"), str(params.get("port") or 5432)


class PgBouncer:
    """PgBouncer on 127.0.0.1:<free port>, `pool_mode = transaction`.

    `pool_size` server connections per database and user: with 1, every client of a
    database shares one server connection, which is how settings would leak.
    """

    def __init__(self, admin_dsn: str, *, pool_size: int = 2) -> None:
        self.admin_dsn = admin_dsn
        self.pool_size = pool_size
        self.port = _free_port()
        self.root = Path(tempfile.mkdtemp(prefix="pgqb"))
        self._process: subprocess.Popen[bytes] | None = None

    def dsn(self, server_dsn: str) -> str:
        """`server_dsn` (a database on the test server), reached through this pooler."""
        return conninfo.make_conninfo(server_dsn, host="127.0.0.1", port=str(self.port))

    @property
    def log(self) -> str:
        path = self.root / "pgbouncer.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> PgBouncer:
        binary = pgbouncer_binary()
        host, port = _server_address(self.admin_dsn)
        params = conninfo.conninfo_to_dict(self.admin_dsn)
        user = str(params.get("user") or "postgres")
        password = str(params.get("password") or "")
        ini = self.root / "pgbouncer.ini"
        ini.write_text(
            "[databases]\n"
            f"* = host={host} port={port}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.root / 'userlist.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {self.pool_size}\n"
            "max_client_conn = 200\n"
            f"logfile = {self.root / 'pgbouncer.log'}\n"
            f"pidfile = {self.root / 'pgbouncer.pid'}\n"
        )
        # trust still requires the user to be listed; the password (a testcontainers
        # server wants one) is what PgBouncer logs in to the server with.
        (self.root / "userlist.txt").write_text(f'"{user}" "{password}"\n')
        command = [binary, str(ini)]
        if os.geteuid() == 0:
            if host.startswith("/"):
                account = pwd.getpwuid(os.stat(host).st_uid)
            else:
                account = pwd.getpwnam(RUN_AS)
            for path in (self.root, *self.root.iterdir()):
                os.chown(path, account.pw_uid, account.pw_gid)
            command = [binary, "-u", account.pw_name, str(ini)]
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        try:
            self._wait_ready()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_ready(self, timeout_s: float = 30) -> None:
        assert self._process is not None
        deadline = time.monotonic() + timeout_s
        probe = self.dsn(self.admin_dsn)
        while True:
            if self._process.poll() is not None:
                stderr = self._process.stderr.read().decode() if self._process.stderr else ""
                raise RuntimeError(f"pgbouncer exited: {stderr}{self.log}")
            try:
                with psycopg.connect(probe, connect_timeout=2, autocommit=True) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
            if self._process.stderr:
                self._process.stderr.close()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
