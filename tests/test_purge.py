"""`pgq purge`: batched deletes by state and age, the safety rule, --dry-run, --max-runtime.

Rows are written with SQL (any state, any age, thousands at once) so that each test knows
exactly which rows a purge must take and which it must leave. Which transaction deleted a
row is recorded by a trigger that logs `txid_current()`, so "one transaction per batch"
is checked, not assumed.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN, assert_failed

from pgq_cli.core.errors import InvalidInput
from pgq_cli.core.queue import Queue

# A closed port: a command that tries to connect exits 69, so an exit 2 with this DSN
# proves the input was refused before any connection.


def insert(
    conn: psycopg.Connection[Any],
    queue: str,
    n: int,
    *,
    state: str = "ready",
    priority: int = 5,
    vt_in: float = 0.0,
    age: float = 0.0,
    read_ct: int = 0,
) -> list[int]:
    """n messages in one statement; vt is `vt_in` seconds from now (negative: past),
    enqueued_at `age` seconds ago. Leased rows get a lease token."""
    rows = conn.execute(
        """
        INSERT INTO pgq.messages (queue, priority, state, vt, enqueued_at, read_ct, lease,
                                  payload)
        SELECT %(queue)s, %(priority)s, %(state)s::text,
               now() + make_interval(secs => %(vt_in)s::float8),
               now() - make_interval(secs => %(age)s::float8),
               %(read_ct)s,
               CASE WHEN %(state)s::text = 'leased' THEN gen_random_uuid() END,
               jsonb_build_object('n', g)
        FROM generate_series(1, %(n)s) AS g
        ORDER BY g
        RETURNING msg_id
        """,
        {"queue": queue, "priority": priority, "state": state, "vt_in": vt_in, "age": age,
         "read_ct": read_ct, "n": n},
    ).fetchall()
    return sorted(int(r[0]) for r in rows)


def remaining(conn: psycopg.Connection[Any], queue: str | None = None) -> list[int]:
    rows = conn.execute(
        "SELECT msg_id FROM pgq.messages WHERE %(q)s::text IS NULL OR queue = %(q)s "
        "ORDER BY msg_id",
        {"q": queue},
    ).fetchall()
    return [int(r[0]) for r in rows]


def log_deletes(conn: psycopg.Connection[Any], sleep_s: float = 0.0) -> None:
    """Record (msg_id, deleting transaction) for every deleted message; optionally make
    each row's delete take at least `sleep_s` seconds."""
    conn.execute("CREATE TABLE public.purge_log (msg_id bigint, xid bigint)")
    conn.execute(
        f"""
        CREATE FUNCTION public.log_purge() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            INSERT INTO public.purge_log VALUES (OLD.msg_id, txid_current());
            PERFORM pg_sleep({float(sleep_s)});
            RETURN OLD;
        END $$
        """
    )
    conn.execute(
        "CREATE TRIGGER log_purge AFTER DELETE ON pgq.messages "
        "FOR EACH ROW EXECUTE FUNCTION public.log_purge()"
    )


def deletes_by_transaction(conn: psycopg.Connection[Any]) -> list[list[int]]:
    rows = conn.execute(
        "SELECT array_agg(msg_id ORDER BY msg_id) FROM public.purge_log "
        "GROUP BY xid ORDER BY xid"
    ).fetchall()
    return [list(r[0]) for r in rows]


def purge_json(cli: Cli, *args: str) -> dict[str, Any]:
    result = cli("purge", *args, "--json")
    assert result.exit_code == 0, (result.stdout, result.stderr)
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.stdout
    data: dict[str, Any] = json.loads(lines[0])
    return data


# ----------------------------------------------------------------------------- batches


