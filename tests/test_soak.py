"""Soak with faults: consumer processes claim -> work -> ack while the test kills some of
them and restarts the server twice; at the end the counts reconcile exactly.

Size: PGQ_SOAK_MESSAGES (default 100,000). Runs on a private server the test owns.

Each consumer is this file run as a script: it claims a batch with `Queue.claim` (the lease
commits at once) and logs the delivery, then does its "work" and acks in ONE transaction:
for each message a fenced `Queue.ack(id, lease=...)` plus a row in soak_done (primary key
msg_id). So a message counts as done exactly when its ack committed, whatever is killed
when. After a reconnect a consumer retries its batch's acks: leases survive a restart.

What the end state proves:
- sent = done, nothing left, nothing dead: every message acked, exactly once (primary key);
- each done row's lease is the message's last delivery: a stale holder never acked;
- every redelivery came after the previous lease had run out (no two live leases of one
  message ever overlapped), and redeliveries are bounded by what was in flight at a fault.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

QUEUE = "soak"
QTY = 250
VT_S = 3.0
WORKERS = 4
# Read at import: the suite's autouse fixture scrubs PGQ_* variables before each test runs.
SOAK_MESSAGES = int(os.environ.get("PGQ_SOAK_MESSAGES", "100000"))

SOAK_TABLES = """
CREATE TABLE soak_deliveries (
    msg_id  bigint NOT NULL,
    read_ct integer NOT NULL,
    lease   uuid NOT NULL,
    vt      timestamptz NOT NULL,
    worker  text NOT NULL,
    PRIMARY KEY (msg_id, read_ct)
);
CREATE TABLE soak_done (
    msg_id  bigint PRIMARY KEY,
    read_ct integer NOT NULL,
    lease   uuid NOT NULL,
    worker  text NOT NULL
);
"""


# ----------------------------------------------------------------------------- consumer


def consume(dsn: str, worker: str) -> None:
    """One consumer process: claim -> work -> ack until the queue is empty."""
    from pgq_cli.core.errors import ConnectFailed, NotFound, StaleLease, Temporary
    from pgq_cli.core.queue import Queue

    claim_conn: psycopg.Connection[Any] | None = None
    work_conn: psycopg.Connection[Any] | None = None
    pending: list[Any] = []
    while True:
        try:
            if claim_conn is None or work_conn is None:
                claim_conn = psycopg.connect(dsn, autocommit=True, connect_timeout=3)
                work_conn = psycopg.connect(dsn, connect_timeout=3)  # one transaction per batch
            if not pending:
                pending = Queue(claim_conn).claim(queue=QUEUE, qty=QTY, vt=VT_S)
                if not pending:
                    row = claim_conn.execute(
                        "SELECT EXISTS (SELECT FROM pgq.messages WHERE queue = %s)", (QUEUE,)
                    ).fetchone()
                    if row is not None and not row[0]:
                        return
                    time.sleep(0.05)
                    continue
                claim_conn.execute(
                    "INSERT INTO soak_deliveries "
                    "SELECT *, %s FROM unnest(%s::bigint[], %s::int[], %s::uuid[], "
                    "%s::timestamptz[])",
                    (worker, [m.msg_id for m in pending], [m.read_ct for m in pending],
                     [m.lease for m in pending], [m.vt for m in pending]),
                )
            queue = Queue(work_conn)
            acked = []
            for m in pending:
                try:
                    queue.ack([m.msg_id], lease=m.lease)
                    acked.append(m)
                except (StaleLease, NotFound):
                    pass  # lease ran out (someone else has it now) or our ack already landed
            work_conn.execute(
                "INSERT INTO soak_done SELECT *, %s FROM unnest(%s::bigint[], %s::int[], "
                "%s::uuid[])",
                (worker, [m.msg_id for m in acked], [m.read_ct for m in acked],
                 [m.lease for m in acked]),
            )
            work_conn.commit()
            pending = []
        except (ConnectFailed, Temporary, psycopg.OperationalError):
            # The server went away (restart): reconnect and retry this batch's acks.
            for conn in (claim_conn, work_conn):
                if conn is not None:
                    conn.close()
            claim_conn = work_conn = None
            time.sleep(0.1)


# ---------------------------------------------------------------------------- the test


@pytest.fixture
def soak_server() -> Iterator[Any]:
    from helpers_server import RestartableServer

    with RestartableServer() as server:
        yield server


def _spawn(dsn: str, name: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([sys.executable, __file__, dsn, name], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _scalar(dsn: str, query: str) -> Any:
    """One value, on a fresh connection (the server may have restarted); None if down."""
    try:
        with psycopg.connect(dsn, connect_timeout=2, autocommit=True) as conn:
            row = conn.execute(query).fetchone()
            return None if row is None else row[0]
    except psycopg.OperationalError:
        return None


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_soak_with_killed_consumers_and_two_server_restarts(soak_server: Any) -> None:
    from pgq_cli.core.queue import Queue

    total = SOAK_MESSAGES
    dsn = soak_server.migrated_database()
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(SOAK_TABLES)
        queue = Queue(conn)
        for start in range(0, total, 20_000):
            chunk = range(start, min(total, start + 20_000))
            queue.send_many([f'{{"n": {i}}}' for i in chunk], queue=QUEUE,
                            priority=1 + start // 20_000 % 10)

    rng = random.Random(4)
    # Faults, by fraction of messages done: kill a consumer, or restart the server.
    faults = [(0.10, "kill"), (0.25, "kill"), (0.35, "restart:immediate"), (0.50, "kill"),
              (0.65, "restart:fast"), (0.80, "kill")]
    workers = {f"w{i}": _spawn(dsn, f"w{i}") for i in range(WORKERS)}
    killed: list[str] = []
    restarts = 0
    started = time.monotonic()
    try:
        while faults:
            assert time.monotonic() - started < 400, f"stuck before faults {faults}"
            done = _scalar(dsn, "SELECT count(*) FROM soak_done") or 0
            if done >= faults[0][0] * total:
                _, action = faults.pop(0)
                if action == "kill":
                    name = rng.choice(sorted(workers))
                    workers[name].send_signal(signal.SIGKILL)
                    workers[name].communicate(timeout=10)  # reaps it and closes its pipe
                    killed.append(name)
                    replacement = f"w{len(workers) + len(killed)}"
                    workers[replacement] = _spawn(dsn, replacement)
                    del workers[name]
                else:
                    soak_server.restart(action.split(":")[1])
                    restarts += 1
            time.sleep(0.05)
        for name, proc in workers.items():
            _, err = proc.communicate(timeout=300)
            assert proc.returncode == 0, f"consumer {name} failed: {err.decode()[-2000:]}"
    finally:
        for proc in workers.values():
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
    elapsed = time.monotonic() - started
    assert len(killed) == 4 and restarts == 2

    with psycopg.connect(dsn, autocommit=True) as conn:
        def one(query: str) -> Any:
            row = conn.execute(query).fetchone()
            assert row is not None
            return row[0] if len(row) == 1 else row

        # Every message acked exactly once (soak_done's primary key), nothing left or dead.
        assert one("SELECT count(*) FROM pgq.messages") == 0
        assert one("SELECT count(*) FROM soak_done") == total
        assert one("SELECT min(msg_id) = 1 AND max(msg_id) = count(*) FROM soak_done")
        # The ack came from the message's last delivery: no stale holder ever acked.
        assert one("""
            SELECT count(*) FROM soak_done d
            JOIN soak_deliveries l USING (msg_id)
            WHERE l.read_ct > d.read_ct
        """) == 0
        assert one("""
            SELECT count(*) FROM soak_done d
            JOIN soak_deliveries l ON l.msg_id = d.msg_id AND l.read_ct = d.read_ct
            WHERE l.lease <> d.lease
        """) == 0
        # Redelivery only after the previous lease ran out: a claim's own time is
        # vt - VT_S, and it must not be before the earlier delivery's vt.
        overlapping = one(f"""
            SELECT count(*) FROM soak_deliveries a
            JOIN soak_deliveries b ON b.msg_id = a.msg_id AND b.read_ct > a.read_ct
            WHERE b.vt - make_interval(secs => {VT_S}) < a.vt
        """)
        assert overlapping == 0
        redelivered = one("SELECT count(*) FROM soak_done WHERE read_ct > 1")
        deliveries = one("SELECT sum(read_ct) FROM soak_done")
        # Every logged delivery is one read_ct step (a few claims die before they are logged).
        assert total <= one("SELECT count(*) FROM soak_deliveries") <= deliveries
        # The kills hit consumers holding leases, so the expired-lease path was exercised.
        assert redelivered > 0
        # Faults left at most a batch per consumer in flight each; slow batches whose lease
        # ran out may add a few more, but never a large share.
        in_flight_bound = (len(killed) + restarts * WORKERS) * QTY
        assert redelivered <= in_flight_bound + total // 20, (redelivered, in_flight_bound)
    print(f"\nsoak: {total} messages, {WORKERS} consumers, qty {QTY}, {len(killed)} kills, "
          f"{restarts} restarts, {redelivered} redelivered, {deliveries} deliveries, "
          f"{elapsed:.1f} s")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    consume(sys.argv[1], sys.argv[2])
