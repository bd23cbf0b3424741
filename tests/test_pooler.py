"""pgq through a real PgBouncer in transaction pooling mode (tests/helpers_pgbouncer.py).

A transaction pooler hands each transaction to whichever server connection is free, so
prepared statements, session settings and LISTEN must not be relied on (pgq_cli/core/pooler.py).
These tests run the library and every command through one, and check the three.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from conftest import Cli, PgServer
from helpers_pgbouncer import PgBouncer
from psycopg import errors as pgerrors

from pgq_cli.core import connect, migrate, pooler, waiting
from pgq_cli.core.errors import ConfigError, PgqError, Temporary
from pgq_cli.core.queue import Queue
from pgq_cli.core.translate import translated


@pytest.fixture(scope="module")
def bouncer(pg_server: PgServer) -> Iterator[PgBouncer]:
    """PgBouncer with 2 server connections per database, like the issue's report."""
    with PgBouncer(pg_server.admin_dsn, pool_size=2) as running:
        yield running


@pytest.fixture
def single_connection_bouncer(pg_server: PgServer) -> Iterator[PgBouncer]:
    """PgBouncer with 1 server connection per database: every client shares it."""
    with PgBouncer(pg_server.admin_dsn, pool_size=1) as running:
        yield running


@pytest.fixture
def pooled_dsn(bouncer: PgBouncer, db_dsn: str) -> str:
    return bouncer.dsn(db_dsn)


def _pooled_connection(dsn: str) -> psycopg.Connection[Any]:
    return psycopg.connect(dsn, autocommit=True, connect_timeout=10)


