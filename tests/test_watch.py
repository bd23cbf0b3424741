"""`pgq watch`: depth per priority and state, oldest age, and rates between frames.

Rates come from PostgreSQL's per-table counters, which a session publishes when it goes
idle, at most once a second (PostgreSQL 15+). Connections that write here call
`pg_stat_force_next_flush()` so that what they did is published at once, as a busy
consumer's work would be within a second.
"""

from __future__ import annotations

import contextlib
import json
import os
import pty
import select
import signal
import subprocess
import time
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN

from pgq_cli.core.queue import Queue
from pgq_cli.ops import watch

# The columns of `pgq stats`, which the plain (pipe) frame repeats under its summary line.
HEADER = "\t".join(
    ("queue", "priority", "ready", "leased", "expired", "delayed", "dead", "oldest_ready_age",
     "max_read_ct", "paused")
)


def publish(conn: psycopg.Connection[Any]) -> None:
    """Publish this session's table counters now (else up to ~10 s later)."""
    conn.execute("SELECT pg_stat_force_next_flush()")


def user_env(dsn: str, **extra: str) -> dict[str, str]:
    """The environment of a user's shell: no PYTHONUNBUFFERED (which would hide a frame
    stuck in stdout's buffer on a pipe)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONUNBUFFERED", "PGQ_TEST_DSN")}
    return {**env, "PGQ_DSN": dsn, **extra}


def frames(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def fill(q: Queue, conn: psycopg.Connection[Any]) -> None:
    """jobs/9: 2 ready (one sent 100 s ago), 1 leased, 1 expired; jobs/5: 1 ready;
    jobs/1: 1 delayed; other/5: 1 dead."""
    old = q.send('{"n": 1}', queue="jobs", priority=9)
    conn.execute(
        "UPDATE pgq.messages SET enqueued_at = now() - interval '100 seconds' WHERE msg_id = %s",
        (old,),
    )
    for n in range(2, 5):
        q.send(json.dumps({"n": n}), queue="jobs", priority=9)
    q.send('{"n": 5}', queue="jobs", priority=5)
    q.send('{"n": 6}', queue="jobs", priority=1, delay=3600)
    dead = q.send('{"n": 7}', queue="other")
    first, expired, live = q.claim(queue="jobs", qty=3, vt=600)  # n=1, 2, 3 (FIFO)
    assert [m.priority for m in (first, expired, live)] == [9, 9, 9]
    # n=1 goes back in line (still sent 100 s ago: the oldest ready age), n=2's lease runs
    # out, n=3's stays live.
    q.requeue([first.msg_id], lease=first.lease)
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 second' WHERE msg_id = %s",
        (expired.msg_id,),
    )
    conn.execute("UPDATE pgq.messages SET state = 'dead', vt = now() WHERE msg_id = %s", (dead,))
    publish(conn)


EXPECTED_ROWS = [
    # queue, priority, ready, leased, expired, delayed, dead, max_read_ct, paused
    ("jobs", 9, 2, 1, 1, 0, 0, 1, False),
    ("jobs", 5, 1, 0, 0, 0, 0, 0, False),
    ("jobs", 1, 0, 0, 0, 1, 0, 0, False),
    ("other", 5, 0, 0, 0, 0, 1, 0, False),
]


def _shape(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [
        (r["queue"], r["priority"], r["ready"], r["leased"], r["expired"], r["delayed"],
         r["dead"], r["max_read_ct"], r["paused"])
        for r in rows
    ]


# ------------------------------------------------------------------ one frame: depth and age


def test_once_json_shows_depth_per_priority_and_state_and_oldest_age(
    cli: Cli, q: Queue, conn: Any
) -> None:
    fill(q, conn)
    result = cli("watch", "--once", "--json")
    assert result.exit_code == 0, result.stderr
    (frame,) = frames(result.stdout)
    assert _shape(frame["rows"]) == EXPECTED_ROWS
    ages = {(r["queue"], r["priority"]): r["oldest_ready_age"] for r in frame["rows"]}
    assert 100 <= ages[("jobs", 9)] < 130
    assert 0 <= ages[("jobs", 5)] < 30
    assert ages[("jobs", 1)] is None and ages[("other", 5)] is None
    assert frame["oldest_ready_age"] == ages[("jobs", 9)]
    # One frame has nothing to compare with: no rates yet.
    assert frame["frame"] == 1 and frame["estimated"] is False
    for key in ("seconds", "claimed", "sent", "acked", "claim_rate", "send_rate", "ack_rate"):
        assert frame[key] is None, key


def test_plain_frame_on_a_pipe_is_text_with_the_stats_columns_never_cut(
    cli: Cli, q: Queue, conn: Any
) -> None:
    fill(q, conn)
    result = cli("watch", "--once")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.split("\n")
    assert lines[0].startswith("frame 1  ")
    assert "  claims -  sends -  acks -  oldest ready 1" in lines[0]  # 100-129 s
    assert "all queues" not in lines[0]  # no --queue: the rates are of what is shown
    assert lines[1] == HEADER
    rows = [line.split("\t") for line in lines[2:6]]
    assert [(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[8], r[9]) for r in rows] == [
        (q_, str(p), str(rd), str(ls), str(ex), str(dl), str(dd), str(mx), "no")
        for q_, p, rd, ls, ex, dl, dd, mx, _ in EXPECTED_ROWS
    ]
    assert 100 <= float(rows[0][7]) < 130 and rows[2][7] == ""
    assert lines[6:] == ["", ""]  # an empty line ends the frame
    assert "…" not in "".join(lines[1:])  # nothing cut to a terminal's width
    assert result.stderr == ""


def test_queue_option_shows_one_queue_and_says_rates_cover_all(
    cli: Cli, q: Queue, conn: Any
) -> None:
    fill(q, conn)
    as_json = cli("watch", "--once", "--json", "--queue", "other")
    assert as_json.exit_code == 0, as_json.stderr
    (frame,) = frames(as_json.stdout)
    assert _shape(frame["rows"]) == [EXPECTED_ROWS[3]]
    assert frame["oldest_ready_age"] is None
    text = cli("watch", "--once", "-q", "jobs")
    assert text.exit_code == 0, text.stderr
    first, header, *rows = text.stdout.split("\n")
    assert "(rates: all queues)" in first and header == HEADER
    assert [r.split("\t")[:2] for r in rows if r] == [["jobs", "9"], ["jobs", "5"], ["jobs", "1"]]


def test_empty_schema_frame_has_no_rows(cli: Cli) -> None:
    result = cli("watch", "--once", "--json")
    assert result.exit_code == 0, result.stderr
    (frame,) = frames(result.stdout)
    assert frame["rows"] == [] and frame["oldest_ready_age"] is None


# ------------------------------------------------------------------------------ rates


def test_claim_rate_counts_the_claims_made_between_two_frames(db_dsn: str, q: Queue) -> None:
    """Library level, so the claims land exactly between frame 1 and frame 2."""
    q.send_many([json.dumps({"n": n}) for n in range(10)], queue="jobs")
    publish(q.conn)
    shown: list[watch.Frame] = []

    def between(frame: watch.Frame) -> None:
        if frame.number != 1:
            return
        with psycopg.connect(db_dsn, autocommit=True) as c:
            consumer = Queue(c)
            got = [m for _ in range(5) for m in consumer.claim(queue="jobs")]
            got += consumer.claim(queue="jobs", qty=3)  # 8 messages claimed in all
            consumer.ack([m.msg_id for m in got[:2]], lease=None)
            consumer.send_many(['{"more": 1}', '{"more": 2}', '{"more": 3}'], queue="jobs")
            publish(c)

    with psycopg.connect(db_dsn, autocommit=True) as w:
        result = watch.run(
            Queue(w), interval=0.3, iterations=3, emit=shown.append, on_frame=between
        )
    assert result == shown and [f.number for f in shown] == [1, 2, 3]
    first, second, third = shown
    assert first.claimed is None and first.claim_rate is None
    assert (second.claimed, second.acked, second.sent) == (8, 2, 3)
    assert second.seconds is not None and second.seconds >= 0.3
    assert second.claim_rate == pytest.approx(8 / second.seconds)
    assert second.ack_rate == pytest.approx(2 / second.seconds)
    assert second.send_rate == pytest.approx(3 / second.seconds)
    # Nothing happened between frames 2 and 3: the rates fall to zero.
    assert (third.claimed, third.acked, third.sent, third.claim_rate) == (0, 0, 0, 0.0)
    # The depth moved with them: 10 sent + 3, 8 claimed, 2 of those acked.
    (row,) = second.stats.rows
    assert (row.ready, row.leased) == (5, 6)
    assert second.to_json()["claimed"] == 8


def test_installed_watch_json_streams_frames_and_rates_through_a_pipe(
    db_dsn: str, q: Queue, pgq_bin: str
) -> None:
    """Each frame reaches the pipe as it is made (not when the buffer fills), and claims
    made by another connection between two frames are the second frame's claims."""
    q.send_many([json.dumps({"n": n}) for n in range(20)], queue="jobs")
    publish(q.conn)
    proc = subprocess.Popen(
        [pgq_bin, "watch", "--json", "--interval", "1.5", "--iterations", "2"],
        env=user_env(db_dsn), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())
        assert first["frame"] == 1 and first["claimed"] is None
        assert _shape(first["rows"]) == [("jobs", 5, 20, 0, 0, 0, 0, 0, False)]
        with psycopg.connect(db_dsn, autocommit=True) as c:
            assert len(Queue(c).claim(queue="jobs", qty=7)) == 7
            publish(c)
        second = json.loads(proc.stdout.readline())
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert second["frame"] == 2
    assert second["claimed"] == 7 and second["sent"] == 0 and second["acked"] == 0
    assert second["claim_rate"] == pytest.approx(7 / second["seconds"])
    assert 1.5 <= second["seconds"] < 10
    assert _shape(second["rows"]) == [("jobs", 5, 13, 7, 0, 0, 0, 1, False)]
    assert stderr == ""


