"""Errors speak the caller's language: the library names its parameters (`older_than`), the
CLI says the same error with its flags (`--older-than`) and its commands in hints. Each
request check is written once and run by both, the CLI's before it connects.
"""

from __future__ import annotations

import json
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import Cli

from pgq_cli import (
    ConnectFailed,
    InvalidInput,
    NotFound,
    PermissionDenied,
    PgqError,
    Queue,
    SchemaForeign,
    SchemaMissing,
)
from pgq_cli.core import checks

UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/x?connect_timeout=3"


def _error_line(result: Any) -> str:
    assert result.exit_code == 2, (result.exit_code, result.stderr)
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return str(lines[0])


# (library call, its words, the CLI's arguments, the CLI's words for the same check)
CASES = [
    (
        lambda q: q.claim(min_priority=8, max_priority=3),
        "min_priority is above max_priority",
        ["claim", "--min-priority", "8", "--max-priority", "3"],
        "pgq: error: --min-priority is above --max-priority",
    ),
    (
        lambda q: q.redrive_dead(older_than=-1.0),
        "older_than must be a finite number of seconds >= 0",
        None,
        None,
    ),
    (
        lambda q: q.claim(wait=-1),
        "wait must be 0..86400 seconds",
        ["claim", "--wait", "2d"],
        "pgq: error: --wait must be 0..86400 seconds, not 172800.0",
    ),
    (
        lambda q: q.configure("jobs", max_deliveries=0),
        "max_deliveries must be a whole number >= 1, not 0 — or max_deliveries=None",
        ["queue", "config", "jobs", "--max-deliveries", "0"],
        "--max-deliveries must be a whole number >= 1, not 0 — or --unlimited to remove",
    ),
    (
        lambda q: q.pause("jobs", below_priority=1),
        "below_priority 1 pauses nothing — use 2..10, or below_priority=None to pause",
        ["pause", "jobs", "--below-priority", "1"],
        "--below-priority 1 pauses nothing — use 2..10, or no --below-priority to pause",
    ),
    (
        lambda q: q.purge("jobs"),
        "give states and/or older_than, or everything=True to delete",
        ["purge", "jobs"],
        "give --state and/or --older-than, or --all to delete",
    ),
    (
        lambda q: q.purge("jobs", everything=True, states=["dead"]),
        "everything=True deletes every message of the queue; it cannot be combined",
        ["purge", "jobs", "--all", "--state", "dead"],
        "--all deletes every message of the queue; it cannot be combined",
    ),
    (
        lambda q: q.purge("jobs", everything=True, max_runtime=0),
        "max_runtime must be more than 0 seconds",
        ["purge", "jobs", "--all", "--max-runtime", "0"],
        "--max-runtime must be more than 0 seconds",
    ),
]


@pytest.mark.parametrize(("call", "library_words", "args", "cli_words"), CASES)
def test_library_names_parameters_and_the_cli_names_flags(
    q: Queue, call: Any, library_words: str, args: list[str] | None, cli_words: str | None
) -> None:
    with pytest.raises(InvalidInput) as caught:
        call(q)
    error = caught.value
    said = f"{error.message} — {error.hint}" if error.hint else error.message
    assert library_words in said
    assert "--" not in said and "pgq " not in said, said
    assert error.param is not None and error.param in said
    if args is not None:
        assert cli_words is not None
        # Before connecting: the check is the library's own, run by the CLI first.
        assert cli_words in _error_line(Cli(UNREACHABLE_DSN)(*args))


def test_dead_letter_hint_names_the_method_in_the_library_and_the_command_in_the_cli(
    q: Queue, cli: Cli
) -> None:
    msg_id = q.send("{}", queue="jobs")
    q.configure("jobs", max_deliveries=1)
    q.claim(queue="jobs")
    assert q.requeue_states([msg_id]) == {msg_id: "dead"}
    with pytest.raises(NotFound) as caught:
        q.extend(msg_id, vt=5)
    assert caught.value.hint == "dead letters are redriven with redrive_dead()"
    result = cli("extend", str(msg_id), "--vt", "5")
    assert result.exit_code == 3
    assert result.stderr.strip().endswith(
        "— dead letters are redriven with `pgq requeue --dead`"
    ), result.stderr


def test_a_flag_name_inside_another_word_is_left_alone() -> None:
    from pgq_cli.cli.boundary import in_cli_words

    text = "wait must be 0..86400 seconds — loop in the shell for longer waits"
    assert in_cli_words(text, ("wait",)) == (
        "--wait must be 0..86400 seconds — loop in the shell for longer waits"
    )
    assert in_cli_words("older_than and waits", ()) == "older_than and waits"


def test_send_file_parses_each_line_as_json_once(
    cli: Cli, q: Queue, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []

    def counting_loads(text: str, **kwargs: Any) -> Any:
        parsed.append(text)
        return json.loads(text, **kwargs)

    decoder = checks._PAYLOAD_DECODER  # the check parses with one shared decoder

    def counting_decode(text: str) -> Any:
        parsed.append(text)
        return decoder.decode(text)

    monkeypatch.setattr(checks, "json", SimpleNamespace(loads=counting_loads, dumps=json.dumps))
    monkeypatch.setattr(checks, "_PAYLOAD_DECODER", SimpleNamespace(decode=counting_decode))
    lines = ['{"n": 1}', '{"n": 2}', '{"n": 3}']
    path = tmp_path / "batch.ndjson"
    path.write_text("\n".join(lines) + "\n")
    result = cli("send", "-q", "jobs", "--file", str(path))
    assert result.exit_code == 0, result.stderr
    assert len(result.stdout.split()) == 3
    assert sorted(parsed) == sorted(lines)  # each line once, not once per check
    assert [m.payload for m in q.peek(queue="jobs")] == [{"n": 1}, {"n": 2}, {"n": 3}]


def test_a_checked_payload_is_not_parsed_again(monkeypatch: pytest.MonkeyPatch) -> None:
    checked = checks.check_payload('{"a": 1}')
    assert isinstance(checked, checks.CheckedPayload) and checked == '{"a": 1}'
    monkeypatch.setattr(checks, "json", None)  # any parse would now raise
    assert checks.check_payload(checked) is checked


@pytest.mark.parametrize(
    ("error", "cli_hint"),
    [
        (SchemaMissing(), "run `pgq migrate`"),
        (SchemaForeign(), "choose another schema with --schema or PGQ_SCHEMA"),
        (PermissionDenied(), "see `pgq migrate --print-grants`"),
        (ConnectFailed(), "--dsn/PGQ_DSN points at it"),
    ],
)
def test_default_hints_name_no_command_and_the_cli_gives_its_own(
    error: PgqError, cli_hint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from pgq_cli.cli.boundary import fail

    assert "pgq " not in error.hint and "--" not in error.hint and error.hint
    exit_ = fail(error)
    assert exit_.exit_code == int(error.exit_code)
    line = capsys.readouterr().err.strip()
    assert line.startswith("pgq: error: ") and line.endswith(cli_hint), line


def test_a_hint_given_with_the_error_is_kept_as_given(capsys: pytest.CaptureFixture[str]) -> None:
    from pgq_cli.cli.boundary import fail

    fail(SchemaMissing("no table", hint="ask the admin"))
    assert capsys.readouterr().err.strip() == "pgq: error: no table — ask the admin"


def test_missing_schema_says_run_pgq_migrate_on_the_command_line(cli: Cli) -> None:
    result = cli("peek", env={"PGQ_SCHEMA": "nowhere"})
    assert result.exit_code == 78
    assert result.stderr.strip().endswith("— run `pgq migrate`"), result.stderr
