"""Rich output on a real terminal: at 80 columns no id, lease token, queue name or key is
cut or folded; at 120 columns a message's every column shows.

Each command runs as the installed `pgq` on a pseudo-terminal whose size is set on the
terminal itself, against a real server. A value is "whole" when it appears on one line,
bounded by neither a word character nor a hyphen (so a cut `abc…` or a fold does not
count).
"""

from __future__ import annotations

import os
import re
from typing import Any

import psycopg
import pytest
from helpers import run_in_terminal

from pgq_cli.core.queue import Message, Queue

# The longest queue name there can be, and the longest fairness key.
QUEUE_64 = "q" * 60 + "-end"
KEY_128 = "k" * 124 + "-end"
LONG_PAYLOAD = '{"text": "' + "a payload much wider than any terminal " * 8 + '"}'


def pgq_env(dsn: str) -> dict[str, str]:
    return {**os.environ, "PGQ_DSN": dsn}


def on_one_line(value: str, lines: list[str]) -> bool:
    whole = re.compile(rf"(?<![\w-]){re.escape(value)}(?![\w-])")
    return any(whole.search(line) for line in lines)


def assert_fits(lines: list[str], columns: int, *wider_than_terminal: str) -> None:
    """No line wider than the terminal, but one that holds a value wider than the
    terminal itself (printed whole: the terminal wraps it, a copy gives it back)."""
    for line in lines:
        if len(line) > columns:
            assert any(v in line for v in wider_than_terminal), (len(line), line)


def assert_message_whole(found: Message, lines: list[str]) -> None:
    """msg_id, queue and lease each on one line, uncut; the msg_id as a cell of its own
    (a row of a table, or a `msg_id  N` line of a block)."""
    assert on_one_line(found.queue, lines), lines
    if found.lease is not None:
        assert on_one_line(str(found.lease), lines), lines
    assert any(
        str(found.msg_id) in line.split()
        and (line.split()[0] == "msg_id" or found.queue in line.split())
        for line in lines
    ), lines


def pgq_screen(pgq_bin: str, dsn: str, columns: int, *args: str) -> list[str]:
    code, lines = run_in_terminal([pgq_bin, *args], pgq_env(dsn), columns=columns)
    assert code == 0, lines
    return lines


@pytest.mark.parametrize("queue", [QUEUE_64, "jobs"])
def test_claim_at_80_columns_cuts_no_id_lease_or_queue(
    q: Queue, db_dsn: str, pgq_bin: str, queue: str
) -> None:
    q.send(LONG_PAYLOAD, queue=queue)
    lines = pgq_screen(pgq_bin, db_dsn, 80, "claim", "-q", queue, "--qty", "2")
    (claimed,) = q.peek(queue=queue, state="leased")
    assert_fits(lines, 80)
    assert_message_whole(claimed, lines)
    assert "…" not in "".join(line for line in lines if claimed.queue in line)


def test_peek_every_state_and_dead_letters_at_80_columns(
    q: Queue, conn: psycopg.Connection[Any], db_dsn: str, pgq_bin: str
) -> None:
    q.configure(QUEUE_64, max_deliveries=1)
    for n in range(3):
        q.send(f'{{"n": {n}}}', queue=QUEUE_64)
    (dead,) = q.claim(queue=QUEUE_64)
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 s' WHERE msg_id = %s",
                 (dead.msg_id,))
    q.requeue_expired(queue=QUEUE_64)
    q.claim(queue=QUEUE_64)
    for state in ("leased", "dead", "all"):
        lines = pgq_screen(pgq_bin, db_dsn, 80, "peek", "-q", QUEUE_64, "--state", state)
        assert_fits(lines, 80)
        shown = q.peek(queue=QUEUE_64, state=state)
        assert shown, state
        for found in shown:
            assert_message_whole(found, lines)


def test_a_key_wider_than_the_terminal_is_printed_whole(
    q: Queue, db_dsn: str, pgq_bin: str
) -> None:
    q.send('{"n": 1}', queue=QUEUE_64, key=KEY_128)
    for args in (("peek", "-q", QUEUE_64), ("stats", "--by-key", "-q", QUEUE_64)):
        lines = pgq_screen(pgq_bin, db_dsn, 80, *args)
        assert_fits(lines, 80, KEY_128)
        assert on_one_line(KEY_128, lines), lines
        assert on_one_line(QUEUE_64, lines), lines


@pytest.mark.parametrize(
    "args",
    [
        ("stats",),
        ("queues",),
        ("queue", "config", QUEUE_64),
        ("pause", QUEUE_64),
        ("doctor",),
    ],
    ids=" ".join,
)
def test_queue_names_stay_whole_at_80_columns(
    q: Queue, db_dsn: str, pgq_bin: str, args: tuple[str, ...]
) -> None:
    for queue in (QUEUE_64, "jobs"):
        q.send('{"n": 1}', queue=queue, priority=7)
    q.configure(QUEUE_64, max_deliveries=5)
    lines = pgq_screen(pgq_bin, db_dsn, 80, *args)
    assert_fits(lines, 80)
    if args[0] != "doctor":
        assert on_one_line(QUEUE_64, lines), lines


def test_120_columns_show_every_column_of_a_message(
    q: Queue, db_dsn: str, pgq_bin: str
) -> None:
    q.send(LONG_PAYLOAD, queue="jobs")
    lines = pgq_screen(pgq_bin, db_dsn, 120, "claim", "-q", "jobs")
    (claimed,) = q.peek(queue="jobs", state="leased")
    assert_fits(lines, 120)
    header = next(line for line in lines if line.split()[:1] == ["msg"])
    assert {"queue", "priority", "state", "lease", "vt", "payload"} <= set(header.split())
    (row,) = [line for line in lines if str(claimed.lease) in line]
    assert row.split()[:2] == [str(claimed.msg_id), "jobs"]
    assert claimed.vt.isoformat(timespec="seconds") in row
    assert '{"text":"a' in row and row.rstrip().endswith("…")  # shortened, not dropped
    assert "not shown" not in " ".join(lines)


def test_a_table_that_has_to_leave_columns_out_says_which(
    q: Queue, db_dsn: str, pgq_bin: str
) -> None:
    """At 80 columns a message from a short-named queue is a table without vt and payload,
    and the table says so."""
    q.send(LONG_PAYLOAD, queue="jobs")
    lines = pgq_screen(pgq_bin, db_dsn, 80, "claim", "-q", "jobs")
    (claimed,) = q.peek(queue="jobs", state="leased")
    assert_fits(lines, 80)
    (row,) = [line for line in lines if str(claimed.lease) in line]
    assert row.split()[:2] == [str(claimed.msg_id), "jobs"]
    assert "(not shown at this width: vt, payload)" in [line.rstrip() for line in lines]
