"""Lease tokens fence stale consumers; peek never touches a lease; ack/requeue/extend work.

A consumer whose lease ran out and whose message was claimed again must not be able to ack,
requeue or extend it with its old token: it gets exit 3 and the row is left exactly as the
new holder has it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import error_line

from pgq_cli.core.errors import NotFound, StaleLease
from pgq_cli.core.queue import Queue

ROW = "SELECT state, vt, read_ct, lease, priority, payload FROM pgq.messages WHERE msg_id = %s"


def _row(conn: psycopg.Connection[Any], msg_id: int) -> tuple[Any, ...] | None:
    return conn.execute(ROW, (msg_id,)).fetchone()


def _expire(conn: psycopg.Connection[Any], msg_id: int) -> None:
    """Let the lease run out without waiting: move its end into the past."""
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '1 second' WHERE msg_id = %s", (msg_id,)
    )


def _stolen(q: Queue, conn: psycopg.Connection[Any]) -> tuple[int, str, str]:
    """A message claimed (old lease), expired, and claimed again (new lease)."""
    msg_id = q.send('{"work": 1}', priority=6)
    (old,) = q.claim(vt=30)
    _expire(conn, msg_id)
    (new,) = q.claim(vt=300)
    assert new.msg_id == msg_id and new.read_ct == 2 and new.lease != old.lease
    return msg_id, str(old.lease), str(new.lease)


@pytest.mark.parametrize(
    "command",
    [
        ["ack", "{id}", "--lease", "{old}"],
        ["requeue", "{id}", "--lease", "{old}"],
        ["requeue", "{id}", "--lease", "{old}", "--delay", "60"],
        ["extend", "{id}", "--vt", "600", "--lease", "{old}"],
    ],
    ids=["ack", "requeue", "requeue-delay", "extend"],
)
def test_cli_stale_lease_is_refused_with_exit_3_and_nothing_changes(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any], command: list[str]
) -> None:
    msg_id, old, new = _stolen(q, conn)
    before = _row(conn, msg_id)
    args = [a.format(id=msg_id, old=old) for a in command]
    result = cli(*args)
    assert result.exit_code == 3, result
    assert result.stdout == ""
    line = error_line(result.stderr)
    assert "lease is not current" in line
    assert _row(conn, msg_id) == before
    assert before is not None and str(before[3]) == new


def test_library_stale_lease_raises_and_current_lease_works(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id, old, new = _stolen(q, conn)
    before = _row(conn, msg_id)
    with pytest.raises(StaleLease):
        q.ack([msg_id], lease=old)
    with pytest.raises(StaleLease):
        q.requeue([msg_id], lease=old)
    with pytest.raises(StaleLease):
        q.extend(msg_id, vt=999, lease=old)
    assert _row(conn, msg_id) == before
    extended = q.extend(msg_id, vt=900, lease=new)
    assert extended.lease is not None and str(extended.lease) == new
    assert q.ack([msg_id], lease=new) == [msg_id]
    assert _row(conn, msg_id) is None


def test_ack_with_current_lease_deletes(cli: Cli, q: Queue, conn: psycopg.Connection[Any]) -> None:
    msg_id = q.send("{}")
    (m,) = q.claim()
    result = cli("ack", str(msg_id), "--lease", str(m.lease))
    assert (result.exit_code, result.stdout, result.stderr) == (0, f"{msg_id}\n", "")
    assert _row(conn, msg_id) is None


def test_ack_many_without_lease(cli: Cli, q: Queue, conn: psycopg.Connection[Any]) -> None:
    ids = [q.send("{}") for _ in range(3)]
    result = cli("ack", *map(str, ids), "--json")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"msg_id": i, "result": "acked"} for i in ids
    ]
    assert conn.execute("SELECT count(*) FROM pgq.messages").fetchone() == (0,)


def test_ack_unknown_id_is_exit_3(cli: Cli, q: Queue, conn: psycopg.Connection[Any]) -> None:
    q.send("{}")
    result = cli("ack", "987654")
    assert result.exit_code == 3
    assert "no such message: 987654" in error_line(result.stderr)
    assert conn.execute("SELECT count(*) FROM pgq.messages").fetchone() == (1,)
    with pytest.raises(NotFound):
        q.ack([987654])


def test_requeue_with_lease_returns_it_now_keeping_read_ct(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send("{}", priority=4)
    (m,) = q.claim(vt=300)
    result = cli("requeue", str(msg_id), "--lease", str(m.lease))
    assert (result.exit_code, result.stdout) == (0, f"{msg_id}\n"), result.stderr
    state, _, read_ct, lease, _, _ = _row(conn, msg_id) or ()
    assert (state, read_ct, lease) == ("ready", 1, None)
    (again,) = q.claim()
    assert again.msg_id == msg_id and again.read_ct == 2


def test_requeue_with_delay_hides_it_until_then(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send("{}")
    q.claim()
    result = cli("requeue", str(msg_id), "--delay", "3600")
    assert result.exit_code == 0, result.stderr
    assert q.claim() == []
    assert [m.msg_id for m in q.peek(state="delayed")] == [msg_id]
    row = conn.execute(
        "SELECT vt > now() + interval '3590 seconds' FROM pgq.messages WHERE msg_id = %s",
        (msg_id,),
    ).fetchone()
    assert row == (True,)


def test_requeue_expired_returns_only_expired_work(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    expired = q.send("{}", priority=9)
    live = q.send("{}", priority=8)
    q.claim(qty=2, vt=300)
    _expire(conn, expired)
    result = cli("requeue", "--expired", "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout) == {"requeued": 1}
    states = dict(conn.execute("SELECT msg_id, state FROM pgq.messages").fetchall())
    assert states == {expired: "ready", live: "leased"}
    assert conn.execute(ROW, (expired,)).fetchone()[2] == 1  # type: ignore[index]
    again = cli("requeue", "--expired", "-v")  # the count, when asked for
    assert (again.exit_code, again.stdout) == (0, "requeued\t0\n")


def test_requeue_expired_prints_nothing_unless_asked_so_cron_mails_nothing(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    expired = q.send("{}")
    q.claim(vt=300)
    _expire(conn, expired)
    quiet = cli("requeue", "--expired")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    assert conn.execute(ROW, (expired,)).fetchone()[0] == "ready"  # type: ignore[index]
    assert cli("requeue", "--expired").stdout == ""  # nothing to do: silent too
    assert cli("requeue", "--expired", "--json").stdout == '{"requeued":0}\n'
    verbose = cli("requeue", "--expired", "--verbose")
    assert (verbose.exit_code, verbose.stdout) == (0, "requeued\t0\n")
    refused = cli("requeue", "1", "-v")
    assert refused.exit_code == 2 and "--verbose goes with --expired" in refused.stderr


def test_requeue_expired_can_be_limited_to_one_queue(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    a = q.send("{}", queue="a")
    b = q.send("{}", queue="b")
    q.claim(queue="a")
    q.claim(queue="b")
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 second'")
    result = cli("requeue", "--expired", "-q", "a", "--json")
    assert json.loads(result.stdout) == {"requeued": 1}
    states = dict(conn.execute("SELECT msg_id, state FROM pgq.messages").fetchall())
    assert states == {a: "ready", b: "leased"}


def test_extend_moves_vt_and_keeps_lease(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send('{"x": 1}')
    (m,) = q.claim(vt=5)
    result = cli("extend", str(msg_id), "--vt", "600", "--lease", str(m.lease), "--json")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["msg_id"] == msg_id and out["lease"] == str(m.lease) and out["read_ct"] == 1
    row = conn.execute(
        "SELECT vt > now() + interval '590 seconds', lease FROM pgq.messages WHERE msg_id = %s",
        (msg_id,),
    ).fetchone()
    assert row == (True, m.lease)


def test_extend_a_message_that_is_not_leased_is_exit_3(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send("{}")
    before = _row(conn, msg_id)
    result = cli("extend", str(msg_id), "--vt", "60")
    assert result.exit_code == 3
    error_line(result.stderr)
    assert _row(conn, msg_id) == before


@pytest.mark.parametrize("state", ["ready", "leased", "expired", "delayed", "all"])
def test_peek_never_changes_a_lease_vt_or_read_ct(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any], state: str
) -> None:
    ready = q.send('{"r": 1}', priority=2)
    leased = q.send('{"l": 1}', priority=9)
    expired = q.send('{"e": 1}', priority=8)
    delayed = q.send('{"d": 1}', priority=7, delay=3600)
    q.claim(qty=2, vt=300)  # leases priority 9 and 8
    _expire(conn, expired)
    snapshot = "SELECT msg_id, state, vt, read_ct, lease FROM pgq.messages ORDER BY msg_id"
    before = conn.execute(snapshot).fetchall()
    result = cli("peek", "--state", state, "--json")
    assert result.exit_code == 0, result.stderr
    shown = [json.loads(line) for line in result.stdout.splitlines()]
    expected = {
        "ready": [ready],
        "leased": [leased],
        "expired": [expired],
        "delayed": [delayed],
        "all": [leased, expired, delayed, ready],
    }[state]
    assert [m["msg_id"] for m in shown] == expected
    if state != "all":
        assert {m["state"] for m in shown} == {state}
    assert conn.execute(snapshot).fetchall() == before
    # Peek only showed the expired lease; the claim path is what hands it out again.
    assert [m.msg_id for m in q.claim(qty=5)] == [expired, ready]


def test_peek_limit_and_claim_order(cli: Cli, q: Queue) -> None:
    ids = [q.send("{}", priority=p) for p in (1, 5, 10, 5)]
    result = cli("peek", "--limit", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line)["msg_id"] for line in result.stdout.splitlines()] == [
        ids[2], ids[1], ids[3]
    ]


def test_malformed_lease_token_is_exit_2_before_sql(cli: Cli, q: Queue) -> None:
    msg_id = q.send("{}")
    q.claim()
    result = cli("ack", str(msg_id), "--lease", "not-a-uuid")
    assert result.exit_code == 2
    assert "malformed lease token" in error_line(result.stderr)
    with pytest.raises(StaleLease):
        q.ack([msg_id], lease=uuid.uuid4())