def test_purge_deletes_in_batches_each_its_own_transaction(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    doomed = insert(conn, "jobs", 85)
    kept = insert(conn, "other", 7)
    log_deletes(conn)
    result = cli("purge", "jobs", "--state", "ready", "--batch", "20")
    assert result.exit_code == 0, result.stderr
    assert result.stderr.strip() == (
        "pgq: deleted 85 message(s) from 'jobs' in 5 batch(es) of at most 20"
    )
    assert result.stdout.splitlines() == [
        "queue\tjobs",
        "states\tready",
        "older_than_s\t",
        "dry_run\tFalse",
        "deleted\t85",
        "batches\t20,20,20,20,5",
        "stopped_early\tFalse",
        "expired_dedup_keys\t0",
        result.stdout.splitlines()[-1],  # elapsed_s, checked below
    ]
    assert result.stdout.splitlines()[-1].startswith("elapsed_s\t")
    assert remaining(conn, "jobs") == []
    assert remaining(conn) == kept
    # Five transactions, in msg_id order: batch k took the k-th slice of 20.
    by_xact = deletes_by_transaction(conn)
    assert [len(ids) for ids in by_xact] == [20, 20, 20, 20, 5]
    assert by_xact == [doomed[i : i + 20] for i in range(0, 85, 20)]


def test_purge_exact_multiple_of_batch_reports_only_nonempty_batches(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    insert(conn, "jobs", 60)
    data = purge_json(cli, "jobs", "--all", "--batch", "20")
    assert (data["deleted"], data["batches"], data["stopped_early"]) == (60, [20, 20, 20], False)
    assert remaining(conn) == []


def test_purge_json_shape(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    insert(conn, "jobs", 3, state="dead", vt_in=-7200)
    data = purge_json(
        cli, "jobs", "--state", "dead", "--state", "expired", "--state", "dead",
        "--older-than", "1h", "--batch", "2",
    )
    elapsed = data.pop("elapsed_s")
    assert isinstance(elapsed, float) and 0 <= elapsed < 10
    assert data == {
        "queue": "jobs",
        "states": ["dead", "expired"],  # in the order given, repeats dropped
        "older_than_s": 3600.0,
        "dry_run": False,
        "deleted": 3,
        "batches": [2, 1],
        "stopped_early": False,
        "expired_dedup_keys": 0,
    }


def test_purge_of_unknown_queue_deletes_nothing(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    kept = insert(conn, "jobs", 4)
    result = cli("purge", "nosuchqueue", "--all", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["deleted"], data["batches"]) == (0, [])
    assert "deleted 0 message(s) from 'nosuchqueue' in 0 batch(es)" in result.stderr
    assert remaining(conn) == kept


# ----------------------------------------------------------------------------- filters


def test_state_filter_uses_effective_state_and_touches_nothing_else(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    ready = insert(conn, "jobs", 3)
    leased = insert(conn, "jobs", 2, state="leased", vt_in=300)
    expired = insert(conn, "jobs", 2, state="leased", vt_in=-10)
    delayed = insert(conn, "jobs", 2, state="delayed", vt_in=600)
    due = insert(conn, "jobs", 1, state="delayed", vt_in=-5)  # effectively ready
    dead = insert(conn, "jobs", 2, state="dead", vt_in=-60)
    other = insert(conn, "other", 2, state="dead", vt_in=-60) + insert(conn, "other", 2)

    data = purge_json(cli, "jobs", "--state", "dead", "--state", "expired")
    assert data["deleted"] == 4
    assert remaining(conn) == sorted(ready + leased + delayed + due + other)

    data = purge_json(cli, "jobs", "--state", "ready")
    assert data["deleted"] == 4  # 3 stored ready + 1 due delayed
    assert remaining(conn) == sorted(leased + delayed + other)

    data = purge_json(cli, "jobs", "--state", "delayed")
    assert data["deleted"] == 2
    assert remaining(conn) == sorted(leased + other)
    assert not set(expired + dead) & set(remaining(conn))


def test_older_than_counts_from_send_and_for_dead_letters_from_death(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    old_ready = insert(conn, "jobs", 3, age=3 * 3600)
    new_ready = insert(conn, "jobs", 2, age=30 * 60)
    # Sent five hours ago, died two hours ago: older than 1h either way.
    long_dead = insert(conn, "jobs", 1, state="dead", age=5 * 3600, vt_in=-2 * 3600)
    # Sent three days ago but died ten minutes ago: a fresh dead letter.
    fresh_dead = insert(conn, "jobs", 1, state="dead", age=3 * 86400, vt_in=-600)
    other = insert(conn, "other", 2, age=3 * 3600)

    dry = purge_json(cli, "jobs", "--state", "dead", "--older-than", "1h", "--dry-run")
    assert (dry["deleted"], dry["dry_run"]) == (1, True)
    assert len(remaining(conn)) == 9

    data = purge_json(cli, "jobs", "--older-than", "1h")
    assert data["deleted"] == 4
    assert remaining(conn) == sorted(new_ready + fresh_dead + other)
    assert not set(old_ready + long_dead) & set(remaining(conn))

    # Combined: both filters must hold.
    insert(conn, "jobs", 2, age=2 * 3600)  # ready, old
    data = purge_json(cli, "jobs", "--state", "dead", "--older-than", "5m")
    assert data["deleted"] == 1
    assert set(fresh_dead).isdisjoint(remaining(conn))
    assert len(remaining(conn, "jobs")) == 4


def test_older_than_accepts_long_retention(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    """Every duration the option parser accepts (up to ten years) reaches the database:
    a retention of more than a year is a normal thing to ask for."""
    ancient = insert(conn, "jobs", 1, state="dead", vt_in=-500 * 86400)
    recent = insert(conn, "jobs", 1, state="dead", vt_in=-300 * 86400)
    data = purge_json(cli, "jobs", "--state", "dead", "--older-than", "400d")
    assert data["deleted"] == 1
    assert remaining(conn) == recent
    assert set(ancient).isdisjoint(remaining(conn))


# ----------------------------------------------------------------------------- dry run


def test_dry_run_deletes_nothing_and_reports_the_plan(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    insert(conn, "jobs", 85, state="dead")
    insert(conn, "jobs", 5)
    before = remaining(conn)
    result = cli("purge", "jobs", "--state", "dead", "--batch", "20", "--dry-run", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["dry_run"], data["deleted"], data["batches"]) == (
        True, 85, [20, 20, 20, 20, 5]
    )
    assert result.stderr.strip() == (
        "pgq: would delete 85 message(s) from 'jobs' in 5 batch(es) of at most 20"
    )
    assert remaining(conn) == before


# ----------------------------------------------------------------------------- safety rule


def test_no_filter_is_refused_and_deletes_nothing(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    before = insert(conn, "jobs", 5)
    line = assert_failed(cli("purge", "jobs"), 2)
    assert "refusing to purge a whole queue without a filter" in line
    assert "--all" in line
    assert remaining(conn) == before


def test_all_with_a_filter_is_refused_and_deletes_nothing(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    before = insert(conn, "jobs", 5, state="dead")
    for extra in (["--state", "dead"], ["--older-than", "1s"]):
        line = assert_failed(cli("purge", "jobs", "--all", *extra), 2)
        assert "cannot be combined with filters" in line
    assert remaining(conn) == before


def test_all_deletes_every_state_of_that_queue_only(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    for state, vt_in in (("ready", 0), ("leased", 60), ("leased", -1), ("delayed", 60),
                         ("dead", -1)):
        insert(conn, "jobs", 3, state=state, vt_in=vt_in)
    other = insert(conn, "other", 4, state="leased", vt_in=60)
    data = purge_json(cli, "jobs", "--all", "--batch", "4")
    assert (data["deleted"], data["batches"], data["states"]) == (15, [4, 4, 4, 3], None)
    assert remaining(conn) == other


def test_library_refuses_the_same_things(q: Queue, conn: psycopg.Connection[Any]) -> None:
    before = insert(conn, "jobs", 3)
    with pytest.raises(InvalidInput, match="without a filter"):
        q.purge("jobs")
    with pytest.raises(InvalidInput, match="cannot be combined"):
        q.purge("jobs", everything=True, states=["ready"])
    with pytest.raises(InvalidInput, match="batch must be"):
        q.purge("jobs", everything=True, batch=0)
    with pytest.raises(InvalidInput, match="unknown state"):
        q.purge("jobs", states=["gone"])
    assert remaining(conn) == before


# ----------------------------------------------------------------------------- leases


def test_selected_leases_are_deleted_and_their_acks_then_exit_3(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    for p in (9, 8, 7):
        q.send(json.dumps(p), queue="jobs", priority=p)
    held = q.claim(queue="jobs", qty=2, vt=300)
    assert len(held) == 2
    data = purge_json(cli, "jobs", "--state", "leased")
    assert data["deleted"] == 2
    assert [m.priority for m in q.peek(queue="jobs", state="all")] == [7]
    result = cli("ack", str(held[0].msg_id), "--lease", str(held[0].lease))
    assert result.exit_code == 3, (result.stdout, result.stderr)


def test_rows_locked_by_a_claim_in_progress_are_skipped_not_waited_for(
    cli: Cli, conn: psycopg.Connection[Any], db_dsn: str
) -> None:
    ids = insert(conn, "jobs", 25)
    busy = ids[4]
    with psycopg.connect(db_dsn) as claimer:  # a transaction holding one row's lock
        claimer.execute("SELECT 1 FROM pgq.messages WHERE msg_id = %s FOR UPDATE", (busy,))
        data = purge_json(cli, "jobs", "--all", "--batch", "10")
        assert (data["deleted"], data["batches"]) == (24, [10, 10, 4])
        claimer.rollback()
    assert remaining(conn) == [busy]


# ----------------------------------------------------------------------------- max runtime


def test_max_runtime_stops_between_batches_and_says_so(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    insert(conn, "jobs", 20)
    log_deletes(conn, sleep_s=0.005)  # every batch takes longer than the budget
    result = cli("purge", "jobs", "--all", "--batch", "1", "--max-runtime", "0.001", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert (data["deleted"], data["batches"], data["stopped_early"]) == (1, [1], True)
    assert result.stderr.strip() == (
        "pgq: deleted 1 message(s) from 'jobs' in 1 batch(es) of at most 1 "
        "(stopped by --max-runtime; run it again for the rest)"
    )
    assert len(remaining(conn)) == 19
    # The next run picks up where this one stopped.
    data = purge_json(cli, "jobs", "--all", "--batch", "5", "--max-runtime", "0.001")
    assert (data["deleted"], data["stopped_early"]) == (5, True)
    assert len(remaining(conn)) == 14


def test_max_runtime_budget_is_checked_after_every_batch(
    q: Queue, conn: psycopg.Connection[Any]
) -> None:
    insert(conn, "jobs", 50)
    ticks = iter(range(0, 1000, 2))  # every look at the clock: two more seconds
    result = q.purge(
        "jobs", everything=True, batch=10, max_runtime=5, clock=lambda: float(next(ticks))
    )
    # Checked at 2 s and 4 s (go on), at 6 s (stop): three batches.
    assert (result.deleted, result.batches, result.stopped_early) == (30, (10, 10, 10), True)
    assert len(remaining(conn)) == 20
    rest = q.purge("jobs", everything=True, batch=10, max_runtime=60)
    assert (rest.deleted, rest.batches, rest.stopped_early) == (20, (10, 10), False)
    assert remaining(conn) == []


# ----------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["jobs", "--older-than", "5x"], "is not a duration"),
        (["jobs", "--older-than", "4000d"], "longer than ten years"),
        (["jobs", "--all", "--batch", "0"], "batch must be 1..100000"),
        (["jobs", "--all", "--batch", "100001"], "batch must be 1..100000"),
        (["bad name!", "--all"], "invalid queue name"),
        (["jobs", "--state", "bogus"], "unknown state 'bogus'"),
        (["jobs", "--all", "--max-runtime", "0"], "--max-runtime must be more than 0"),
        (["jobs", "--all", "--max-runtime", "soon"], "is not a duration"),
        (["jobs", "--all", "--max-runtime", "400d"], "--max-runtime"),
        (["jobs"], "without a filter"),
        (["jobs", "--all", "--state", "ready"], "cannot be combined"),
    ],
)
def test_bad_input_exits_2_before_connecting(args: list[str], says: str) -> None:
    line = assert_failed(Cli(UNREACHABLE_DSN)("purge", *args), 2)
    assert says in line


def test_unreachable_database_is_69_so_the_exit_2_above_is_meaningful() -> None:
    assert_failed(Cli(UNREACHABLE_DSN)("purge", "jobs", "--all"), 69)
