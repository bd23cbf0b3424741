"""`pgq doctor` on fair queues: the fair claim's plan check passes on a healthy fair queue,
is serious without its index, and the fix rebuilds exactly what the migration built."""

from __future__ import annotations

import json
import re
from typing import Any

from conftest import Cli
from test_doctor import fill, indexdefs, one, run_fix

from pgq_cli.core import fair_queries, migrate
from pgq_cli.core.queue import Queue
from pgq_cli.ops import doctor


def test_a_healthy_fair_queue_passes(cli: Cli, q: Queue, conn: Any) -> None:
    q.configure_fairness("jobs", fair=True)
    fill(q, 50_000, queue="jobs")  # large enough that reading it whole is not the plan
    conn.execute("ANALYZE pgq.messages")
    result = cli("doctor", "--queue", "jobs", "--json")
    assert one(result, "fair_claim_plan") == {
        "check": "fair_claim_plan",
        "severity": "ok",
        "summary": "the fair claim probes keys by messages_fair_ready_idx",
        "fix": "",
    }
    assert one(result, "indexes")["severity"] == "ok"


def test_an_ordinary_queue_gets_no_fair_plan_check(cli: Cli) -> None:
    result = cli("doctor", "--json")
    assert [f for f in map(json.loads, result.stdout.splitlines())
            if f["check"] == "fair_claim_plan"] == []


def test_missing_fair_index_is_serious_and_its_fix_rebuilds_exactly_it(
    cli: Cli, q: Queue, conn: Any
) -> None:
    q.configure_fairness("jobs", fair=True)
    fill(q, 50_000, queue="jobs")
    conn.execute("ANALYZE pgq.messages")
    before = indexdefs(conn)
    conn.execute("DROP INDEX pgq.messages_fair_ready_idx")
    result = cli("doctor", "--queue", "jobs", "--json")
    assert result.exit_code == 3, result.stdout
    finding = one(result, "indexes")
    expected = doctor.EXPECTED_INDEXES["messages_fair_ready_idx"]
    assert finding == {
        "check": "indexes",
        "severity": "serious",
        "summary": f"index pgq.messages_fair_ready_idx is missing: {expected.why}",
        "fix": expected.create.format(table="pgq.messages"),
    }
    plan = one(result, "fair_claim_plan")
    assert plan["severity"] == "serious"
    assert plan["summary"].startswith("the fair claim cannot use messages_fair_ready_idx")
    run_fix(conn, finding["fix"])
    assert indexdefs(conn) == before
    healed = cli("doctor", "--queue", "jobs", "--json")
    assert one(healed, "fair_claim_plan")["severity"] == "ok"


def _squeeze(text: str) -> str:
    return re.sub(r"\s+", " ", text)


def test_the_probe_doctor_plans_is_the_one_fair_claim_runs() -> None:
    """doctor EXPLAINs fair_queries.FAIR_KEY_PROBE; the function in the migration must
    probe a key the same way (same predicates, same order), or the check means nothing."""
    function = next(m for m in migrate.available() if "CREATE FUNCTION fair_claim(" in m.sql_text)
    body = _squeeze(function.sql_text.split("CREATE FUNCTION fair_claim(")[1])
    probe = _squeeze(fair_queries.FAIR_KEY_PROBE)
    for placeholder, in_function in (
        ("%(queue)s", "for_queue"),
        ("%(key)s", "k.key"),
        ("%(min_priority)s", "floor_priority"),
        ("%(max_priority)s", "max_priority"),
        ("{messages}", "messages"),
    ):
        probe = probe.replace(placeholder, in_function)
    where_to_order = probe[probe.index("FROM") : probe.index(" LIMIT")]
    assert where_to_order in body
