"""`pgq work`: the installed `pgq` in a subprocess, real commands, real signals, a real server.

Each test runs `pgq work ... -- CMD` the way an operator would, and checks the queue from
another connection afterwards: what was acked, what went back (and with which read_ct),
what the command saw on stdin and in its environment, and the exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import UNREACHABLE_DSN, wait_until
from psycopg import conninfo, sql

from pgq_cli.core.queue import Queue

QUEUE = "jobs"
# A command that records what it was given: payload (stdin) and PGQ_* environment.
RECORD = textwrap.dedent(
    """
    import json, os, sys
    payload = sys.stdin.read()
    env = {k: v for k, v in os.environ.items() if k.startswith("PGQ_") and k != "PGQ_DSN"}
    with open(os.path.join(sys.argv[1], os.environ["PGQ_MSG_ID"]), "w") as f:
        json.dump({"stdin": payload, "env": env}, f)
    print("out", os.environ["PGQ_MSG_ID"], flush=True)  # before err, whatever buffering
    print("err", os.environ["PGQ_MSG_ID"], file=sys.stderr)
    """
)


def _pgq(
    pgq_bin: str, dsn: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGQ_DSN": dsn}
    return subprocess.run([pgq_bin, *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


@contextmanager
def _running(pgq_bin: str, dsn: str, *args: str) -> Iterator[subprocess.Popen[str]]:
    """`pgq ARGS` in the background; killed on the way out if the test did not end it."""
    env = {**os.environ, "PGQ_DSN": dsn}
    worker = subprocess.Popen([pgq_bin, *args], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=env)
    try:
        yield worker
    finally:
        worker.kill()
        worker.wait()


def _rows(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT msg_id, state, read_ct FROM pgq.messages ORDER BY msg_id"
    ).fetchall()


def _python(code: str, *args: str) -> list[str]:
    return [sys.executable, "-c", code, *args]


def test_each_message_runs_the_command_with_payload_and_environment(
    pgq_bin: str, db_dsn: str, q: Queue, tmp_path: Path
) -> None:
    ids = [q.send(json.dumps({"n": i}), queue=QUEUE, priority=3 + i) for i in range(3)]
    result = _pgq(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "--",
                  *_python(RECORD, str(tmp_path)))
    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # stdout stays pgq's; the command's output went to stderr
    # Highest priority first; stdout and stderr of each command both on pgq's stderr.
    assert result.stderr.splitlines() == [
        line for i in reversed(ids) for line in (f"out {i}", f"err {i}")
    ]
    for n, msg_id in enumerate(ids):
        seen = json.loads((tmp_path / str(msg_id)).read_text())
        assert json.loads(seen["stdin"]) == {"n": n}
        env = seen["env"]
        assert env["PGQ_MSG_ID"] == str(msg_id)
        assert env["PGQ_QUEUE"] == QUEUE
        assert env["PGQ_PRIORITY"] == str(3 + n)
        assert env["PGQ_READ_CT"] == "1"
        assert len(env["PGQ_LEASE"]) == 36
    assert _rows(q.conn) == []


def test_a_failing_command_puts_its_message_back_and_exits_3(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    good = q.send('{"ok": true}', queue=QUEUE)
    bad = q.send('{"ok": false}', queue=QUEUE)
    fail_if_not_ok = "import json, sys; sys.exit(0 if json.load(sys.stdin)['ok'] else 4)"
    result = _pgq(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "-v", "--",
                  *_python(fail_if_not_ok))
    assert result.returncode == 3, result.stderr
    assert _rows(q.conn) == [(bad, "delayed", 1)]  # back-off 1 s after the first delivery
    lines = result.stderr.splitlines()
    assert any(f"msg {good} " in line and "acked" in line for line in lines), lines
    assert any(f"msg {bad} " in line and "exit 4" in line for line in lines), lines
    assert good != bad


def test_max_deliveries_dead_letters_a_command_that_keeps_failing(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    q.configure(QUEUE, max_deliveries=1)
    msg_id = q.send("{}", queue=QUEUE)
    result = _pgq(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "--", "false")
    assert result.returncode == 3
    assert _rows(q.conn) == [(msg_id, "dead", 1)]


def test_timeout_kills_the_command_and_its_message_goes_back(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    msg_id = q.send("{}", queue=QUEUE)
    started = time.monotonic()
    result = _pgq(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "--timeout", "1s",
                  "-v", "--", "sleep", "60")
    assert result.returncode == 3, result.stderr
    assert time.monotonic() - started < 20
    assert "timed out (--timeout)" in result.stderr
    assert _rows(q.conn) == [(msg_id, "delayed", 1)]


def test_the_lease_is_extended_while_the_command_runs(
    pgq_bin: str, db_dsn: str, q: Queue, conn: Any
) -> None:
    msg_id = q.send("{}", queue=QUEUE)
    with _running(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "--vt", "1",
                  "--", "sleep", "3") as worker:
        wait_until(lambda: _rows(conn) == [(msg_id, "leased", 1)], what="the claim")
        time.sleep(2.2)  # more than two vt: only the heartbeat keeps the lease
        assert Queue(conn).claim(queue=QUEUE, qty=5) == []
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert _rows(conn) == []


def test_concurrency_prefixes_each_output_line_with_the_msg_id(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    ids = [q.send("{}", queue=QUEUE) for _ in range(4)]
    result = _pgq(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "--qty", "4",
                  "--concurrency", "2", "--", "sh", "-c", 'echo "hello $PGQ_MSG_ID"; echo two')
    assert result.returncode == 0, result.stderr
    lines = sorted(result.stderr.splitlines())
    assert lines == sorted([f"[{i}] hello {i}" for i in ids] + [f"[{i}] two" for i in ids])
    assert _rows(q.conn) == []


def test_max_messages_stops_after_that_many(pgq_bin: str, db_dsn: str, q: Queue) -> None:
    ids = [q.send("{}", queue=QUEUE) for _ in range(5)]
    result = _pgq(pgq_bin, db_dsn, "work", "-q", QUEUE, "--max-messages", "2", "--qty", "3",
                  "--", "true")
    assert result.returncode == 0, result.stderr
    assert _rows(q.conn) == [(i, "ready", 0) for i in ids[2:]]


def test_until_empty_with_wait_takes_late_work_then_stops(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    with _running(pgq_bin, db_dsn, "work", "-q", QUEUE, "--until-empty", "--wait", "3s",
                  "-v", "--", "true") as worker:
        time.sleep(1.0)
        late = q.send('{"late": 1}', queue=QUEUE)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert f"msg {late} " in stderr
    assert _rows(q.conn) == []


def test_sigterm_lets_the_running_command_finish_and_gives_back_the_rest(
    pgq_bin: str, db_dsn: str, q: Queue, tmp_path: Path
) -> None:
    ids = [q.send("{}", queue=QUEUE) for _ in range(3)]
    marker = tmp_path / "started"
    command = f"touch {marker}; sleep 1.5"
    with _running(pgq_bin, db_dsn, "work", "-q", QUEUE, "--qty", "3", "--grace", "20s",
                  "--", "sh", "-c", command) as worker:
        wait_until(marker.exists, what="the first command to start")
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    # The first finished within the grace period and was acked; the others never ran.
    assert _rows(q.conn) == [(ids[1], "ready", 0), (ids[2], "ready", 0)]


def test_ctrl_c_past_the_grace_period_kills_the_command_gives_back_and_exits_130(
    pgq_bin: str, db_dsn: str, q: Queue, tmp_path: Path
) -> None:
    msg_id = q.send("{}", queue=QUEUE)
    marker = tmp_path / "started"
    with _running(pgq_bin, db_dsn, "work", "-q", QUEUE, "--grace", "0.5s",
                  "--", "sh", "-c", f"touch {marker}; sleep 60") as worker:
        wait_until(marker.exists, what="the command to start")
        started = time.monotonic()
        worker.send_signal(signal.SIGINT)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 130, stderr
    assert time.monotonic() - started < 15
    assert stderr.strip().splitlines()[-1] == "pgq: interrupted"
    assert "Traceback" not in stderr
    assert _rows(q.conn) == [(msg_id, "ready", 1)]  # given back at once, this delivery counted


def test_a_terminated_connection_is_reconnected(
    pgq_bin: str, db_dsn: str, q: Queue, conn: Any
) -> None:

    def backend() -> list[tuple[Any, ...]]:
        return conn.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'pgq work'"
            " AND datname = current_database()"
        ).fetchall()

    with _running(pgq_bin, db_dsn, "work", "-q", QUEUE, "--max-messages", "1",
                  "--", "true") as worker:
        wait_until(lambda: len(backend()) == 1, what="pgq work to connect")
        conn.execute("SELECT pg_terminate_backend(%s)", (backend()[0][0],))
        time.sleep(0.5)
        msg_id = q.send("{}", queue=QUEUE)
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 0, stderr
    assert msg_id > 0 and _rows(conn) == []


def test_reconnect_timeout_exits_69_with_one_line(
    pgq_bin: str, db_dsn: str, pg_server: Any
) -> None:
    dbname = conninfo.conninfo_to_dict(db_dsn)["dbname"]
    with _running(pgq_bin, db_dsn, "work", "-q", QUEUE, "--reconnect-timeout", "1s",
                  "--", "true") as worker:
        with psycopg.connect(pg_server.admin_dsn, autocommit=True) as admin:
            wait_until(lambda: admin.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'pgq work'"
                " AND datname = %s", (dbname,)).fetchone() == (1,), what="pgq work to connect")
            admin.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(str(dbname))))
        started = time.monotonic()
        _, stderr = worker.communicate(timeout=30)
    assert worker.returncode == 69, stderr
    assert time.monotonic() - started < 15
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pgq: error: "), stderr
    assert "gave up after 1 s" in lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["work", "-q", QUEUE], "no command given"),
        (["work", "-q", QUEUE, "--", "no-such-command-pgq"], "command not found"),
        (["work", "-q", QUEUE, "--vt", "soon", "--", "true"], "is not a duration"),
        (["work", "-q", QUEUE, "--timeout", "0", "--", "true"], "--timeout must be more than 0"),
        (["work", "-q", QUEUE, "--concurrency", "0", "--", "true"], "--concurrency must be"),
        (["work", "-q", "bad queue", "--", "true"], "invalid queue name"),
        (["work", "-q", QUEUE, "--wait", "2d", "--", "true"], "--wait must be"),
    ],
)
def test_bad_input_exits_2_before_connecting(
    pgq_bin: str, args: list[str], expected: str
) -> None:
    # Nothing listens on port 1: a connection attempt would exit 69, not 2.
    result = _pgq(pgq_bin, UNREACHABLE_DSN, *args)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], result.stderr


# ----------------------------------------------------------------------------- ack - / requeue -


def _claim_json(pgq_bin: str, dsn: str, qty: int) -> str:
    result = _pgq(pgq_bin, dsn, "claim", "-q", QUEUE, "-n", str(qty), "--json", "--vt", "300")
    assert result.returncode == 0, result.stderr
    return result.stdout


def _pipe(pgq_bin: str, dsn: str, stdin: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PGQ_DSN": dsn}
    return subprocess.run([pgq_bin, *args], input=stdin, capture_output=True, text=True,
                          env=env, timeout=60)


def test_claim_json_piped_into_ack_dash_acks_each_with_its_own_lease(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    ids = [q.send("{}", queue=QUEUE) for _ in range(3)]
    env = {**os.environ, "PGQ_DSN": db_dsn, "PGQ": pgq_bin}
    result = subprocess.run(
        ["sh", "-c", f'"$PGQ" claim -q {QUEUE} -n 3 --json | "$PGQ" ack -'],
        capture_output=True, text=True, env=env, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(i) for i in ids]
    assert _rows(q.conn) == []


def test_ack_dash_leaves_a_stale_lease_alone_acks_the_rest_and_exits_3(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    first, second = (q.send("{}", queue=QUEUE) for _ in range(2))
    lines = _claim_json(pgq_bin, db_dsn, 2)
    # The first lease runs out and someone else claims the message.
    q.conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 s' WHERE msg_id = %s",
                   (first,))
    (stolen,) = q.claim(queue=QUEUE, vt=300)
    assert stolen.msg_id == first
    result = _pipe(pgq_bin, db_dsn, lines, "ack", "-")
    assert result.returncode == 3, result.stderr
    assert result.stdout.split() == [str(second)]
    assert "lease is not current" in result.stderr
    assert _rows(q.conn) == [(first, "leased", 2)]


def test_requeue_dash_gives_each_back_with_its_own_lease(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    ids = [q.send("{}", queue=QUEUE) for _ in range(2)]
    lines = _claim_json(pgq_bin, db_dsn, 2)
    result = _pipe(pgq_bin, db_dsn, lines, "requeue", "-", "--delay", "60")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(i) for i in ids]
    assert _rows(q.conn) == [(i, "delayed", 1) for i in ids]


@pytest.mark.parametrize("command", ["ack", "requeue"])
def test_a_bad_stdin_line_exits_2_and_nothing_is_done(
    pgq_bin: str, db_dsn: str, q: Queue, command: str
) -> None:
    ids = [q.send("{}", queue=QUEUE) for _ in range(2)]
    lines = _claim_json(pgq_bin, db_dsn, 1) + "not json\n"
    result = _pipe(pgq_bin, db_dsn, lines, command, "-")
    assert result.returncode == 2, result.stderr
    assert "stdin line 2 is not JSON" in result.stderr
    assert result.stdout == ""
    assert _rows(q.conn) == [(ids[0], "leased", 1), (ids[1], "ready", 0)]


@pytest.mark.parametrize(
    ("args", "stdin", "says"),
    [
        (["ack", "-", "--lease", "00000000-0000-0000-0000-000000000000"], "", "--lease cannot"),
        (["requeue", "-", "--lease", "00000000-0000-0000-0000-000000000000"], "",
         "--lease cannot"),
        (["ack", "-", "7"], "", "not both"),
        (["ack", "-"], '{"msg_id": 7, "lease": null}\n', "has no lease"),
        (["ack", "-"], '{"lease": "x"}\n', "has no msg_id"),
    ],
)
def test_dash_misuse_exits_2_before_connecting(
    pgq_bin: str, args: list[str], stdin: str, says: str
) -> None:
    result = _pipe(pgq_bin, UNREACHABLE_DSN, stdin, *args)
    assert result.returncode == 2, result.stderr
    assert says in result.stderr and len(result.stderr.strip().splitlines()) == 1


def test_ack_dash_with_nothing_on_stdin_does_nothing_and_exits_0(
    pgq_bin: str, db_dsn: str, q: Queue
) -> None:
    msg_id = q.send("{}", queue=QUEUE)
    result = _pipe(pgq_bin, db_dsn, "", "ack", "-")
    assert (result.returncode, result.stdout) == (0, "")
    assert _rows(q.conn) == [(msg_id, "ready", 0)]