def _backend_pid(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT pg_backend_pid()").fetchone()
    assert row is not None
    return int(row[0])


# -- detection and the setting -------------------------------------------------------------


def test_a_pooler_is_detected_and_a_direct_connection_is_not(
    db_dsn: str, pooled_dsn: str
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        queue = Queue(direct)
        assert queue.transaction_pooled is False
        assert direct.prepare_threshold == 5  # psycopg's default, untouched
    with _pooled_connection(pooled_dsn) as pooled:
        queue = Queue(pooled)
        assert queue.transaction_pooled is True
        assert pooled.prepare_threshold is None


def test_the_setting_overrides_detection(db_dsn: str, pooled_dsn: str) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        assert Queue(direct, pool_mode="transaction").transaction_pooled is True
        assert direct.prepare_threshold is None
    with _pooled_connection(pooled_dsn) as pooled:
        assert Queue(pooled, pool_mode="session").transaction_pooled is False
    target = connect.resolve(pooled_dsn, {"PGQ_POOLER": "none"})
    assert target.pool_mode == "none"
    with pytest.raises(ConfigError, match="PGQ_POOLER must be one of"):
        connect.resolve(pooled_dsn, {"PGQ_POOLER": "statement"})


def test_connect_sets_a_direct_session_in_its_probe_and_a_queue_on_it_does_not_probe_again(
    db_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = connect.Target(db_dsn, "--dsn")
    with connect.connect(
        target, "pgq claim", statement_timeout_ms=200, lock_timeout_ms=150
    ) as conn:
        assert _show(conn, "statement_timeout") == "200ms"
        assert _show(conn, "lock_timeout") == "150ms"
        assert _show(conn, "application_name") == "pgq claim"
        assert not issubclass(conn.cursor_factory, pooler.PerTransactionSettings)

        def probe(_: object) -> bool:
            raise AssertionError("probed the server")

        monkeypatch.setattr(pooler, "behind_pooler", probe)
        assert Queue(conn).transaction_pooled is False
        with (
            psycopg.connect(db_dsn, autocommit=True) as unknown,  # not from connect()
            pytest.raises(AssertionError, match="probed the server"),
        ):
            Queue(unknown)


def test_with_pool_mode_session_connect_sets_the_pooled_session(
    single_connection_bouncer: PgBouncer, db_dsn: str
) -> None:
    """PGQ_POOLER=session: the user says the session is theirs, so the settings go on it
    (one server connection here, so every statement sees it)."""
    target = connect.Target(single_connection_bouncer.dsn(db_dsn), "--dsn", pool_mode="session")
    with connect.connect(target, "pgq claim", statement_timeout_ms=200) as conn:
        assert not issubclass(conn.cursor_factory, pooler.PerTransactionSettings)
        assert conn.prepare_threshold == 5
        assert _show(conn, "statement_timeout") == "200ms"


def test_a_bad_pooler_setting_exits_78_before_connecting(cli: Cli) -> None:
    result = cli("stats", env={"PGQ_POOLER": "yes"})
    assert result.exit_code == 78
    assert result.stdout == ""
    assert "PGQ_POOLER must be one of auto, transaction, session, none" in result.stderr
    assert "Traceback" not in result.stderr


# -- prepared statements -------------------------------------------------------------------


def _claim_and_ack_alternately(first: Queue, second: Queue, rounds: int) -> int:
    """Both clients claim and ack in turn, sharing the pooler's server connection."""
    acked = 0
    for _ in range(rounds):
        for queue in (first, second):
            (message,) = queue.claim(qty=1)
            acked += len(queue.ack([message.msg_id], lease=message.lease))
    return acked


def test_thousands_of_claims_on_one_client_connection(
    single_connection_bouncer: PgBouncer, db_dsn: str
) -> None:
    rounds = 2000
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        Queue(direct).send_many([json.dumps({"n": n}) for n in range(2 * rounds)])
    dsn = single_connection_bouncer.dsn(db_dsn)
    with _pooled_connection(dsn) as first, _pooled_connection(dsn) as second:
        assert _backend_pid(first) == _backend_pid(second)  # one server connection
        acked = _claim_and_ack_alternately(Queue(first), Queue(second), rounds)
    assert acked == 2 * rounds
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        assert Queue(direct).stats().total == 0


def test_without_the_switch_prepared_statements_collide(
    single_connection_bouncer: PgBouncer, db_dsn: str
) -> None:
    """The control: the failure the switch prevents is real on this pooler."""
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        Queue(direct).send_many([json.dumps({"n": n}) for n in range(40)])
    dsn = single_connection_bouncer.dsn(db_dsn)
    with _pooled_connection(dsn) as first, _pooled_connection(dsn) as second:
        queues = (Queue(first, pool_mode="none"), Queue(second, pool_mode="none"))
        with pytest.raises(PgqError, match=r"prepared statement \"_pg3_\d+\" already exists"):
            _claim_and_ack_alternately(*queues, rounds=20)


def test_six_library_consumers_through_a_pool_of_two(pooled_dsn: str, db_dsn: str) -> None:
    """The issue's report: all six died after 31 of 2,000 messages."""
    total = 2000
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        sent = Queue(direct).send_many([json.dumps({"n": n}) for n in range(total)])
    acked: list[int] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def consume() -> None:
        try:
            with _pooled_connection(pooled_dsn) as conn:
                queue = Queue(conn)
                while messages := queue.claim(qty=1, vt=60):
                    done = queue.ack([m.msg_id for m in messages], lease=messages[0].lease)
                    with lock:
                        acked.extend(done)
        except BaseException as exc:
            errors.append(exc)

    consumers = [threading.Thread(target=consume) for _ in range(6)]
    for consumer in consumers:
        consumer.start()
    for consumer in consumers:
        consumer.join(timeout=300)
    assert errors == []
    assert sorted(acked) == sorted(sent)  # each message acked exactly once


# -- session settings ----------------------------------------------------------------------


def _show(conn: psycopg.Connection[Any], setting: str) -> str:
    row = conn.execute(
        "SELECT current_setting(%s)", (setting,)
    ).fetchone()
    assert row is not None
    return str(row[0])


def test_settings_apply_to_this_client_and_do_not_leak_to_others(
    single_connection_bouncer: PgBouncer, db_dsn: str
) -> None:
    dsn = single_connection_bouncer.dsn(db_dsn)
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        server_defaults = {
            name: _show(direct, name)
            for name in ("statement_timeout", "lock_timeout", "application_name")
        }
    target = connect.Target(dsn, "--dsn")
    with connect.connect(
        target, "pgq claim", statement_timeout_ms=200, lock_timeout_ms=150
    ) as client_a, _pooled_connection(dsn) as client_b:
        assert _backend_pid(client_a) == _backend_pid(client_b)  # the same server connection
        for _ in range(3):  # in turns, so each statement follows the other client's
            assert _show(client_a, "statement_timeout") == "200ms"
            assert _show(client_a, "lock_timeout") == "150ms"
            assert _show(client_a, "application_name") == "pgq claim"
            for name, default in server_defaults.items():
                assert _show(client_b, name) == default, name
        # The timeout is in force for A's statements, not only visible...
        with pytest.raises(pgerrors.QueryCanceled):
            client_a.execute("SELECT pg_sleep(1)")
        # ...and B, on the same server connection right after, runs without it.
        client_b.execute("SELECT pg_sleep(0.3)")
        # Inside an explicit transaction too.
        with client_a.transaction():
            assert _show(client_a, "statement_timeout") == "200ms"
        assert _show(client_b, "statement_timeout") == server_defaults["statement_timeout"]


def test_a_lock_timeout_through_the_pooler_exits_75(
    pooled_dsn: str, db_dsn: str, cli: Cli
) -> None:
    with psycopg.connect(db_dsn, autocommit=True) as direct:
        msg_id = Queue(direct).send("{}")
        with direct.transaction():
            direct.execute("SELECT 1 FROM pgq.messages WHERE msg_id = %s FOR UPDATE", (msg_id,))
            started = time.monotonic()
            result = cli("ack", str(msg_id), env={"PGQ_DSN": pooled_dsn})
            elapsed = time.monotonic() - started
    assert result.exit_code == 75, result.stderr
    assert elapsed < connect.DEFAULT_STATEMENT_TIMEOUT_MS / 1000  # the lock timeout, not 30 s


# -- waiting -------------------------------------------------------------------------------


def _send_later(dsn: str, delay_s: float, sent_at: list[float]) -> threading.Thread:
    def send() -> None:
        time.sleep(delay_s)
        with psycopg.connect(dsn, autocommit=True) as conn:
            Queue(conn, pool_mode="none").send('{"late": true}')
        sent_at.append(time.monotonic())

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_claim_wait_through_the_pooler_claims_within_the_poll_interval(
    pooled_dsn: str, db_dsn: str, cli: Cli
) -> None:
    sent_at: list[float] = []
    sender = _send_later(db_dsn, 0.5, sent_at)
    result = cli("claim", "--wait", "10", "--json", env={"PGQ_DSN": pooled_dsn})
    returned_at = time.monotonic()
    sender.join()
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["payload"] == {"late": True}
    assert returned_at - sent_at[0] < waiting.DEFAULT_POLL_S + 0.5


def test_behind_a_pooler_waiting_polls_and_does_not_listen(db_dsn: str) -> None:
    """On a direct connection a NOTIFY wakes a waiting claim at once; told it is pooled,
    the claim ignores it and finds the message only at its next poll."""
    poll_s = 3.0
    for pool_mode in ("none", "transaction"):
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            queue = Queue(conn, pool_mode=pool_mode)
            sent_at: list[float] = []
            started = time.monotonic()
            sender = _send_later(db_dsn, 0.3, sent_at)  # after the first, empty, claim
            found = queue.claim(wait=10, poll=poll_s)
            returned_at = time.monotonic()
            sender.join()
        assert len(found) == 1, pool_mode
        assert sent_at[0] < started + poll_s - 1, "the sender was too slow to tell"
        if pool_mode == "none":
            assert returned_at - sent_at[0] < poll_s / 2  # woken by the NOTIFY
        else:
            assert returned_at - started >= poll_s * 0.95  # at the poll, not before


def _listening_channels(pooled_dsn: str) -> list[str]:
    """The channels the pool's one server connection listens on: what a LISTEN from any
    client of the pool leaves behind for all the others."""
    with _pooled_connection(pooled_dsn) as conn:
        return [row[0] for row in conn.execute("SELECT pg_listening_channels()")]


@pytest.mark.parametrize("pooler_setting", ["auto", "none"])
def test_work_wait_through_the_pooler_polls_and_processes_what_is_sent_meanwhile(
    single_connection_bouncer: PgBouncer, db_dsn: str, pgq_bin: str, pooler_setting: str
) -> None:
    """`pgq work --wait` through a transaction pooler issues no LISTEN (detected), and
    still finds a message sent while it waits. Told there is no pooler, it does LISTEN,
    and the channel shows up for every client of the pool: the check can tell."""
    pooled_dsn = single_connection_bouncer.dsn(db_dsn)
    env = {**os.environ, "PGQ_DSN": pooled_dsn, "PGQ_POOLER": pooler_setting}
    worker = subprocess.Popen(
        [pgq_bin, "work", "-q", "default", "--wait", "5s", "--until-empty", "-v", "--", "true"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    try:
        time.sleep(1.5)  # it has made its first, empty, claim and is waiting
        assert worker.poll() is None, worker.communicate()
        channels = _listening_channels(pooled_dsn)
        with psycopg.connect(db_dsn, autocommit=True) as conn:
            msg_id = Queue(conn, pool_mode="none").send('{"late": true}')
        stdout, stderr = worker.communicate(timeout=30)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
    assert worker.returncode == 0, stderr
    assert stdout == b""
    assert f"msg {msg_id} " in stderr.decode() and "acked" in stderr.decode()
    with psycopg.connect(db_dsn, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM pgq.messages").fetchone() == (0,)
    if pooler_setting == "auto":
        assert channels == []
    else:
        assert channels != [], "a LISTEN through the pooler should have been visible"


# -- every command -------------------------------------------------------------------------


def test_every_command_works_through_the_pooler(
    bouncer: PgBouncer, empty_db_dsn: str, tmp_path: Any
) -> None:
    run = Cli(bouncer.dsn(empty_db_dsn))

    def ok(*args: str, input: str | None = None) -> str:
        result = run(*args, input=input)
        assert result.exit_code == 0, (args, result.stderr)
        return result.stdout

    ok("migrate")
    assert "0001" in ok("migrate", "--list")
    first = int(ok("send", "--priority", "9", '{"job": 1}'))
    batch = tmp_path / "jobs.ndjson"
    batch.write_text("".join(json.dumps({"job": n}) + "\n" for n in range(2, 6)))
    assert len(ok("send", "-f", str(batch)).split()) == 4
    assert len(ok("send", "--delay", "3600", "{}").split()) == 1
    claimed = json.loads(ok("claim", "--json"))
    assert claimed["msg_id"] == first
    lease = claimed["lease"]
    assert json.loads(ok("extend", str(first), "--vt", "120", "--lease", lease, "--json"))
    ok("requeue", str(first), "--lease", lease)
    again = [json.loads(line) for line in ok("claim", "-n", "2", "--json").splitlines()]
    assert again[0]["msg_id"] == first
    for message in again:
        ok("ack", str(message["msg_id"]), "--lease", message["lease"])
    assert len(ok("peek", "--json", "--state", "all").splitlines()) == 4
    ok("requeue", "--expired")
    assert json.loads(ok("stats", "--json").splitlines()[0])["queue"] == "default"
    assert "pgq_messages" in ok("stats", "--format", "prometheus")
    assert ok("stats", "--estimate", "--json")
    assert json.loads(ok("queues", "--json"))["queue"] == "default"
    ok("queue", "config", "default", "--max-deliveries", "3")
    ok("pause", "default")
    assert ok("claim") == ""
    ok("resume", "default")
    ok("requeue", "--dead", "--all")
    ok("purge", "default", "--state", "delayed")
    ok("purge", "default", "--all", "--dry-run")
    doctor = run("doctor", "--json")
    assert doctor.exit_code in (0, 3), doctor.stderr
    assert "schema" in doctor.stdout
    assert "ready" in ok("watch", "--once", "--json")
    assert json.loads(ok("claim", "--wait", "1", "--json"))["payload"]["job"] == 3
    bench = json.loads(ok("bench", "--inflight", "0,100", "--samples", "5", "--messages", "50",
                          "--consumers", "2", "--json").splitlines()[-1])
    assert bench


def test_migrate_through_the_pooler_is_idempotent(bouncer: PgBouncer, empty_db_dsn: str) -> None:
    """Migrations take a transaction-scoped advisory lock, which a pooler cannot split."""
    dsn = bouncer.dsn(empty_db_dsn)
    with _pooled_connection(dsn) as conn:
        assert migrate.migrate(conn, "pgq")
        assert not migrate.migrate(conn, "pgq")


def test_pooled_cursors_leave_prepare_off(pooled_dsn: str) -> None:
    target = connect.Target(pooled_dsn, "--dsn")
    with connect.connect(target, "pgq stats") as conn:
        assert conn.prepare_threshold is None
        assert pooler.transaction_pooled(conn)
        for _ in range(10):
            conn.execute("SELECT 1")
        assert conn.execute("SELECT count(*) FROM pg_prepared_statements").fetchone() == (0,)


def test_commands_that_cannot_run_in_a_transaction_still_run(pooled_dsn: str) -> None:
    """VACUUM refuses a transaction block, so it runs without the per-transaction
    settings rather than not at all."""
    target = connect.Target(pooled_dsn, "--dsn")
    with connect.connect(target, "pgq bench") as conn:
        assert conn.execute("VACUUM pgq.messages").statusmessage == "VACUUM"
        # The statements around it still carry the settings.
        assert _show(conn, "application_name") == "pgq bench"


def test_a_statement_timeout_through_the_pooler_is_temporary(pooled_dsn: str) -> None:
    target = connect.Target(pooled_dsn, "--dsn")
    with connect.connect(target, "pgq claim", statement_timeout_ms=100) as conn:
        queue = Queue(conn, pool_mode="auto")
        assert queue.transaction_pooled
        with pytest.raises(Temporary), translated():
            conn.execute("SELECT pg_sleep(1)")
