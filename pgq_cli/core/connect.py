"""Where pgq connects, and how each connection is set up.

Precedence: an explicit DSN (`--dsn`) > `PGQ_DSN` > `DATABASE_URL` > libpq's own
environment (any of `LIBPQ_SETTINGS`; `~/.pgpass` then supplies passwords) > the embedded
PostgreSQL server (`embedded.py`), only when nothing at all is configured and the fallback
is not switched off (`--no-embedded`, `PGQ_NO_EMBEDDED=1`).

Behind a transaction pooler (`PGQ_POOLER`, or detected: see `pooler`), statements are
never prepared and the settings are applied per transaction instead of per session.

This module never prints, never parses-and-rebuilds a DSN, and never writes `os.environ`.
It reports what it chose in a `Target`, so the CLI can say so on stderr.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import conninfo

from . import pooler
from .checks import DEFAULT_LOCK_TIMEOUT_MS, DEFAULT_STATEMENT_TIMEOUT_MS
from .errors import ConfigError, ConnectFailed
from .translate import translate

# libpq variables that say where to connect: if any is set, the user has configured libpq
# (psql users often set only PGDATABASE or PGUSER), and pgq must not start a server of its
# own instead.
LIBPQ_SETTINGS = (
    "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE", "PGSERVICEFILE",
)
# PGQ_NO_EMBEDDED's accepted values.
_SWITCH_ON = ("1", "true", "yes", "on")
_SWITCH_OFF = ("", "0", "false", "no", "off")

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
    # With source "libpq": the libpq variables that are set, which decided it.
    libpq_settings: tuple[str, ...] = ()

    @property
    def described(self) -> str:
        """The setting that chose this target, in words (for hints; never the DSN)."""
        if self.source == "libpq":
            return "libpq's " + "/".join(self.libpq_settings)
        if self.source == "embedded":
            return "`pgq embedded status`"
        return self.source

    @property
    def password(self) -> str:
        """The password the DSN carries, or "" (for masking and for the warning)."""
        try:
            return str(conninfo.conninfo_to_dict(self.dsn).get("password") or "")
        except psycopg.ProgrammingError:
            return ""


def embedded_allowed(env: Mapping[str, str]) -> bool:
    """False when `PGQ_NO_EMBEDDED` switches the embedded fallback off."""
    value = env.get("PGQ_NO_EMBEDDED", "").strip().lower()
    if value in _SWITCH_ON:
        return False
    if value in _SWITCH_OFF:
        return True
    raise ConfigError(
        f"PGQ_NO_EMBEDDED={value!r} is neither on nor off", hint="set it to 1 or 0"
    )


def resolve(
    dsn: str | None, env: Mapping[str, str] | None = None, *, allow_embedded: bool = True
) -> Target:
    """Choose where to connect, without connecting.

    The embedded server is chosen only when no DSN and no libpq setting is given and
    neither `allow_embedded=False` nor `PGQ_NO_EMBEDDED` forbids it; then ConfigError.
    """
    env = os.environ if env is None else env
    pool_mode = pooler.check_pool_mode(env.get(pooler.POOL_MODE_ENV) or pooler.AUTO)
    if dsn:
        return Target(dsn, "--dsn", pool_mode=pool_mode)
    for name in ("PGQ_DSN", "DATABASE_URL"):
        if env.get(name):
            return Target(env[name], name, pool_mode=pool_mode)
    libpq_settings = tuple(name for name in LIBPQ_SETTINGS if env.get(name))
    if libpq_settings:
        return Target("", "libpq", pool_mode=pool_mode, libpq_settings=libpq_settings)
    if not (allow_embedded and embedded_allowed(env)):
        raise ConfigError(
            "no database configured and the embedded server is switched off "
            "(--no-embedded or PGQ_NO_EMBEDDED)",
            hint="set --dsn, PGQ_DSN, DATABASE_URL or libpq's PGHOST/PGDATABASE/PGSERVICE",
        )
    from . import embedded  # only when nothing is configured: most runs never load it

    return Target("", "embedded", embedded.data_dir(env), pool_mode=pool_mode)


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
    inherit it. On a server session they are set once with set_config, in the round
    trip that also detects a pooler (`pooler.apply_settings`); behind a transaction
    pooler every statement carries them for its own transaction
    (`pooler.PerTransactionSettings`), so they hold for this client only.
    """
    if target.embedded_dir is not None:
        from . import embedded

        dsn = embedded.start(target.embedded_dir)
    else:
        dsn = target.dsn
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
            raise ConnectFailed(
                f"could not connect: {detail}",
                hint=f"check {target.described} and that the server is up",
            ) from exc
        raise error from exc
    settings = {
        "application_name": application_name,
        "statement_timeout": f"{statement_timeout_ms}ms",
        "lock_timeout": f"{lock_timeout_ms}ms",
    }
    try:
        pooler.apply_settings(conn, settings, target.pool_mode)
    except BaseException:
        conn.close()
        raise
    return conn
