"""Working through a transaction-pooling connection pooler (PgBouncer `pool_mode = transaction`).

Library code: never prints, never imports Typer or rich.

A transaction pooler lends a server connection to a client for one transaction, then
hands it to another client. Three things that assume one server session break:

- Prepared statements. psycopg prepares a statement on the server after it has run
  `prepare_threshold` (5) times; the next transaction may run on a server connection that
  does not have it, or that already has another client's statement of the same name
  (`prepared statement "_pg3_0" already exists`). Behind a transaction pooler pgq sets
  `prepare_threshold = None`: nothing is prepared.
- Session settings. `SET` (or `set_config(…, false)`) lands on whichever server connection
  ran it, and leaks to the clients that get it next, while this client's next statement
  may run without it. `PerTransactionSettings` cursors apply them with `set_config(…,
  true)` in front of every statement instead, in the same round trip.
- LISTEN. Notifications go to the server connection that listened, not to the client.
  Waiting claims (`waiting`) poll only.

The mode comes from a setting (`PGQ_POOLER`, or the `pool_mode` parameter of `Queue` and
`connect.connect`) or, by default ("auto"), from detection: a pooler answers the startup
handshake itself, so the backend pid it reports (`conn.info.backend_pid`, from its own
BackendKeyData) is not the pid of the server backend (`pg_backend_pid()`). Detection
cannot tell session pooling from transaction pooling, so every pooler is treated as a
transaction pooler; with a session pooler, set `PGQ_POOLER=session` to keep LISTEN.
"""

from __future__ import annotations

import contextlib
import json
import weakref
from collections.abc import Mapping
from typing import Any, LiteralString, Self, cast

import psycopg
from psycopg import errors, pq
from psycopg.abc import Params, Query, QueryNoTemplate

from .errors import ConfigError
from .translate import translated

POOL_MODE_ENV = "PGQ_POOLER"
AUTO = "auto"
TRANSACTION = "transaction"
# "session" and "none" behave alike: the client keeps one server session.
POOL_MODES = (AUTO, TRANSACTION, "session", "none")

# Applies each setting to the current transaction only (is_local = true). In a pipeline
# (and autocommit) the statements up to the next Sync form one implicit transaction, so
# this covers exactly the statement sent after it. `settings` is a jsonb object of
# name -> value, so one statement sets any number of them.
SET_LOCAL: LiteralString = """
    SELECT set_config(setting.key, setting.value, true)
    FROM jsonb_each_text(%(settings)s::jsonb) AS setting
"""


# Sets each setting for the session (is_local = false), but only when the session is this
# client's own: a direct connection (the backend pid the server reports is the one the
# handshake gave the client), or `keep_session` (PGQ_POOLER=session/none says so). Behind a
# pooler it sets nothing, so no setting lands on a server connection other clients get
# next. It answers whether the session is the client's: the pooler detection and the
# settings in one round trip.
SET_SESSION_IF_OURS: LiteralString = """
    WITH probe AS (
        SELECT %(keep_session)s OR pg_backend_pid() = %(client_pid)s AS session_is_ours
    )
    SELECT probe.session_is_ours,
           (SELECT count(set_config(setting.key, setting.value, false))
            FROM jsonb_each_text(%(settings)s::jsonb) AS setting
            WHERE probe.session_is_ours)
    FROM probe
"""

# Connections whose session `apply_settings` found to be their own: a Queue (or the
# migrator) built on one later does not ask the server again.
_KNOWN_DIRECT: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()


def check_pool_mode(mode: str) -> str:
    if mode not in POOL_MODES:
        raise ConfigError(
            f"unknown pool mode {mode[:40]!r}: {POOL_MODE_ENV} must be one of "
            f"{', '.join(POOL_MODES)}",
            hint=f"{POOL_MODE_ENV}=transaction behind a transaction-pooling PgBouncer",
        )
    return mode


def behind_pooler(conn: psycopg.Connection[Any]) -> bool:
    """Whether a pooler sits between this connection and the server. One query.

    A pooler (PgBouncer, and the others that multiplex clients) sends the client a backend
    key of its own, so its pid is not the server backend's.
    """
    with translated():
        row = conn.execute("SELECT pg_backend_pid()", prepare=False).fetchone()
    assert row is not None
    return int(row[0]) != conn.info.backend_pid


