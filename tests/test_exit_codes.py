"""Bad input and bad situations: the documented exit code, one line on stderr, no traceback,
nothing on stdout, and nothing written to the database.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli, PgServer
from helpers import UNREACHABLE_DSN, assert_failed, fresh_database
from typer.testing import CliRunner

from pgq_cli.cli.main import app
from pgq_cli.core.exitcodes import EXIT_CODE_MEANINGS, ExitCode


@pytest.fixture(scope="module")
def shared_dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """One migrated database with one message, shared by the many bad-input cases below:
    each case proves it left the database exactly as it found it, so sharing is safe and
    saves a database per case."""
    for dsn in fresh_database(pg_server.admin_dsn, template_db):
        assert Cli(dsn)("send", '{"seed": 1}').exit_code == 0
        yield dsn


@pytest.fixture(scope="module")
def shared_empty_dsn(pg_server: PgServer) -> Iterator[str]:
    """One database without the pgq schema; each case checks nothing was created in it."""
    yield from fresh_database(pg_server.admin_dsn)


def count_messages(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row is not None
    return int(row[0])


def test_exit_codes_are_the_documented_numbers() -> None:
    assert {c.name: int(c) for c in ExitCode} == {
        "OK": 0,
        "FAILURE": 1,
        "USAGE": 2,
        "NOTHING_DONE": 3,
        "BAD_PAYLOAD": 65,
        "UNAVAILABLE": 69,
        "TEMPORARY": 75,
        "NO_PERMISSION": 77,
        "CONFIG": 78,
        "INTERRUPTED": 130,
    }


README = Path(__file__).resolve().parent.parent / "README.md"


def readme_exit_codes() -> dict[int, str]:
    """The README's exit-code table (under "### Exit codes") as {code: meaning}."""
    section = README.read_text(encoding="utf-8").split("### Exit codes", 1)[1]
    table = section.split("\n\n", 2)[1]  # the first block after the heading
    rows = re.findall(r"^\| (\d+) \| (.+?) \|$", table, re.MULTILINE)
    assert rows, "no exit-code table under '### Exit codes' in README.md"
    return {int(code): meaning for code, meaning in rows}


def test_every_exit_code_has_one_meaning() -> None:
    assert set(EXIT_CODE_MEANINGS) == set(ExitCode)
    assert all(meaning.strip() for meaning in EXIT_CODE_MEANINGS.values())


def test_readme_exit_code_table_is_the_enum_word_for_word() -> None:
    """README and ExitCode cannot drift: same codes, in order, with the same meanings."""
    documented = readme_exit_codes()
    assert list(documented) == [int(code) for code in ExitCode]
    assert documented == {int(code): EXIT_CODE_MEANINGS[code] for code in ExitCode}


def test_root_help_exit_codes_come_from_the_enum() -> None:
    result = CliRunner().invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.replace("│", " ").split())
    for code in ExitCode:
        assert f"{int(code)} {EXIT_CODE_MEANINGS[code]}" in text, code


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["send", "-p", "0", "{}"], 2, "priority 0 is out of range"),
        (["send", "-p", "11", "{}"], 2, "priority 11 is out of range"),
        (["send", "-p", "x", "{}"], 2, "--priority"),
        (["send", "--priority", "5.5", "{}"], 2, "--priority"),
        (["send", "{not json"], 65, "not valid JSON"),
        (["send", "NaN"], 65, "not valid JSON"),
        (["send", ""], 65, "not valid JSON"),
        (["send", "-q", "bad name", "{}"], 2, "invalid queue name"),
        (["send", "-q", "x;drop table pgq.messages", "{}"], 2, "invalid queue name"),
        (["send", "-q", "", "{}"], 2, "invalid queue name"),
        (["send", "-q", "a" * 65, "{}"], 2, "invalid queue name"),
        (["send", "--delay", "-1", "{}"], 2, "delay"),
        (["send"], 2, "give one PAYLOAD or --file"),
        (["send", "{}", "--file", "x.ndjson"], 2, "give one PAYLOAD or --file"),
        (["send", "--file", "/nonexistent/pgq.ndjson"], 2, "cannot read"),
        (["claim", "-n", "0"], 2, "qty"),
        (["claim", "--vt", "0"], 2, "vt"),
        (["claim", "--min-priority", "0"], 2, "priority 0"),
        (["claim", "--max-priority", "11"], 2, "priority 11"),
        (["claim", "-q", "no/slash"], 2, "invalid queue name"),
        (["peek", "--state", "lost"], 2, "unknown state"),
        (["ack"], 2, "MSG_IDS"),
        (["ack", "abc"], 2, "MSG_IDS"),
        (["ack", "0"], 2, "malformed message id"),
        (["requeue"], 2, "give MSG_IDs"),
        (["requeue", "1", "--expired"], 2, "give MSG_IDs"),
        (["extend", "1"], 2, "--vt"),
        (["extend", "1", "--vt", "-5"], 2, "vt"),
        (["stats", "-q", "bad name"], 2, "invalid queue name"),
        (["nosuchcommand"], 2, "No such command"),
    ],
)
def test_bad_input_is_refused_before_any_write(
    shared_dsn: str, args: list[str], code: int, says: str
) -> None:
    snapshot = "SELECT msg_id, state, vt, read_ct, lease, payload FROM pgq.messages"
    with psycopg.connect(shared_dsn) as conn:
        before = conn.execute(snapshot).fetchall()
    assert len(before) == 1
    line = assert_failed(Cli(shared_dsn)(*args), code)
    assert says.lower() in line.lower()
    with psycopg.connect(shared_dsn) as conn:
        assert conn.execute(snapshot).fetchall() == before


