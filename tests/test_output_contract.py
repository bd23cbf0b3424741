"""The output contract (README, "Output"): one name per field in every format.

The oldest ready age is `oldest_ready_age` (seconds) in stats' and watch's JSON, in the
plain/table column header and as a `--fail-if` metric; Prometheus, whose names carry their
unit, calls it `pgq_oldest_ready_age_seconds`. No format uses another spelling.
"""

from __future__ import annotations

import json
import re
from typing import Any

import psycopg
from conftest import Cli

from pgq_cli.core.queue import Queue

OTHER_SPELLINGS = ("oldest_ready_age_s", "oldest_ready_s", "oldest_ready_seconds")


def _age_a_message(q: Queue, conn: psycopg.Connection[Any]) -> None:
    msg_id = q.send("{}", queue="jobs")
    conn.execute(
        "UPDATE pgq.messages SET vt = now() - interval '100 seconds', "
        "enqueued_at = now() - interval '100 seconds' WHERE msg_id = %s",
        (msg_id,),
    )


def test_the_oldest_ready_age_has_one_name_in_every_format(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    _age_a_message(q, conn)
    outputs = {
        "stats-json": cli("stats", "--json"),
        "stats-table": cli("stats", "--format", "table"),
        "watch-json": cli("watch", "--once", "--json"),
        "prometheus": cli("stats", "--format", "prometheus"),
    }
    for name, result in outputs.items():
        assert result.exit_code == 0, (name, result.stderr)
        for other in OTHER_SPELLINGS:
            assert not re.search(rf"\b{other}\b", result.stdout), (name, other, result.stdout)
    (row,) = [json.loads(line) for line in outputs["stats-json"].stdout.splitlines()]
    assert 100 <= row["oldest_ready_age"] < 200
    frame = json.loads(outputs["watch-json"].stdout)
    assert 100 <= frame["oldest_ready_age"] < 200
    assert frame["rows"][0]["oldest_ready_age"] == frame["oldest_ready_age"]
    header = outputs["stats-table"].stdout.splitlines()[0].split()
    assert "oldest_ready_age" in header
    assert "pgq_oldest_ready_age_seconds{" in outputs["prometheus"].stdout
    crossed = cli("stats", "--fail-if", "oldest_ready_age>50")
    assert crossed.exit_code == 3
    assert "oldest_ready_age is" in crossed.stderr
