"""Faults: a consumer killed before commit, a CLI killed after commit, a server restart.

The restart tests run on a private server the test owns (helpers_server), never on the
shared one: PGQ_TEST_DSN may be this machine's own PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers_server import RestartableServer

from pgq_cli.core.errors import ConnectFailed
from pgq_cli.core.queue import Queue


def _rows(conn: psycopg.Connection[Any], ids: list[int]) -> dict[int, tuple[Any, ...]]:
    rows = conn.execute(
        "SELECT msg_id, state, read_ct, lease FROM pgq.messages WHERE msg_id = ANY(%s)", (ids,)
    ).fetchall()
    return {int(r[0]): tuple(r[1:]) for r in rows}


def _wait_until(predicate: Any, timeout_s: float = 30, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


# ------------------------------------------------------------ consumer killed before commit


def test_consumer_killed_before_commit_leaves_messages_claimable_at_once(
    db_dsn: str, q: Queue
) -> None:
    ids = q.send_many([json.dumps({"n": i}) for i in range(5)])
    victim = psycopg.connect(db_dsn)  # not autocommit: the claim stays in an open transaction
    try:
        claimed = Queue(victim).claim(qty=5, vt=300)
        assert [m.msg_id for m in claimed] == ids
        # Still uncommitted: the rows are locked, so another consumer skips them.
        assert q.claim(qty=5) == []
        q.conn.execute("SELECT pg_terminate_backend(%s)", (victim.info.backend_pid,))
        _wait_until(lambda: q.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (victim.info.backend_pid,)
        ).fetchone() == (0,), what="the killed backend to exit")
    finally:
        victim.close()
    # Rolled back: ready again, read_ct unchanged, no lease; claimable at once (no vt wait).
    assert _rows(q.conn, ids) == {i: ("ready", 0, None) for i in ids}
    again = q.claim(qty=5, vt=30)
    assert [m.msg_id for m in again] == ids
    assert {m.read_ct for m in again} == {1}


# ---------------------------------------------------------------- CLI killed after commit


def test_cli_killed_after_commit_keeps_the_lease_until_vt_then_redelivers(
    db_dsn: str, q: Queue, pgq_bin: str
) -> None:
    count = 2000
    # Enough output to fill the pipe, which the test never reads: the CLI blocks writing
    # after its claim committed, so it is certainly alive when it is killed.
    ids = q.send_many([json.dumps({"pad": "x" * 100, "n": i}) for i in range(count)])
    env = {**os.environ, "PGQ_DSN": db_dsn}
    proc = subprocess.Popen(
        [pgq_bin, "claim", "-n", str(count), "--vt", "3", "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        _wait_until(lambda: q.conn.execute(
            "SELECT count(*) FROM pgq.messages WHERE state = 'leased'"
        ).fetchone() == (count,), what="the CLI's claim to commit")
        assert proc.poll() is None, "the CLI exited before it could be killed"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        assert proc.stdout is not None
        proc.stdout.close()
    until_vt = q.conn.execute(
        "SELECT extract(epoch FROM max(vt) - now()) FROM pgq.messages WHERE state = 'leased'"
    ).fetchone()
    assert until_vt is not None and until_vt[0] > 0
    # Invisible until vt: nobody else can claim them, nothing was acked.
    assert q.claim(qty=count, vt=30) == []
    rows = _rows(q.conn, ids)
    assert len(rows) == count
    assert {r[:2] for r in rows.values()} == {("leased", 1)}
    # After vt: every one comes back, once, with read_ct 2 and a new lease.
    time.sleep(float(until_vt[0]) + 0.2)
    again = q.claim(qty=count, vt=30)
    assert sorted(m.msg_id for m in again) == ids
    assert {m.read_ct for m in again} == {2}
    assert not {m.lease for m in again} & {r[2] for r in rows.values()}


# ------------------------------------------------------------------------- server restart


@pytest.fixture(scope="module")
def server() -> Iterator[RestartableServer]:
    with RestartableServer() as own:
        yield own


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_server_restart_keeps_committed_leases_and_rolls_back_open_claims(
    server: RestartableServer, mode: str
) -> None:
    dsn = server.migrated_database()
    with psycopg.connect(dsn, autocommit=True) as setup:
        ids = Queue(setup).send_many([json.dumps({"n": i}) for i in range(100)])
        committed = Queue(setup).claim(qty=10, vt=300)
    open_claim_conn = psycopg.connect(dsn)  # its claim will never commit
    try:
        open_claim = Queue(open_claim_conn).claim(qty=10, vt=300)
        assert not {m.msg_id for m in open_claim} & {m.msg_id for m in committed}

        server.stop(mode)
        during = Cli(dsn)("stats")
        assert during.exit_code == 69, during.stderr
        assert during.stdout == ""
        assert len(during.stderr.strip().splitlines()) == 1
        assert during.stderr.startswith("pgq: error:")
        server.start()

        # The consumer whose transaction was open finds its connection gone: exit 69 class.
        with pytest.raises(ConnectFailed):
            Queue(open_claim_conn).ack([open_claim[0].msg_id])
    finally:
        open_claim_conn.close()

    after = Cli(dsn)("stats", "--json")
    assert after.exit_code == 0, after.stderr
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = _rows(conn, ids)
        assert len(rows) == 100, "a message was lost"
        for m in committed:  # committed leases survive, token and all
            assert rows[m.msg_id] == ("leased", 1, m.lease)
        for m in open_claim:  # the open claim rolled back
            assert rows[m.msg_id] == ("ready", 0, None)
        # The committed lease still fences and still acks.
        queue = Queue(conn)
        assert queue.ack([committed[0].msg_id], lease=committed[0].lease) == [committed[0].msg_id]
        remaining = queue.claim(qty=200, vt=30)
        assert len(remaining) == 100 - 10


@pytest.mark.slow
def test_a_command_in_flight_when_the_server_stops_exits_69_with_one_line(
    server: RestartableServer, pgq_bin: str
) -> None:
    dsn = server.migrated_database()
    env = {**os.environ, "PGQ_DSN": dsn}
    # --reconnect-timeout 0: the one-shot behaviour (test_reconnect.py has the retrying one).
    proc = subprocess.Popen([pgq_bin, "claim", "--wait", "60", "--reconnect-timeout", "0"],
                            env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        with psycopg.connect(dsn, autocommit=True) as watcher:
            _wait_until(lambda: watcher.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgq claim'"
            ).fetchone() == (1,), what="the waiting claim to connect")
        server.stop("fast")
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.start()
    assert proc.returncode == 69, err
    assert out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("pgq: error: ")
    assert "Traceback" not in err