@pytest.mark.parametrize(
    "args",
    [
        ["send", "-p", "0", "{}"],
        ["send", "-q", "bad name", "{}"],
        ["claim", "-n", "0"],
        ["claim", "--min-priority", "8", "--max-priority", "3"],
        ["peek", "--limit", "0"],
        ["peek", "--state", "lost"],
        ["ack", "0"],
        ["ack", "1", "--lease", "nope"],
        ["requeue", "1", "--delay", "-1"],
        ["extend", "1", "--vt", "0"],
    ],
)
def test_invalid_input_is_exit_2_even_when_the_database_is_down(args: list[str]) -> None:
    """Input is checked before connecting: the user learns the real problem first."""
    assert_failed(Cli(UNREACHABLE_DSN)(*args), 2)


def test_invalid_payload_is_exit_65_even_when_the_database_is_down() -> None:
    assert_failed(Cli(UNREACHABLE_DSN)("send", "{oops"), 65)


@pytest.mark.parametrize(
    "args",
    [
        ["send", "{}"],
        ["claim"],
        ["peek"],
        ["ack", "1"],
        ["requeue", "1"],
        ["requeue", "--expired"],
        ["extend", "1", "--vt", "10"],
        ["stats"],
        ["migrate"],
        ["migrate", "--list"],
    ],
)
def test_unreachable_server_is_exit_69(args: list[str]) -> None:
    line = assert_failed(Cli(UNREACHABLE_DSN)(*args), 69)
    assert "could not connect" in line


def test_unreachable_server_names_the_cause() -> None:
    line = assert_failed(Cli(UNREACHABLE_DSN)("stats"), 69)
    assert "refused" in line.lower() or "127.0.0.1" in line, line


@pytest.mark.parametrize(
    "args",
    [
        ["send", "{}"],
        ["send", "--file", "-"],
        ["claim"],
        ["peek"],
        ["peek", "--state", "all"],
        ["ack", "1"],
        ["requeue", "1"],
        ["requeue", "--expired"],
        ["extend", "1", "--vt", "10"],
        ["stats"],
    ],
)
def test_missing_schema_is_exit_78_and_creates_nothing(
    shared_empty_dsn: str, args: list[str]
) -> None:
    line = assert_failed(Cli(shared_empty_dsn)(*args, input='{"a": 1}\n'), 78)
    assert "pgq migrate" in line
    with psycopg.connect(shared_empty_dsn) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgq'"
        ).fetchone()
    assert row == (0,)


