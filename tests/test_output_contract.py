"""The output contract (README, "Output"): one name per field in every format.

The oldest ready age is `oldest_ready_age` (seconds) in stats' and watch's JSON, in the
plain/table column header and as a `--fail-if` metric; Prometheus, whose names carry their
unit, calls it `pgq_oldest_ready_age_seconds`. No format uses another spelling.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli
from test_health import bulk
from test_prometheus import parse_exposition

from pgq_cli.core.queue import Queue
from pgq_cli.ops import estimate

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


# ------------------------------------------------------------------- drained queues report 0


def _families(text: str) -> dict[tuple[str, ...], float]:
    """pgq_messages samples as {(queue, priority, state): value}, parsed strictly."""
    return parse_exposition(text)["pgq_messages"].by("queue", "priority", "state")


def test_a_configured_queue_that_drains_reports_zero_in_stats_and_prometheus(
    cli: Cli, q: Queue
) -> None:
    q.configure("billing", max_deliveries=5)
    q.pause("billing")
    msg_id = q.send("{}", queue="billing", priority=9)
    q.send("{}", queue="other")
    q.ack([msg_id])
    result = cli("stats", "--json", "-q", "billing")
    assert result.exit_code == 0, result.stderr
    assert [json.loads(line) for line in result.stdout.splitlines()] == [{
        "queue": "billing", "priority": 5, "ready": 0, "leased": 0, "expired": 0,
        "delayed": 0, "dead": 0, "oldest_ready_age": None, "max_read_ct": 0, "paused": True,
    }]
    for args in (["--estimate"], []):
        text = cli("stats", "--format", "prometheus", *args).stdout
        samples = _families(text)
        assert samples["billing", "5", "ready"] == 0, text
        assert samples["other", "5", "ready"] == 1, text
        assert parse_exposition(text)["pgq_paused"].value(
            schema="pgq", queue="billing", priority="5") == 1


def test_an_unconfigured_queue_in_the_previous_textfile_is_written_again_at_zero(
    cli: Cli, q: Queue, tmp_path: Path
) -> None:
    """The textfile remembers the groups it reported: a queue without settings that drains
    stays in it at 0 (per priority), while a queue never seen does not appear."""
    drains = [q.send("{}", queue="drains.q:1", priority=p) for p in (9, 2)]
    q.send("{}", queue="stays", priority=4)
    assert cli("stats", "--textfile-dir", str(tmp_path)).exit_code == 0
    before = _families((tmp_path / "pgq.prom").read_text())
    assert before["drains.q:1", "9", "ready"] == 1
    q.ack(drains)
    assert cli("stats", "--textfile-dir", str(tmp_path)).exit_code == 0
    after = _families((tmp_path / "pgq.prom").read_text())
    assert set(after) == set(before)
    assert after["drains.q:1", "9", "ready"] == 0
    assert after["drains.q:1", "2", "ready"] == 0
    assert after["stays", "4", "ready"] == 1
    # A plain `stats` (no textfile) does not remember them: it has no previous output.
    plain = cli("stats", "--json").stdout
    assert [json.loads(line)["queue"] for line in plain.splitlines()] == ["stays"]


# ---------------------------------------------------------- plain columns, --header, README

README = Path(__file__).resolve().parent.parent / "README.md"


def _documented_columns() -> dict[str, list[str]]:
    """README's plain-columns table: {command as written: [column, ...]}."""
    columns = {}
    for line in README.read_text().splitlines():
        match = re.match(r"^\| (`[^|]+`) \| (`[^|]+`)(?: \([^|]*\))? \|$", line)
        if match and "plain columns" not in line:
            names = re.findall(r"`([^`]+)`", match.group(2))
            for command in re.findall(r"`([^`]+)`", match.group(1)):
                columns[command] = names
    return columns


@pytest.mark.parametrize(
    ("documented", "args"),
    [
        ("peek", ["peek", "-q", "jobs"]),
        ("claim", ["claim", "-q", "jobs"]),
        ("stats", ["stats"]),
        ("queues", ["queues"]),
        ("migrate --list", ["migrate", "--list"]),
    ],
)
def test_plain_output_has_the_readme_columns_and_header_names_them(
    cli: Cli, q: Queue, documented: str, args: list[str]
) -> None:
    q.send('{"text": "a\\ttab and a\\nnewline"}', queue="jobs", priority=7)
    q.configure("jobs", max_deliveries=3)
    columns = _documented_columns()[documented]
    with_header = cli(*args, "--header")
    assert with_header.exit_code == 0, with_header.stderr
    lines = with_header.stdout.splitlines()
    assert lines[0].split("\t") == columns
    assert len(lines) >= 2
    for record in lines[1:]:
        assert len(record.split("\t")) == len(columns), record
    if documented != "claim":  # a second claim would find nothing
        # The same records without the header (the first two fields: ages move on).
        without = cli(*args).stdout.splitlines()
        assert [r.split("\t")[:2] for r in without] == [r.split("\t")[:2] for r in lines[1:]]