def transaction_pooled(conn: psycopg.Connection[Any], mode: str = AUTO) -> bool:
    """Whether to treat `conn` as going through a transaction pooler, per `mode`.

    "auto" detects (one query), unless `connect.connect` (`apply_settings`) has already
    found out: behind a pooler its cursors apply settings per transaction, and a direct
    connection is remembered.
    """
    check_pool_mode(mode)
    if mode != AUTO:
        return mode == TRANSACTION
    if issubclass(conn.cursor_factory, PerTransactionSettings):
        return True
    if conn in _KNOWN_DIRECT:
        return False
    return behind_pooler(conn)


def apply_settings(
    conn: psycopg.Connection[Any], settings: Mapping[str, str], mode: str = AUTO
) -> bool:
    """Give `conn` its settings for this client only; return whether it is transaction-pooled.

    "transaction": no statement, every later one carries the settings. Otherwise one
    statement (`SET_SESSION_IF_OURS`) sets them for the session when the session is
    ours, and in "auto" detects a pooler at the same time; behind one the settings then
    travel per transaction as with "transaction".
    """
    check_pool_mode(mode)
    if mode != TRANSACTION:
        with translated():
            row = conn.execute(
                SET_SESSION_IF_OURS,
                {
                    "keep_session": mode != AUTO,
                    "client_pid": conn.info.backend_pid,
                    "settings": json.dumps(dict(settings)),
                },
                prepare=False,
            ).fetchone()
        assert row is not None
        if row[0]:
            _KNOWN_DIRECT.add(conn)
            return False
    prepare_for_pooler(conn)
    use_per_transaction_settings(conn, settings)
    return True


def prepare_for_pooler(conn: psycopg.Connection[Any]) -> None:
    """Never prepare statements on the server (each transaction may get another backend)."""
    conn.prepare_threshold = None


class PerTransactionSettings(psycopg.Cursor[Any]):
    """A cursor that applies the connection's settings to every statement it runs.

    Set as `conn.cursor_factory` by `use_per_transaction_settings`. Outside a transaction,
    a statement gets one of its own: BEGIN, `SET_LOCAL`, the statement, COMMIT, all on one
    server connection. Not a pipeline: leaving one, psycopg sends a Flush request after
    the Sync whenever results are still on their way, and when PgBouncer (1.18 here)
    has already handed the server connection back at the Sync's ReadyForQuery, that Flush
    takes the connection again and keeps it busy (it gets no answer) until this client's
    next statement; every other client of a one-connection pool waits meanwhile
    (tests/test_pooler.py saw `query_wait_timeout`). Inside a transaction (the caller's,
    or `together`'s) `SET_LOCAL` goes in front of the statement. A command that cannot
    run in a transaction at all (VACUUM, CREATE INDEX CONCURRENTLY) runs on its own,
    without the settings: there is no way to scope them to it.
    """

    settings: Mapping[str, str] = {}

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> Self:
        conn = self.connection
        # The implementation takes either form; the cast only picks the typing overload.
        statement = cast(QueryNoTemplate, query)
        set_local = {"settings": json.dumps(dict(self.settings))}
        if conn.pgconn.pipeline_status != pq.PipelineStatus.OFF:
            # Already in a pipeline: the caller's Sync ends the implicit transaction, which
            # then holds the settings and every statement sent after them.
            scope: contextlib.AbstractContextManager[Any] = contextlib.nullcontext()
        elif conn.info.transaction_status == pq.TransactionStatus.IDLE:
            try:
                with conn.transaction():
                    super().execute(SET_LOCAL, set_local)
                    super().execute(statement, params, prepare=prepare, binary=binary)
            except errors.ActiveSqlTransaction:
                super().execute(statement, params, prepare=prepare, binary=binary)
            return self
        else:  # inside the caller's transaction
            scope = contextlib.nullcontext()
        with scope:
            super().execute(SET_LOCAL, set_local)
            super().execute(statement, params, prepare=prepare, binary=binary)
        return self


def together(conn: psycopg.Connection[Any]) -> contextlib.AbstractContextManager[Any]:
    """Statements that must run in one transaction, in as few round trips as the
    connection allows: a pipeline on a connection of our own (one round trip), a
    transaction behind a transaction pooler (see PerTransactionSettings for why not a
    pipeline there)."""
    if issubclass(conn.cursor_factory, PerTransactionSettings):
        return conn.transaction()
    return conn.pipeline()


def use_per_transaction_settings(
    conn: psycopg.Connection[Any], settings: Mapping[str, str]
) -> None:
    """Make every statement on `conn` run with `settings`, whatever backend serves it."""
    cursor_class = type(
        "PerTransactionSettingsCursor", (PerTransactionSettings,), {"settings": dict(settings)}
    )
    conn.cursor_factory = cursor_class
