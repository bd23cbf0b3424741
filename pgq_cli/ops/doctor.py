"""`pgq doctor`: checks of a pgq installation, each finding with a severity and a fix.

Library code: takes a `Queue`, returns a frozen `Report`; never prints, never imports
Typer or rich. Every check is read-only (EXPLAIN without ANALYZE does not run the claim).

Severities: `ok` (nothing to do), `info` (nothing to do, but worth knowing), `warning`
(worth a look), `serious` (pgq is or will soon be slow or wrong: `pgq doctor` exits 3).
Problems, what `pgq doctor --problems` shows, are the findings that need action: warnings
and serious ones.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, LiteralString

from psycopg import sql
from psycopg.rows import dict_row

from ..core import fair_queries, migrate, queries
from ..core.checks import DEFAULT_QUEUE, check_queue
from ..core.errors import SchemaMissing
from ..core.queue import Queue
from ..core.translate import translated
from . import queries as ops_queries


class Severity(StrEnum):
    """How much a finding matters, least first; `serious` makes `pgq doctor` exit 1."""

    OK = "ok"
    INFO = "info"
    WARNING = "warning"
    SERIOUS = "serious"


# What `pgq doctor --problems` shows: the findings that need action.
NEEDS_ACTION = (Severity.WARNING, Severity.SERIOUS)


@dataclass(frozen=True)
class ExpectedIndex:
    severity: Severity  # when it is missing or invalid
    why: str  # what the claim path loses without it
    # How to build it again without blocking writers; {table} is the qualified table.
    create: str


# The indexes of sql/0001 and sql/0002 (tests/test_doctor.py checks that each `create`
# rebuilds exactly what the migrations built).
EXPECTED_INDEXES = {
    "messages_pkey": ExpectedIndex(
        Severity.SERIOUS,
        "ack, requeue and extend find messages by id through it",
        "CREATE UNIQUE INDEX CONCURRENTLY messages_pkey ON {table} (msg_id); "
        "ALTER TABLE {table} ADD CONSTRAINT messages_pkey PRIMARY KEY USING INDEX messages_pkey",
    ),
    "messages_ready_idx": ExpectedIndex(
        Severity.SERIOUS,
        "claim walks it in claim order; without it claim scans",
        "CREATE INDEX CONCURRENTLY messages_ready_idx ON {table} "
        "(queue, priority DESC, msg_id) WHERE state = 'ready'",
    ),
    "messages_due_idx": ExpectedIndex(
        Severity.SERIOUS,
        "expired leases and due delayed messages are found by it",
        "CREATE INDEX CONCURRENTLY messages_due_idx ON {table} (queue, vt) "
        "WHERE state IN ('leased', 'delayed')",
    ),
    "messages_dead_idx": ExpectedIndex(
        Severity.WARNING,
        "dead letters are listed and redriven through it",
        "CREATE INDEX CONCURRENTLY messages_dead_idx ON {table} (queue, vt) "
        "WHERE state = 'dead'",
    ),
    "messages_fair_ready_idx": ExpectedIndex(
        Severity.SERIOUS,
        "the claim of a fair queue finds each key's next message by it; without it, it scans",
        "CREATE INDEX CONCURRENTLY messages_fair_ready_idx ON {table} "
        "(queue, (coalesce(key, '')), priority DESC, msg_id) "
        "WHERE state = 'ready' AND coalesce(key, '') IS NOT NULL",
    ),
}
# While the table is at most this many pages (1 MiB), the planner may rightly prefer reading
# all of it to an index probe; the claim plan check then only asks that the index be usable.
SMALL_TABLE_PAGES = 128
# Dead tuples above this share of the table (and above DEAD_TUPLES_MIN rows) are bloat.
DEAD_RATIO_WARNING = 0.2
DEAD_RATIO_SERIOUS = 0.5
DEAD_TUPLES_MIN = 10_000
DEFAULT_MAX_XACT_AGE_S = 300.0
# A standby whose replay is further behind than this (and still has WAL to replay) lags.
MAX_REPLICATION_LAG_S = 60.0
# synchronous_commit values with which a commit does not wait for a synchronous standby.
COMMIT_WAITS_FOR_NO_STANDBY = ("off", "local")


@dataclass(frozen=True)
class Finding:
    check: str
    severity: Severity
    summary: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "check": self.check,
            "severity": self.severity.value,
            "summary": self.summary,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Report:
    findings: tuple[Finding, ...]

    @property
    def problems(self) -> tuple[Finding, ...]:
        """The findings that need action (warning, serious), for cron: not ok or info."""
        return tuple(f for f in self.findings if f.severity in NEEDS_ACTION)

    @property
    def serious(self) -> bool:
        return any(f.severity == Severity.SERIOUS for f in self.findings)


def run(
    q: Queue, *, queue: str = DEFAULT_QUEUE, max_xact_age_s: float = DEFAULT_MAX_XACT_AGE_S
) -> Report:
    """Every check; the claim plan is checked for `queue`.

    A schema behind this package (migrations pending) is checked only for what its oldest
    version already has (the messages table): the claim SQL and the expected indexes are
    this package's, and would fail or mislead on an older schema.
    """
    check_queue(queue)
    findings = list(check_schema_version(q))
    behind = any(f.severity == Severity.SERIOUS and f.check == "schema" for f in findings)
    if behind and not _messages_table_exists(q):
        return Report(tuple(findings))
    if behind:
        findings.append(
            Finding(
                "indexes",
                Severity.INFO,
                "indexes and claim plan not checked: the schema is older than this pgq",
                f"pgq migrate --schema {q.schema}; then pgq doctor again",
            )
        )
        checks = [check_table_health(q)]
    else:
        checks = [check_indexes(q), check_claim_plan(q, queue), check_table_health(q)]
        if q.fairness(queue).fair:
            checks.insert(2, check_fair_claim_plan(q, queue))
    for check in (
        *checks,
        check_long_transactions(q, max_xact_age_s),
        check_expired_leases(q),
        check_replication(q),
    ):
        findings.extend(check)
    return Report(tuple(findings))


def _messages_table_exists(q: Queue) -> bool:
    with translated():
        row = q.conn.execute(
            "SELECT to_regclass(%s) IS NOT NULL", (f"{q.schema}.messages",)
        ).fetchone()
    return bool(row and row[0])


def check_schema_version(q: Queue) -> Iterator[Finding]:
    """Applied migrations against the ones this package ships."""
    try:
        status = migrate.status(q.conn, q.schema)
    except SchemaMissing:
        status = []
    pending = [s for s in status if s.applied_at is None]
    known = max((s.version for s in status), default=0)
    if status and len(pending) == len(status):
        yield Finding(
            "schema",
            Severity.SERIOUS,
            f"pgq is not installed in schema {q.schema!r}",
            f"pgq migrate --schema {q.schema}",
        )
        return
    if pending:
        names = ", ".join(f"{s.version:04d}_{s.name}" for s in pending)
        yield Finding(
            "schema",
            Severity.SERIOUS,
            f"{len(pending)} migration(s) not applied: {names}",
            f"pgq migrate --schema {q.schema}",
        )
        return
    newer = _applied_versions(q) - {s.version for s in status}
    if newer:
        yield Finding(
            "schema",
            Severity.WARNING,
            f"the database has migration(s) {sorted(newer)} this pgq ({known:04d}) does not know",
            "upgrade pgq-cli to the version that applied them",
        )
        return
    yield Finding(
        "schema", Severity.OK, f"schema {q.schema!r} is at version {known:04d}, as packaged"
    )


def _applied_versions(q: Queue) -> set[int]:
    statement = sql.SQL(ops_queries.APPLIED_VERSIONS).format(
        migrations=sql.Identifier(q.schema, "pgq_migrations")
    )
    with translated():
        rows = q.conn.execute(statement).fetchall()
    return {int(r[0]) for r in rows}


def check_indexes(q: Queue) -> Iterator[Finding]:
    """The claim path's indexes exist and are valid (not left over from a failed build).

    Also any other index of the table that is invalid: every write maintains it, no query
    uses it.
    """
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(ops_queries.INDEXES, {"table": f"{q.schema}.messages"}).fetchall()
    found = {r["name"]: r for r in rows}
    table = f"{q.schema}.messages"
    bad = False
    for name, expected in EXPECTED_INDEXES.items():
        row = found.get(name)
        create = expected.create.format(table=table)
        if row is None:
            bad = True
            yield Finding(
                "indexes",
                expected.severity,
                f"index {q.schema}.{name} is missing: {expected.why}",
                create,
            )
        elif not (row["valid"] and row["ready"]):
            bad = True
            rebuild = (
                f"REINDEX INDEX CONCURRENTLY {q.schema}.{name}"
                if name == "messages_pkey"
                else f"DROP INDEX CONCURRENTLY {q.schema}.{name}; {create}"
            )
            yield Finding(
                "indexes",
                expected.severity,
                f"index {q.schema}.{name} is invalid (a failed CREATE INDEX CONCURRENTLY?): "
                f"{expected.why}",
                rebuild,
            )
    for name, row in found.items():
        if name not in EXPECTED_INDEXES and not (row["valid"] and row["ready"]):
            bad = True
            yield Finding(
                "indexes",
                Severity.WARNING,
                f"index {q.schema}.{name} is invalid (a failed CREATE INDEX CONCURRENTLY?): "
                "every write maintains it and no query uses it",
                f"DROP INDEX CONCURRENTLY {q.schema}.{name}; build it again if it is needed",
            )
    if not bad:
        yield Finding("indexes", Severity.OK, "the claim path's indexes are present and valid")


def _plan_nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _plan_nodes(child)


def claim_plan(
    q: Queue, queue: str = DEFAULT_QUEUE, *, prefer_index: bool = False
) -> dict[str, Any]:
    """The planner's plan (EXPLAIN, FORMAT JSON; not executed) of the claim's candidates.

    `prefer_index`: plan it with sequential and bitmap scans discouraged (SET LOCAL, in a
    transaction of its own), to learn whether the claim can use its index at all.
    """
    params = {"queue": queue, "qty": 1, "min_priority": 1, "max_priority": 10}
    return _plan(q, queries.CLAIM_CANDIDATES, params, prefer_index=prefer_index)


def _plan(
    q: Queue, statement: LiteralString, params: dict[str, Any], *, prefer_index: bool
) -> dict[str, Any]:
    explain = b"EXPLAIN (FORMAT JSON) " + q.compose(statement).as_bytes(q.conn)
    with translated(), q.conn.transaction():
        if prefer_index:
            q.conn.execute(ops_queries.PLANNER_PREFER_INDEX)
        row = q.conn.execute(explain, params).fetchone()
    assert row is not None
    doc = row[0] if not isinstance(row[0], str) else json.loads(row[0])
    plan: dict[str, Any] = doc[0]["Plan"]
    return plan


def _candidate_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """The scans of messages that pick the rows to claim.

    In a plan of the whole claim that is the CTE `locked`, not the update's own join back
    to messages by msg_id (which rightly uses the primary key, or on a tiny table a scan).
    """
    nodes = list(_plan_nodes(plan))
    cte = next((n for n in nodes if n.get("Subplan Name") == "CTE locked"), plan)
    return [
        n
        for n in _plan_nodes(cte)
        if n.get("Relation Name") == "messages" and "Scan" in n.get("Node Type", "")
    ]


def _describe(scans: list[dict[str, Any]]) -> str:
    return ", ".join(
        f"{n['Node Type']}" + (f" on {n['Index Name']}" if n.get("Index Name") else "")
        for n in scans
    ) or "no scan of messages"


def _uses_ready_index(scans: list[dict[str, Any]]) -> bool:
    return any(n.get("Index Name") == "messages_ready_idx" for n in scans)


def fair_probe_plan(q: Queue, queue: str, *, prefer_index: bool = False) -> dict[str, Any]:
    """The plan (EXPLAIN, not executed) of the fair claim's probe of one key's head."""
    params = {"queue": queue, "key": "", "min_priority": 1, "max_priority": 10, "limit": 1}
    return _plan(q, fair_queries.FAIR_KEY_PROBE, params, prefer_index=prefer_index)


def _probe_scans(plan: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        n
        for n in _plan_nodes(plan)
        if n.get("Relation Name") == "messages" and "Scan" in n.get("Node Type", "")
    ]


def _uses_fair_index(scans: list[dict[str, Any]]) -> bool:
    return any(n.get("Index Name") == "messages_fair_ready_idx" for n in scans)


def check_fair_claim_plan(q: Queue, queue: str) -> Iterator[Finding]:
    """For a fair queue: the fair claim's probe of a key uses messages_fair_ready_idx.

    The other half of the fair claim walks fair_keys, one row per key, by its primary key
    and turn index; that table is as large as the number of keys, not of messages.
    """
    table = f"{q.schema}.messages"
    scans = _probe_scans(fair_probe_plan(q, queue))
    if _uses_fair_index(scans):
        yield Finding(
            "fair_claim_plan", Severity.OK, "the fair claim probes keys by messages_fair_ready_idx"
        )
        return
    how = _describe(scans)
    if not _uses_fair_index(_probe_scans(fair_probe_plan(q, queue, prefer_index=True))):
        yield Finding(
            "fair_claim_plan",
            Severity.SERIOUS,
            f"the fair claim cannot use messages_fair_ready_idx ({how}): each claim of a "
            "fair queue scans",
            f"recreate the index (see the indexes finding); then ANALYZE {table}",
        )
        return
    pages = _table_pages(q)
    if pages <= SMALL_TABLE_PAGES:
        yield Finding(
            "fair_claim_plan",
            Severity.OK,
            f"the fair claim reads the whole table while it is this small ({how}, {pages} "
            "pages); messages_fair_ready_idx is usable and takes over as the table grows",
        )
        return
    yield Finding(
        "fair_claim_plan",
        Severity.SERIOUS,
        f"the fair claim does not use messages_fair_ready_idx ({how}) on a table of {pages} "
        "pages, though it could: its cost grows with the table",
        f"ANALYZE {table}; then look for planner settings that steer it away",
    )


def _table_pages(q: Queue) -> int:
    with translated():
        row = q.conn.execute(ops_queries.TABLE_PAGES, {"table": f"{q.schema}.messages"}
                             ).fetchone()
    return int(row[0]) if row else 0


def check_claim_plan(q: Queue, queue: str = DEFAULT_QUEUE) -> Iterator[Finding]:
    """The claim's candidate scan uses messages_ready_idx, not a walk of the table.

    A small table is the exception: there the planner rightly reads it all (a few pages)
    instead, so it is enough that the index is usable; it takes over as the table grows.
    """
    table = f"{q.schema}.messages"
    scans = _candidate_scans(claim_plan(q, queue))
    if _uses_ready_index(scans):
        yield Finding("claim_plan", Severity.OK, "claim uses messages_ready_idx")
        return
    how = _describe(scans)
    if not _uses_ready_index(_candidate_scans(claim_plan(q, queue, prefer_index=True))):
        yield Finding(
            "claim_plan",
            Severity.SERIOUS,
            f"claim cannot use messages_ready_idx ({how}): its cost grows with the table",
            f"recreate the index (see the indexes finding); then ANALYZE {table}",
        )
        return
    pages = _table_pages(q)
    if pages <= SMALL_TABLE_PAGES:
        yield Finding(
            "claim_plan",
            Severity.OK,
            f"claim reads the whole table while it is this small ({how}, {pages} pages); "
            "messages_ready_idx is usable and takes over as the table grows",
        )
        return
    yield Finding(
        "claim_plan",
        Severity.SERIOUS,
        f"claim does not use messages_ready_idx ({how}) on a table of {pages} pages, though "
        "it could: its cost grows with the table",
        f"ANALYZE {table}; then look for planner settings that steer it away "
        "(enable_indexscan, enable_bitmapscan, random_page_cost) in postgresql.conf or "
        "ALTER DATABASE/ROLE ... SET",
    )


def check_table_health(q: Queue) -> Iterator[Finding]:
    """Dead tuples (bloat from claim updates and ack deletes) and when vacuum last ran."""
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(
            ops_queries.TABLE_HEALTH, {"table": f"{q.schema}.messages"}
        ).fetchone()
    if row is None:
        return
    live, dead = int(row["n_live_tup"]), int(row["n_dead_tup"])
    ratio = dead / (live + dead) if live + dead else 0.0
    last = row["last_autovacuum"] or row["last_vacuum"]
    when = f"last vacuumed {last.isoformat(timespec='seconds')}" if last else "never vacuumed"
    table = f"{q.schema}.messages"
    if not row["table_autovacuum_on"]:
        yield Finding(
            "vacuum",
            Severity.SERIOUS,
            f"autovacuum is disabled for {table}: every claim and ack leaves a dead tuple "
            "that nothing removes",
            f"ALTER TABLE {table} RESET (autovacuum_enabled)",
        )
    elif not row["server_autovacuum_on"]:
        # Some sites vacuum from cron instead; the bloat check below says whether it works.
        yield Finding(
            "vacuum",
            Severity.WARNING,
            f"autovacuum is off on this server: {table} is cleaned only by manual VACUUM",
            "set autovacuum = on (postgresql.conf), or VACUUM the table from cron",
        )
    else:
        yield Finding("vacuum", Severity.OK, f"autovacuum is on for {table}")
    if dead >= DEAD_TUPLES_MIN and ratio >= DEAD_RATIO_WARNING:
        severity = Severity.SERIOUS if ratio >= DEAD_RATIO_SERIOUS else Severity.WARNING
        yield Finding(
            "bloat",
            severity,
            f"{dead} dead tuples, {ratio:.0%} of {table} ({when})",
            f"VACUUM (VERBOSE) {table}; if it removes little, look for long transactions",
        )
    else:
        yield Finding("bloat", Severity.OK, f"{dead} dead tuples ({ratio:.0%}), {when}")


def check_long_transactions(q: Queue, max_age_s: float) -> Iterator[Finding]:
    """Sessions that hold back the xmin horizon, so vacuum cannot clean up acked rows."""
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        rows = cur.execute(ops_queries.LONG_TRANSACTIONS, {"max_age_s": max_age_s}).fetchall()
    for r in rows:
        who = f"pid {r['pid']} ({r['usename']}, {r['application_name'] or 'no name'})"
        # 'idle in transaction' (also '... (aborted)') says it all; 'active' does not.
        state = str(r["state"] or "unknown")
        doing = state if state.startswith("idle in transaction") else f"{state} in a transaction"
        yield Finding(
            "xmin_horizon",
            Severity.SERIOUS,
            f"{who} has been {doing} for {float(r['xact_age_s']):.0f}s: vacuum cannot "
            f"remove rows deleted since it began ({r['xid_age']} transactions so far)",
            f"end it (SELECT pg_terminate_backend({r['pid']})) and fix the client; set "
            "idle_in_transaction_session_timeout",
        )
    if rows:
        return
    with translated():
        seen = q.conn.execute(ops_queries.SEES_ALL_SESSIONS).fetchone()
    if seen and seen[0]:
        yield Finding(
            "xmin_horizon",
            Severity.OK,
            f"no transaction older than {max_age_s:g}s holds back vacuum",
        )
        return
    # pg_stat_activity hides other roles' transactions from this one.
    yield Finding(
        "xmin_horizon",
        Severity.INFO,
        f"no transaction of this role older than {max_age_s:g}s holds back vacuum; other "
        "roles' sessions are hidden from it",
        "GRANT pg_read_all_stats TO the role pgq doctor runs as (or run it as a superuser) "
        "to check every session",
    )


def check_expired_leases(q: Queue) -> Iterator[Finding]:
    """Leases that ran out: their consumer died or is too slow; claims will hand them out."""
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        row = cur.execute(q.compose(ops_queries.EXPIRED_LEASES)).fetchone()
    expired = int(row["expired"]) if row else 0
    if expired:
        assert row is not None
        yield Finding(
            "expired_leases",
            Severity.WARNING,
            f"{expired} lease(s) ran out, the oldest {float(row['oldest_s']):.0f}s ago: "
            "consumers died or are slower than their --vt",
            "pgq requeue --expired returns them now; raise --vt or use pgq extend for long work",
        )
    else:
        yield Finding("expired_leases", Severity.OK, "no expired leases waiting")


def check_replication(q: Queue) -> Iterator[Finding]:
    """Standby lag, whether commits wait for a standby, and slots that hold back vacuum.

    A server with no standby, no synchronous_standby_names and no slot holding xmin has
    nothing to report here, and reports nothing.
    """
    with translated(), q.conn.cursor(row_factory=dict_row) as cur:
        settings = cur.execute(ops_queries.REPLICATION_SETTINGS).fetchone()
        assert settings is not None
        slots = cur.execute(ops_queries.SLOTS_HOLDING_XMIN).fetchall()
        if settings["standby"]:
            replay = cur.execute(ops_queries.STANDBY_REPLAY).fetchone()
            standbys: list[dict[str, Any]] = []
        else:
            replay = None
            standbys = cur.execute(ops_queries.STANDBYS).fetchall()
        seen = cur.execute(ops_queries.SEES_ALL_SESSIONS).fetchone()
    sees_all = bool(seen and seen["pg_has_role"])
    if replay is not None:
        yield _standby_finding(replay)
    else:
        yield from _standby_lag_findings(standbys, sees_all)
        yield from _synchronous_commit_findings(settings, standbys, sees_all)
    yield from _slot_findings(q, slots)


def _standby_finding(replay: dict[str, Any]) -> Finding:
    age = replay["replay_age_s"]
    replayed = (
        "nothing replayed yet" if age is None
        else f"last transaction replayed {float(age):.0f}s ago"
    )
    standby = "this server is a standby (read-only: send, claim and ack need the primary)"
    if not replay["streaming"]:
        return Finding(
            "standby_lag",
            Severity.WARNING,
            f"{standby}, not streaming from its primary; {replayed}",
            "check primary_conninfo and the standby's log; pgq doctor on the primary "
            "shows its standbys",
        )
    if not replay["caught_up"] and age is not None and float(age) > MAX_REPLICATION_LAG_S:
        return Finding(
            "standby_lag",
            Severity.WARNING,
            f"{standby}, {replayed} with WAL still to replay: it lags the primary",
            "look for long queries on the standby (replay conflicts) or I/O saturation",
        )
    caught_up = "all received WAL replayed" if replay["caught_up"] else "replaying"
    return Finding("standby_lag", Severity.OK, f"{standby}, streaming; {replayed}, {caught_up}")


def _standby_lag_findings(standbys: list[dict[str, Any]], sees_all: bool) -> Iterator[Finding]:
    if standbys and not sees_all:
        yield Finding(
            "standby_lag",
            Severity.INFO,
            f"{len(standbys)} standby(s) connected; their state and lag are hidden from "
            "this role",
            "GRANT pg_monitor TO the role pgq doctor runs as (the monitor role of "
            "pgq migrate --print-grants has it)",
        )
        return
    for standby in standbys:
        name = standby["application_name"] or "unnamed"
        lag_s = standby["replay_lag_s"]
        lag_bytes = standby["replay_lag_bytes"]
        lag = (
            f"replay lag {float(lag_s or 0):.1f}s, "
            f"{int(lag_bytes or 0) / 1_048_576:.1f} MiB of WAL behind"
        )
        where = f"standby {name!r} ({standby['sync_state']})"
        if standby["state"] != "streaming":
            yield Finding(
                "standby_lag",
                Severity.WARNING,
                f"{where} is {standby['state']}, not streaming; {lag}",
                "watch it catch up; if it does not, check the standby's log",
            )
        elif lag_s is not None and float(lag_s) > MAX_REPLICATION_LAG_S:
            yield Finding(
                "standby_lag",
                Severity.WARNING,
                f"{where} lags: {lag}; a failover now would lose what it has not received",
                "look at the standby's I/O and the network, and at long queries on it",
            )
        else:
            yield Finding("standby_lag", Severity.OK, f"{where} streaming; {lag}")


def _synchronous_commit_findings(
    settings: dict[str, Any], standbys: list[dict[str, Any]], sees_all: bool
) -> Iterator[Finding]:
    names = str(settings["synchronous_standby_names"])
    commit = str(settings["synchronous_commit"])
    if not names:
        if standbys:
            yield Finding(
                "synchronous_commit",
                Severity.WARNING,
                "replication is asynchronous (synchronous_standby_names is empty): a send "
                "the primary acknowledged may not have reached any standby yet, and a "
                "failover then loses it",
                "set synchronous_standby_names = 'ANY 1 (<standby names>)' and "
                "synchronous_commit = on, then SELECT pg_reload_conf()",
            )
        return
    if commit in COMMIT_WAITS_FOR_NO_STANDBY:
        yield Finding(
            "synchronous_commit",
            Severity.WARNING,
            f"synchronous_commit = {commit}: commits do not wait for the synchronous "
            f"standby ({names!r}), so a failover can lose acknowledged sends",
            "synchronous_commit = on (or remote_apply) for pgq's roles: "
            "ALTER ROLE <role> SET synchronous_commit = on",
        )
        return
    if not sees_all:
        yield Finding(
            "synchronous_commit",
            Severity.INFO,
            f"commits wait for a synchronous standby ({names!r}, synchronous_commit = "
            f"{commit}); whether one is connected is hidden from this role",
            "GRANT pg_monitor TO the role pgq doctor runs as",
        )
        return
    synchronous = [s["application_name"] for s in standbys if s["sync_state"] in ("sync", "quorum")]
    if not synchronous:
        yield Finding(
            "synchronous_commit",
            Severity.SERIOUS,
            f"synchronous_standby_names = {names!r} but no synchronous standby is connected: "
            "every commit (send, claim, ack) waits for one",
            "bring the standby back; on a promoted standby or a primary left alone, clear it: "
            "ALTER SYSTEM RESET synchronous_standby_names; SELECT pg_reload_conf()",
        )
        return
    yield Finding(
        "synchronous_commit",
        Severity.OK,
        f"synchronous replication: commits wait for {', '.join(map(repr, synchronous))} "
        f"(synchronous_commit = {commit})",
    )


def _slot_findings(q: Queue, slots: list[dict[str, Any]]) -> Iterator[Finding]:
    table = f"{q.schema}.messages"
    for slot in slots:
        name = slot["slot_name"]
        held = (
            f"replication slot {name!r} ({'active' if slot['active'] else 'inactive'}) holds "
            f"back xmin by {int(slot['xmin_age'])} transactions"
        )
        wal = f"{int(slot['retained_bytes'] or 0) / 1_048_576:.1f} MiB of WAL kept"
        if slot["active"]:
            # A standby with hot_standby_feedback: its oldest query is the horizon here.
            yield Finding(
                "replication_slots",
                Severity.OK,
                f"{held} for the queries on its standby (hot_standby_feedback); {wal}",
            )
        else:
            yield Finding(
                "replication_slots",
                Severity.SERIOUS,
                f"{held}: nothing consumes it, so vacuum cannot remove acked messages from "
                f"{table} (or any other table) and {wal}",
                f"bring its standby back, or drop it: SELECT pg_drop_replication_slot({name!r})",
            )