def test_iterations_and_interval_make_that_many_frames_that_far_apart(cli: Cli) -> None:
    started = time.monotonic()
    result = cli("watch", "--iterations", "3", "--interval", "200ms", "--json")
    elapsed = time.monotonic() - started
    assert result.exit_code == 0, result.stderr
    shown = frames(result.stdout)
    assert [f["frame"] for f in shown] == [1, 2, 3]
    assert all(f["seconds"] >= 0.2 for f in shown[1:])
    assert [f["claimed"] for f in shown] == [None, 0, 0]
    assert elapsed >= 0.4


def test_estimate_flag_and_automatic_estimate_above_a_million_rows(
    cli: Cli, q: Queue, conn: Any
) -> None:
    fill(q, conn)
    exact = frames(cli("watch", "--once", "--json", "--exact").stdout)[0]
    estimated = frames(cli("watch", "--once", "--json", "--estimate").stdout)[0]
    assert (exact["estimated"], estimated["estimated"]) == (False, True)
    # Under the estimate's exact cap the counts are the same.
    assert _shape(estimated["rows"]) == _shape(exact["rows"]) == EXPECTED_ROWS
    assert frames(cli("watch", "--once", "--json").stdout)[0]["estimated"] is False
    # The planner believes the table holds 2M rows: watch estimates unless told --exact.
    conn.execute("UPDATE pg_class SET reltuples = 2e6 WHERE oid = 'pgq.messages'::regclass")
    auto = frames(cli("watch", "--once", "--json").stdout)[0]
    assert auto["estimated"] is True and _shape(auto["rows"]) == EXPECTED_ROWS
    assert frames(cli("watch", "--once", "--json", "--exact").stdout)[0]["estimated"] is False
    assert "(estimated counts)" in cli("watch", "--once").stdout.split("\n")[0]