def test_unknown_id_is_exit_3_for_each_command(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    for args in (["ack", "424242"], ["requeue", "424242"], ["extend", "424242", "--vt", "5"]):
        assert "424242" in assert_failed(cli(*args), 3)
    assert count_messages(conn) == 0


def test_ack_known_and_unknown_acks_the_known_and_exits_3(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    known = int(cli("send", "{}").stdout)
    result = cli("ack", str(known), "424242")
    assert result.exit_code == 3
    assert "424242" in result.stderr
    # stdout is the record of what was done: the acked id is printed even though it exits 3.
    assert result.stdout == f"{known}\n"
    assert count_messages(conn) == 0


def test_requeue_known_and_unknown_requeues_the_known_and_exits_3(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    known = int(cli("send", "{}").stdout)
    assert cli("claim").exit_code == 0
    result = cli("requeue", "424242", str(known), "--json")
    assert result.exit_code == 3
    assert "424242" in result.stderr
    # --json: every id given, in that order, with its result (issue #11's contract).
    assert [json.loads(line) for line in result.stdout.splitlines()] == [
        {"msg_id": 424242, "result": "unknown"},
        {"msg_id": known, "result": "requeued"},
    ]
    assert conn.execute("SELECT state FROM pgq.messages").fetchall() == [("ready",)]


def test_empty_claim_is_exit_0_silent_or_exit_3_with_fail_if_empty(cli: Cli) -> None:
    quiet = cli("claim")
    assert (quiet.exit_code, quiet.stdout, quiet.stderr) == (0, "", "")
    line = assert_failed(cli("claim", "--fail-if-empty"), 3)
    assert "nothing ready" in line


def test_ndjson_with_one_bad_line_inserts_nothing(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    lines = [json.dumps({"n": i}) for i in range(50)]
    lines[37] = '{"n": 37,'
    path = tmp_path / "batch.ndjson"
    path.write_text("\n".join(lines) + "\n")
    line = assert_failed(cli("send", "--file", str(path)), 65)
    assert "line 38" in line
    from_stdin = cli("send", "--file", "-", input="\n".join(lines) + "\n")
    assert "line 38" in assert_failed(from_stdin, 65)
    assert count_messages(conn) == 0


def test_ndjson_not_utf8_is_exit_2(cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    path = tmp_path / "latin1.ndjson"
    path.write_bytes(b'{"a": "\xe9"}\n')
    assert_failed(cli("send", "--file", str(path)), 2)
    assert count_messages(conn) == 0


def test_oversized_payload_is_exit_65(cli: Cli, conn: psycopg.Connection[Any]) -> None:
    big = json.dumps({"blob": "x" * (1024 * 1024)})
    assert "limit" in assert_failed(cli("send", "-", input=big), 65)
    assert count_messages(conn) == 0


def test_debug_shows_a_traceback_without_it_none(cli: Cli) -> None:
    plain = cli("extend", "5", "--vt", "1")
    assert plain.exit_code == 3 and "Traceback" not in plain.stderr
    debug = cli("--debug", "extend", "5", "--vt", "1")
    assert debug.exit_code == 3
    assert "Traceback" in debug.stderr
    assert debug.stderr.strip().splitlines()[-1].startswith("pgq: error: ")


def test_bad_dsn_is_exit_78_and_does_not_echo_it() -> None:
    result = Cli("host=127.0.0.1 password=hunter2 port=notaport")("stats")  # via PGQ_DSN
    line = assert_failed(result, 78)
    assert "hunter2" not in result.stderr and "hunter2" not in line


def test_password_warning_only_for_a_dsn_on_the_command_line() -> None:
    dsn = "postgresql://postgres:s3cret@127.0.0.1:1/postgres?connect_timeout=3"
    from_env = Cli(dsn)("stats")
    assert_failed(from_env, 69)  # one line: no warning for PGQ_DSN
    typed = Cli("")("stats", "--dsn", dsn)
    assert typed.exit_code == 69
    assert "--dsn carries a password" in typed.stderr
    assert "s3cret" not in typed.stderr + from_env.stderr


def test_no_such_database_is_exit_78(db_dsn: str) -> None:
    dsn = psycopg.conninfo.make_conninfo(db_dsn, dbname="pgq_no_such_database")
    line = assert_failed(Cli(dsn)("stats"), 78)
    assert "no such database" in line and "pgq_no_such_database" in line


def test_unknown_role_is_exit_78(db_dsn: str) -> None:
    dsn = psycopg.conninfo.make_conninfo(db_dsn, user="pgq_no_such_role")
    line = assert_failed(Cli(dsn)("stats"), 78)
    assert "pgq_no_such_role" in line
