"""`pgq doctor` on a real primary and streaming standby (tests/helpers_replication.py).

The pair is built once for the module (initdb, pg_basebackup); the tests run in order:
asynchronous, then synchronous, then with the standby gone.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers_replication import SLOT, ReplicatedPair, wait_until


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicatedPair]:
    with ReplicatedPair() as running:
        yield running


@pytest.fixture(scope="module")
def primary_dsn(pair: ReplicatedPair) -> str:
    """A migrated database on the primary, present on the standby too."""
    dsn = pair.migrated_database()
    standby = pair.standby_dsn(dsn)

    def replicated() -> bool:
        try:
            with psycopg.connect(standby, connect_timeout=5) as conn:
                return conn.execute("SELECT to_regclass('pgq.messages')").fetchone() != (None,)
        except psycopg.OperationalError:
            return False  # the database is not there yet

    wait_until(replicated, "the database to reach the standby")
    return dsn


def doctor(dsn: str) -> tuple[int, dict[str, list[dict[str, Any]]]]:
    """Exit code and findings by check."""
    result = Cli(dsn)("doctor", "--json")
    by_check: dict[str, list[dict[str, Any]]] = {}
    for line in result.stdout.splitlines():
        finding = json.loads(line)
        by_check.setdefault(finding["check"], []).append(finding)
    return result.exit_code, by_check


def test_primary_with_an_asynchronous_standby(pair: ReplicatedPair, primary_dsn: str) -> None:
    code, found = doctor(primary_dsn)
    assert code == 0
    (lag,) = found["standby_lag"]
    assert lag["severity"] == "ok"
    assert "(async) streaming; replay lag" in lag["summary"]
    (commit,) = found["synchronous_commit"]
    assert commit["severity"] == "warning"
    assert "replication is asynchronous" in commit["summary"]
    assert "failover then loses it" in commit["summary"]
    assert "synchronous_standby_names" in commit["fix"]


def test_the_standby_reports_its_replay(pair: ReplicatedPair, primary_dsn: str) -> None:
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO pgq.messages (queue, payload) VALUES ('r', '{}')")
    code, found = doctor(pair.standby_dsn(primary_dsn))
    (lag,) = found["standby_lag"]
    assert lag["severity"] == "ok", lag
    assert lag["summary"].startswith("this server is a standby (read-only")
    assert "streaming; last transaction replayed" in lag["summary"]
    assert "synchronous_commit" not in found  # a standby's commits wait for nobody
    assert code == 0


def test_synchronous_replication_and_synchronous_commit_local(
    pair: ReplicatedPair, primary_dsn: str
) -> None:
    pair.set_primary("synchronous_standby_names", "*")

    def synchronous() -> bool:
        with psycopg.connect(pair.admin_dsn) as conn:
            row = conn.execute("SELECT sync_state FROM pg_stat_replication").fetchone()
        return row == ("sync",)

    wait_until(synchronous, "the standby to become synchronous")
    code, found = doctor(primary_dsn)
    assert code == 0
    assert found["synchronous_commit"] == [{
        "check": "synchronous_commit",
        "severity": "ok",
        "summary": "synchronous replication: commits wait for 'walreceiver' "
        "(synchronous_commit = on)",
        "fix": "",
    }]
    (lag,) = found["standby_lag"]
    assert "standby 'walreceiver' (sync) streaming" in lag["summary"]
    with psycopg.connect(primary_dsn, autocommit=True) as conn:
        conn.execute("ALTER ROLE postgres IN DATABASE " + conn.info.dbname
                     + " SET synchronous_commit = local")
    try:
        _, found = doctor(primary_dsn)
    finally:
        with psycopg.connect(primary_dsn, autocommit=True) as conn:
            conn.execute("ALTER ROLE postgres IN DATABASE " + conn.info.dbname
                         + " RESET synchronous_commit")
    (commit,) = found["synchronous_commit"]
    assert commit["severity"] == "warning"
    assert commit["summary"].startswith("synchronous_commit = local: commits do not wait")


def test_standby_gone_its_slot_holds_back_vacuum_and_commits_would_hang(
    pair: ReplicatedPair, primary_dsn: str
) -> None:
    """Last: stops the standby. synchronous_standby_names is still '*' from the test above,
    as on a primary whose synchronous standby died (or a promoted standby that inherited
    it through pg_basebackup's copy of postgresql.auto.conf)."""

    def slot_xmin() -> bool:
        with psycopg.connect(pair.admin_dsn) as conn:
            row = conn.execute(
                "SELECT xmin IS NOT NULL FROM pg_replication_slots WHERE slot_name = %s",
                (SLOT,),
            ).fetchone()
        return row == (True,)

    # hot_standby_feedback reaches the slot within wal_receiver_status_interval (10 s).
    wait_until(slot_xmin, "the standby's feedback to set the slot's xmin")
    _, found = doctor(primary_dsn)
    (active,) = found["replication_slots"]
    assert active["severity"] == "ok"
    assert active["summary"].startswith(f"replication slot {SLOT!r} (active) holds back xmin")

    pair.stop_standby()
    try:
        code, found = doctor(primary_dsn)
    finally:
        pair.set_primary("synchronous_standby_names", None)
    assert code == 3
    (commit,) = found["synchronous_commit"]
    assert commit["severity"] == "serious"
    assert "no synchronous standby is connected" in commit["summary"]
    assert "ALTER SYSTEM RESET synchronous_standby_names" in commit["fix"]
    (slot,) = found["replication_slots"]
    assert slot["severity"] == "serious"
    assert slot["summary"].startswith(f"replication slot {SLOT!r} (inactive) holds back xmin")
    assert "vacuum cannot remove acked messages from pgq.messages" in slot["summary"]
    assert slot["fix"].endswith(f"SELECT pg_drop_replication_slot({SLOT!r})")
    assert "standby_lag" not in found  # no standby connected, nothing to report lag of
    # The fix works: with the slot dropped, nothing holds vacuum back.
    with psycopg.connect(pair.admin_dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_drop_replication_slot(%s)", (SLOT,))
    code, found = doctor(primary_dsn)
    assert "replication_slots" not in found
    assert code == 0
