"""Failover without losing a message, on a real primary and synchronous standby
(tests/helpers_failover.py): the primary is killed (`pg_ctl stop -m immediate`), the standby
promoted, and clients on one multi-host DSN carry on.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest
from conftest import Cli
from helpers import assert_failed
from helpers_failover import FailoverPair

from pgq_cli.core import connect, reconnect
from pgq_cli.core.queue import Queue

pytestmark = pytest.mark.slow


@pytest.fixture
def pair() -> Iterator[FailoverPair]:
    with FailoverPair() as built:
        yield built


def _dial(dsn: str, name: str) -> reconnect.Connection:
    return connect.connect(connect.resolve(dsn), name)


def _connected_port(dsn: str) -> int:
    """The port `pgq info` says it connected to (libpq picked it from the DSN's hosts)."""
    shown = Cli(dsn)("info", "--json")
    assert shown.exit_code == 0, shown.stderr
    return int(json.loads(shown.stdout)["port"])


def test_multi_host_dsn_follows_the_primary_through_a_failover(pair: FailoverPair) -> None:
    dsn = pair.migrated_database()
    before = Cli(dsn)("send", "-q", "jobs", '{"n": 1}')
    assert before.exit_code == 0, before.stderr
    assert _connected_port(dsn) == pair.primary_port
    # The standby inherited synchronous_standby_names from the base backup.
    assert pair.standby_setting("synchronous_standby_names") == "*"

    pair.kill_primary()
    # No primary: the standby refuses read-write sessions, so a one-shot command exits 69.
    during = Cli(dsn)("send", "-q", "jobs", '{"n": 2}')
    assert "could not connect" in assert_failed(during, 69)

    pair.promote_standby()
    assert pair.standby_setting("synchronous_standby_names") == ""
    assert _connected_port(dsn) == pair.standby_port
    after = Cli(dsn)("send", "-q", "jobs", '{"n": 3}')
    assert after.exit_code == 0, after.stderr
    claimed = Cli(dsn)("claim", "-q", "jobs", "-n", "10", "--json")
    assert claimed.exit_code == 0, claimed.stderr
    # Synchronous replication: the send acknowledged before the crash is on the new primary.
    ids = [json.loads(line)["msg_id"] for line in claimed.stdout.splitlines()]
    assert ids == [int(before.stdout), int(after.stdout)]


def test_a_retried_send_with_its_dedup_key_makes_no_duplicate_across_a_failover(
    pair: FailoverPair,
) -> None:
    dsn = pair.migrated_database()
    with _dial(dsn, "producer") as conn:
        first = Queue(conn).send_deduplicated('{"order": 7}', dedup_key="order-7")
    assert first.created
    pair.kill_primary()
    pair.promote_standby()
    # The producer never saw an answer it trusted (say it got exit 69): it sends again.
    retried = Cli(dsn)("send", "--dedup-key", "order-7", '{"order": 7}')
    assert retried.exit_code == 0, retried.stderr
    assert int(retried.stdout) == first.msg_id
    assert "nothing sent" in retried.stderr
    with _dial(dsn, "check") as conn:
        assert conn.execute("SELECT msg_id FROM pgq.messages").fetchall() == [(first.msg_id,)]


# ----------------------------------------------------------------------------- the scenario

MESSAGES = 150
KILL_AFTER_SENT = 50
VT_S = 5.0
RECONNECT_TIMEOUT_S = 60.0
# The consumer's command: record the message it was given and when (CLOCK_MONOTONIC is one
# clock for every process on the machine, so the test can compare it with its own).
RECORD = (
    "import os, sys, time\n"
    "with open(sys.argv[1], 'a') as out:\n"
    "    out.write(f\"{os.environ['PGQ_MSG_ID']} {time.monotonic()}\\n\")\n"
)


@dataclass
class Run:
    """What the producer saw, shared with the test's thread."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    sent: dict[int, int] = field(default_factory=dict)  # message number -> msg_id
    reconnects: Counter[str] = field(default_factory=Counter)
    errors: list[BaseException] = field(default_factory=list)
    producer_done: threading.Event = field(default_factory=threading.Event)


def _producer(dsn: str, run: Run) -> None:
    """Send MESSAGES messages, each with its own dedup key; on a lost connection reconnect
    and send the same message again (the key makes the retry harmless)."""

    def produce(conn: reconnect.Connection) -> None:
        queue = Queue(conn)
        while len(run.sent) < MESSAGES:
            number = len(run.sent)
            payload = json.dumps({"n": number})
            msg_id = queue.send(payload, queue="orders", dedup_key=f"order-{number}")
            with run.lock:
                run.sent[number] = msg_id
            time.sleep(0.01)

    def lost(_: Exception) -> None:
        run.reconnects["producer"] += 1

    try:
        reconnect.run_reconnecting(lambda: _dial(dsn, "producer"), produce,
                                   timeout_s=RECONNECT_TIMEOUT_S, on_reconnect=lost)
    except BaseException as exc:
        run.errors.append(exc)
    finally:
        run.producer_done.set()


def _start_worker(pgq_bin: str, dsn: str, record: Path, log: IO[bytes]) -> subprocess.Popen[bytes]:
    """`pgq work` as a user runs it: one message at a time (so at most one lease is live at
    any instant), a 5 s lease, reconnecting for up to a minute."""
    argv = [
        pgq_bin, "work", "-q", "orders", "--vt", "5s", "--wait", "1s",
        "--reconnect-timeout", f"{RECONNECT_TIMEOUT_S:g}s", "-v",
        "--", sys.executable, "-c", RECORD, str(record),
    ]
    env = {**os.environ, "PGQ_DSN": dsn}
    return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env)


def _processed(record: Path) -> list[tuple[int, float]]:
    """(msg_id, monotonic) for each run of the command, in order; a half-written last line
    (the command is writing it now) is left for the next look."""
    if not record.exists():
        return []
    rows = []
    for line in record.read_text().splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((int(parts[0]), float(parts[1])))
    return rows


def test_failover_mid_stream_loses_no_message_and_pgq_work_recovers_by_itself(
    pair: FailoverPair, pgq_bin: str, tmp_path: Path
) -> None:
    dsn = pair.migrated_database()
    record = tmp_path / "processed.txt"
    run = Run()
    producer = threading.Thread(target=_producer, args=(dsn, run), name="producer")
    with (tmp_path / "work.log").open("wb") as log:
        worker = _start_worker(pgq_bin, dsn, record, log)
        producer.start()

        def worker_said() -> str:
            return (tmp_path / "work.log").read_text()[-3000:]

        try:
            deadline = time.monotonic() + 60
            while len(run.sent) < KILL_AFTER_SENT or not _processed(record):
                assert time.monotonic() < deadline and not run.errors, run.errors
                assert worker.poll() is None, worker_said()
                time.sleep(0.01)
            killed_at = time.monotonic()
            pair.kill_primary()
            time.sleep(1)  # the clients notice and retry against a cluster with no primary
            pair.promote_standby()
            assert pair.promoted_at is not None
            assert run.producer_done.wait(90), "the producer never finished"
            assert not run.errors, run.errors
            # pgq work catches up alone, including what was leased at the crash (that comes
            # back after VT): until every message is processed and the queue is empty.
            deadline = time.monotonic() + 60
            with _dial(dsn, "check") as check:
                while not (
                    {msg_id for msg_id, _ in _processed(record)} >= set(run.sent.values())
                    and check.execute("SELECT count(*) FROM pgq.messages").fetchone() == (0,)
                ):
                    assert time.monotonic() < deadline, (
                        "pgq work did not recover by itself:\n" + worker_said())
                    assert worker.poll() is None, worker_said()
                    time.sleep(0.05)
            # It survived the failover: still running, and it stops cleanly when asked.
            assert worker.poll() is None, worker_said()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            finally:
                if worker.poll() is None:
                    worker.kill()
                    worker.wait()
            producer.join(timeout=30)
    # 0, or 3 when a command's ack was lost in the crash (its message ran again later).
    assert worker.returncode in (0, 3), worker_said()
    assert not run.errors, run.errors

    processed_rows = _processed(record)
    sent_ids = set(run.sent.values())
    processed = Counter(msg_id for msg_id, _ in processed_rows)
    # None lost: every message send reported is processed; and no message that send did
    # not report (a retried send made no second message).
    assert len(sent_ids) == MESSAGES
    assert set(processed) == sent_ids
    # Which leases were live at the crash: pgq work holds one at a time, so it is the
    # message last started before the kill, or one started during the outage (claimed
    # before it, since nothing can be claimed with no primary).
    before_kill = [msg_id for msg_id, at in processed_rows if at < killed_at]
    live_at_crash = {msg_id for msg_id, at in processed_rows
                     if killed_at <= at < pair.promoted_at} | set(before_kill[-1:])
    duplicates = {msg_id for msg_id, count in processed.items() if count > 1}
    assert duplicates <= live_at_crash, (duplicates, live_at_crash)
    assert len(live_at_crash) <= 2, live_at_crash
    assert run.reconnects["producer"] >= 1
    with _dial(dsn, "check") as conn:
        assert conn.execute("SELECT count(*) FROM pgq.dedup_keys").fetchone() == (MESSAGES,)

    recovery_s = min(at for _, at in processed_rows if at >= pair.promoted_at) - pair.promoted_at
    report = (
        f"failover (pgq work): recovered {recovery_s:.2f} s after pg_ctl promote; "
        f"{len(duplicates)} duplicate(s) of {len(live_at_crash)} lease(s) live at the crash; "
        f"{MESSAGES} sent, {sum(processed.values())} processed; "
        f"binaries {pair.bin.parent.name}/{pair.bin.name}"
    )
    print(report)
    assert recovery_s < 30, report


def test_cli_masks_the_password_of_a_multi_host_dsn(cli: Cli) -> None:
    dsn = ("postgresql://app:s3cret-pw@127.0.0.1:1,127.0.0.1:2/db"
           "?target_session_attrs=read-write&connect_timeout=2")
    result = cli("stats", env={"PGQ_DSN": dsn})
    line = assert_failed(result, 69)
    assert "s3cret-pw" not in result.stderr, line