def test_header_on_an_empty_result_prints_the_header_only(cli: Cli) -> None:
    result = cli("peek", "-q", "nothing", "--header")
    assert (result.exit_code, result.stdout) == (0, "\t".join(_documented_columns()["peek"]) + "\n")
    assert cli("peek", "-q", "nothing").stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["requeue", "--expired", "--json"],
        ["requeue", "--dead", "--all", "--json"],
        ["migrate", "--json"],
        ["purge", "nothing", "--all", "--json"],
        ["queue", "config", "jobs", "--max-deliveries", "3", "--json"],
        ["pause", "jobs", "--json"],
        ["resume", "jobs", "--json"],
        ["watch", "--once", "--json"],
        ["info", "--json"],
    ],
    ids=lambda args: " ".join(a for a in args if not a.startswith("--json")),
)
def test_a_result_command_prints_one_json_object_even_when_nothing_was_done(
    cli: Cli, args: list[str]
) -> None:
    result = cli(*args)
    assert result.exit_code == 0, result.stderr
    (line,) = result.stdout.splitlines()
    assert isinstance(json.loads(line), dict)


# ------------------------------------------------------------ estimates say so in every format


def test_every_stats_format_marks_the_estimated_numbers(
    cli: Cli, conn: psycopg.Connection[Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A group over the exact cap is estimated (flagged), a small one is exact. Plain adds
    an `estimated` column naming the estimated states (empty: all exact), table the same
    and a `~` before each estimated number, JSON `estimated` and `estimate_bounds`."""
    bulk(conn, "big", 2 * estimate.EXACT_READY_CAP + 1, priority=5)
    bulk(conn, "small", 3, priority=5)
    conn.execute("ANALYZE pgq.messages")
    # A sample of part of the table: on the whole of a table this small it would count.
    monkeypatch.setattr(estimate, "SAMPLE_PAGES", 20)
    expected = {("big", "5"): "ready", ("small", "5"): ""}
    plain = cli("stats", "--estimate", "--header")
    assert plain.exit_code == 0, plain.stderr
    header, *records = (line.split("\t") for line in plain.stdout.splitlines())
    assert header == [*_documented_columns()["stats"], "estimated"]
    assert {(r[0], r[1]): r[-1] for r in records} == expected
    assert all(r[2].isdigit() for r in records)  # plain numbers stay numbers
    table = cli("stats", "--estimate", "--format", "table").stdout.splitlines()
    assert table[0].split()[-1] == "estimated"
    cells = {(r.split()[0], r.split()[1]): r.split() for r in table[2:]}
    assert cells[("big", "5")][2].startswith("~") and cells[("big", "5")][-1] == "ready"
    # All exact: no `~`, and an empty estimated column (the last word is paused: no).
    small = cells[("small", "5")]
    assert small[2:7] == ["3", "0", "0", "0", "0"] and small[8:] == ["0", "no"]
    rows = [json.loads(line) for line in cli("stats", "--estimate", "--json").stdout.splitlines()]
    flags = {(r["queue"], str(r["priority"])): (r["estimated"], sorted(r["estimate_bounds"]))
             for r in rows}
    assert flags == {("big", "5"): (True, ["ready"]), ("small", "5"): (False, [])}
    big = next(r for r in rows if r["queue"] == "big")
    assert abs(big["ready"] - (2 * estimate.EXACT_READY_CAP + 1)) <= big["estimate_bounds"]["ready"]
    exact = cli("stats", "--header").stdout.splitlines()
    assert exact[0].split("\t") == _documented_columns()["stats"]  # no column without it


def test_header_holds_for_its_own_invocation_only(cli: Cli, q: Queue) -> None:
    """One process, two invocations (the in-process runner): --header on the first does
    not leak into the second."""
    q.send("{}", queue="jobs")
    assert cli("stats", "--header").stdout.startswith("queue\t")
    after = cli("stats").stdout.splitlines()
    assert after and not after[0].startswith("queue\t")
