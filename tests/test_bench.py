"""`pgq bench` end to end with tiny sizes, and its over-claim/duplicate accounting.

The numbers themselves are not asserted (performance is measured in bench/, never in timed
unit tests); the structure, the safety counts and the scratch-schema hygiene are.
"""

from __future__ import annotations

import json
from typing import Any

import psycopg
from conftest import Cli
from helpers import UNREACHABLE_DSN

from pgq_cli.bench import runner as bench
from pgq_cli.core.errors import PgqError
from pgq_cli.core.queue import Queue

TINY = ("--inflight", "0,500", "--samples", "20", "--messages", "200", "--consumers", "2",
        "--ready", "100")


def _scratch_schemas(conn: psycopg.Connection[Any]) -> list[str]:
    rows = conn.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'pgq_bench_%' ORDER BY 1"
    ).fetchall()
    return [str(r[0]) for r in rows]


def test_bench_json_structure_zero_over_claims_and_real_queues_untouched(
    cli: Cli, conn: psycopg.Connection[Any], q: Queue
) -> None:
    real_id = q.send('{"real": true}', queue="bench")  # same name as the bench's queue
    result = cli("bench", *TINY, "--delayed", "300", "--compare-naive", "--explain", "--json")
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout)
    levels = report["levels"]
    assert [(lv["design"], lv["backlog_kind"], lv["backlog"]) for lv in levels] == [
        ("pgq", "inflight", 0), ("naive", "inflight", 0),
        ("pgq", "inflight", 500), ("naive", "inflight", 500),
        ("pgq", "delayed", 300), ("naive", "delayed", 300),
    ]
    for level in levels:
        latency = level["latency"]
        assert latency["samples"] == 20
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] <= latency["max"]
        assert level["over_claims"] == 0
        assert level["duplicate_leases"] == 0
        assert level["failed_acks"] == 0
        assert level["throughput"]["messages"] == 200
        assert level["throughput"]["msgs_per_s"] > 0
        assert level["claims"] >= 20 + 200
    assert levels[0]["p99_ratio"] == 1.0 and levels[2]["p99_ratio"] > 0
    assert report["over_claims"] == 0 and report["duplicate_leases"] == 0
    assert report["claims"] == sum(lv["claims"] for lv in levels)
    assert "messages_ready_idx" in report["explain"]["pgq"]
    assert "Rows Removed by Filter: 500" in report["explain"]["naive"]
    assert report["kept"] is False
    # Scratch schema gone; the real queue of the same name still holds its message, ready.
    assert _scratch_schemas(conn) == []
    assert [(m.msg_id, m.state) for m in q.peek(queue="bench")] == [(real_id, "ready")]


def test_bench_keep_leaves_the_scratch_schema_and_plain_output_is_a_table(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    result = cli("bench", "--inflight", "0", "--samples", "5", "--messages", "0", "--keep")
    assert result.exit_code == 0, result.stderr
    kept = _scratch_schemas(conn)
    assert len(kept) == 1
    assert f"kept scratch schema {kept[0]}" in result.stderr
    assert "p99 vs 0" in result.stdout and "over-claims 0" in result.stdout
    bench.drop_scratch(conn, kept[0])


def test_bench_refuses_bad_sizes_before_connecting(cli: Cli) -> None:
    for args in (("--inflight", "0,ten"), ("--qty", "0"), ("--consumers", "0")):
        result = cli("bench", *args, env={"PGQ_DSN": UNREACHABLE_DSN})
        assert result.exit_code == 2, (args, result.stderr)
        assert result.stderr.startswith("pgq: error: "), result.stderr
        assert result.stdout == ""


def test_accounting_sees_over_claims_and_duplicate_leases() -> None:
    log = bench.ClaimLog(qty=2)
    log.record([1, 2], at=0.0)
    log.record([3, 4, 5], at=1.0)  # one more than qty
    log.record([1], at=2.0)  # 1 again while its lease (vt 10) is live
    log.record([2], at=20.0)  # 2 again after its lease ran out: a redelivery, not a duplicate
    assert (log.claims, log.over_claims) == (4, 1)
    assert bench.count_duplicate_leases(log.leases, vt=10.0) == 1


def test_bench_counts_an_over_claiming_design(conn: psycopg.Connection[Any], db_dsn: str) -> None:
    """The built-in check is not decorative: a claim that returns too much is counted."""

    class OverClaiming(bench.NaiveDesign):
        def claim(self, conn: psycopg.Connection[Any], queue: str, qty: int) -> list[int]:
            return super().claim(conn, queue, qty + 1)

    schema = bench.scratch_schema_name()
    bench.create_scratch(conn, schema, naive=True)
    try:
        design = OverClaiming(schema)
        design.top_up_ready(conn, "bench", 40)
        _, log = bench.sample_latency(conn, design, "bench", 1, 10)
        assert log.over_claims == log.claims == 15
        throughput, consumer_log = bench.run_consumers(
            lambda: psycopg.connect(db_dsn, autocommit=True), design, "bench",
            consumers=2, qty=1, max_seconds=10,
        )
        assert consumer_log.over_claims > 0 and throughput.messages == 10
    finally:
        bench.drop_scratch(conn, schema)


def test_a_failing_run_still_drops_its_scratch_schema(
    conn: psycopg.Connection[Any], db_dsn: str
) -> None:
    opened: list[psycopg.Connection[Any]] = []

    def open_conn() -> psycopg.Connection[Any]:
        if len(opened) == 2:  # the first consumer connection: fail mid-run
            raise psycopg.OperationalError("the server went away")
        opened.append(psycopg.connect(db_dsn, autocommit=True))
        return opened[-1]

    config = bench.BenchConfig(inflight=(0,), samples=3, messages=10)
    try:
        bench.run(open_conn, config)
    except PgqError as exc:
        assert "went away" in exc.message
    else:
        raise AssertionError("the run should have failed")
    assert _scratch_schemas(conn) == []
    assert all(c.closed for c in opened)


def test_the_naive_table_gets_the_storage_parameters_the_migrations_gave_pgq(
    conn: psycopg.Connection[Any],
) -> None:
    schema = bench.scratch_schema_name()
    bench.create_scratch(conn, schema, naive=True)
    try:
        options = {
            table: conn.execute(
                "SELECT reloptions FROM pg_class WHERE oid = %s::regclass", (f"{schema}.{table}",)
            ).fetchone()
            for table in ("messages", "naive_messages")
        }
    finally:
        bench.drop_scratch(conn, schema)
    real, naive = options["messages"], options["naive_messages"]
    assert real is not None and "fillfactor=80" in real[0]  # as sql/0001 writes it
    assert naive is not None and sorted(naive[0]) == sorted(real[0])