# ------------------------------------------------------------------------------ Ctrl-C


def _interrupt_after_first_frame(proc: subprocess.Popen[str], marker: str) -> str:
    """Read stdout until `marker`, send SIGINT, return the rest of stderr."""
    assert proc.stdout is not None and proc.stderr is not None
    line = proc.stdout.readline()
    assert marker in line, line
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    return stderr


@pytest.mark.parametrize("mode", ["plain", "json"])
def test_ctrl_c_on_a_pipe_exits_0_without_a_traceback(
    db_dsn: str, q: Queue, pgq_bin: str, mode: str
) -> None:
    q.send('{"a": 1}')
    args = [pgq_bin, "watch", "--interval", "1"] + (["--json"] if mode == "json" else [])
    proc = subprocess.Popen(
        args, env=user_env(db_dsn), text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        stderr = _interrupt_after_first_frame(proc, '"frame":1' if mode == "json" else "frame 1")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr
    assert stderr == ""


def test_ctrl_c_on_a_terminal_exits_0_without_a_traceback(
    db_dsn: str, q: Queue, pgq_bin: str
) -> None:
    """On a terminal watch redraws in place (rich Live); Ctrl-C still exits 0."""
    q.send('{"a": 1}', queue="tty", priority=7)
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [pgq_bin, "watch", "--interval", "0.1"],
        env=user_env(db_dsn, COLUMNS="120", TERM="xterm"),
        stdin=follower, stdout=follower, stderr=subprocess.PIPE, text=True,
    )
    os.close(follower)
    seen = b""

    def read_some() -> None:
        nonlocal seen
        ready, _, _ = select.select([leader], [], [], 0.2)
        if ready:
            with contextlib.suppress(OSError):  # EIO: the process closed its end
                seen += os.read(leader, 65536)

    try:
        deadline = time.monotonic() + 30
        while b"Ctrl-C to quit" not in seen:
            assert time.monotonic() < deadline, seen[-500:]
            read_some()
        proc.send_signal(signal.SIGINT)
        while proc.poll() is None:  # keep the terminal drained while it stops
            assert time.monotonic() < deadline + 30, "watch did not stop on SIGINT"
            read_some()
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        os.close(leader)
    text = seen.decode("utf-8", "replace")
    assert "pgq watch" in text and "tty" in text and "frame 1" in text
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr and stderr == ""


# ------------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "args",
    [
        ("--interval", "0"),
        ("--interval", "0.01"),
        ("--interval", "3601"),
        ("--interval", "nan"),
        ("--interval", "soon"),
        ("--iterations", "0"),
        ("--once", "--iterations", "2"),
        ("--queue", "bad;name"),
    ],
)
def test_bad_input_exits_2_before_connecting(cli: Cli, args: tuple[str, ...]) -> None:
    result = cli("watch", "--once" if "--iterations" not in args else "--json", *args,
                 env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("pgq: error: ")
    assert result.stdout == ""


def test_good_input_with_unreachable_database_exits_69(cli: Cli) -> None:
    # The control for the test above: this DSN does fail, later, with its own code.
    result = cli("watch", "--once", "--interval", "0.5", env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 69, result.stderr
    assert result.stderr.startswith("pgq: error: could not connect")


def test_without_the_schema_exits_78(empty_db_dsn: str) -> None:
    result = Cli(empty_db_dsn)("watch", "--once")
    assert result.exit_code == 78, result.stderr
    assert "pgq migrate" in result.stderr
