"""One option vocabulary across every command (README, "Options").

The structural tests walk every command the root group registers (`main.COMMAND_MODULES`,
groups included), so a new command, or a new option, that does not follow the vocabulary
fails them: -q/--queue for a queue, durations for every time, -n only for a quantity,
--format/--json on every command that prints data, --debug and --quiet after the command.
The behavioural tests run the real commands against a real server.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import Enum
from typing import Any

import psycopg
import pytest
import typer
import typer.main
from conftest import Cli
from helpers import UNREACHABLE_DSN, assert_failed

from pgq_cli.cli import main
from pgq_cli.cli.options import DURATION, MILLISECONDS
from pgq_cli.core.durations import parse_duration, parse_milliseconds
from pgq_cli.core.errors import InvalidInput
from pgq_cli.core.migrate import ADVISORY_LOCK_KEY
from pgq_cli.core.queue import Queue

OUTPUT_FORMATS = {"auto", "rich", "table", "plain", "json"}
# Commands that print no data on stdout, and so take no --format/--json.
NO_DATA = {
    ("demo",): "a narrated tour, not data",
    ("work",): "stdout is not pgq's: each CMD's output goes to stderr",
    ("embedded", "stop"): "prints nothing on stdout; one status line on stderr",
}
# Options that take a number that is not a time.
NOT_TIME = {"--weight"}
# An option whose name says it is a time must take a duration (DURATION or MS in help).
TIME_WORDS = {"vt", "delay", "wait", "interval", "timeout", "window", "runtime", "older", "age",
              "grace", "seconds"}


def _walk(command: Any, ctx: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    names = command.list_commands(ctx) if hasattr(command, "list_commands") else []
    if not names:
        yield path, command
        return
    for name in names:
        sub = command.get_command(ctx, name)
        assert sub is not None, name
        yield from _walk(sub, typer.Context(sub, parent=ctx, info_name=name), (*path, name))


def leaf_commands() -> list[tuple[tuple[str, ...], Any]]:
    """(path, click command) of every command pgq runs, through the root group as a run
    loads them (lazily, with the common options added)."""
    root = typer.main.get_command(main.app)
    return list(_walk(root, typer.Context(root), ()))


LEAVES = leaf_commands()
LEAF_IDS = [" ".join(path) for path, _ in LEAVES]


def options(command: Any) -> list[Any]:
    return [p for p in command.params if getattr(p, "param_type_name", "") == "option"]


def option_named(command: Any, flag: str) -> Any | None:
    return next((p for p in options(command) if flag in p.opts), None)


def annotation(param: Any) -> Any:
    return getattr(getattr(param, "type_descriptor", None), "annotation", None)


def time_options(command: Any) -> list[tuple[str, str]]:
    """(flag, metavar) of every option that takes a time."""
    return [
        (p.opts[0], p.metavar) for p in options(command) if p.metavar in (DURATION, MILLISECONDS)
    ]


def test_the_walk_finds_every_command() -> None:
    found = {path for path, _ in LEAVES}
    assert {("send",), ("claim",), ("queue", "config"), ("queue", "key"),
            ("embedded", "path"), ("stats",), ("purge",)} <= found
    top = {path[0] for path in found}
    assert top == set(main.MODULE_OF_COMMAND)


# ------------------------------------------------------------------- structure


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=LEAF_IDS)
def test_a_queue_is_always_dash_q(path: tuple[str, ...], command: Any) -> None:
    """Every command with a queue parameter (option or argument) takes -q/--queue, and -q
    means nothing else."""
    takes_queue = [p for p in command.params if "queue" in (p.name or "")]
    queue_opt = option_named(command, "--queue")
    if takes_queue:
        assert queue_opt is not None and "-q" in queue_opt.opts, path
    for p in options(command):
        if "-q" in p.opts:
            assert "--queue" in p.opts, (path, p.opts)


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=LEAF_IDS)
def test_dash_n_is_only_ever_a_quantity(path: tuple[str, ...], command: Any) -> None:
    for p in options(command):
        if "-n" in p.opts:
            assert p.opts[0] == "--qty", (path, p.opts)


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=LEAF_IDS)
def test_every_time_option_takes_a_duration(path: tuple[str, ...], command: Any) -> None:
    """No option takes a float (a time would be one); an option named like a time is
    declared as a duration (a string the one parser reads)."""
    for p in options(command):
        flag = p.opts[0]
        if flag in NOT_TIME:
            continue
        assert "float" not in str(annotation(p)), (path, flag)
        if TIME_WORDS & set(flag.lstrip("-").split("-")) and annotation(p) is not bool:
            assert p.metavar in (DURATION, MILLISECONDS), (path, flag)
            assert "str" in str(annotation(p)), (path, flag)


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=LEAF_IDS)
def test_every_data_command_takes_format_and_json(path: tuple[str, ...], command: Any) -> None:
    if path in NO_DATA:
        assert option_named(command, "--json") is None, path
        return
    assert option_named(command, "--json") is not None, path
    fmt = option_named(command, "--format")
    assert fmt is not None, path
    choices = annotation(fmt)
    assert isinstance(choices, type) and issubclass(choices, Enum), path
    assert {c.value for c in choices} >= OUTPUT_FORMATS, path


@pytest.mark.parametrize(("path", "command"), LEAVES, ids=LEAF_IDS)
def test_debug_and_quiet_go_after_every_command(path: tuple[str, ...], command: Any) -> None:
    for flag in ("--debug", "--quiet"):
        assert option_named(command, flag) is not None, (path, flag)


# ------------------------------------------------------------------- durations, run for real

# A quick, successful run of each command with a time option (exit 0, or 3 for "not done"),
# to which each time option is added. A command or a time option missing here fails
# test_every_time_option_is_exercised.
RUNS: dict[tuple[str, ...], list[str]] = {
    ("send",): ["send", "{}"],
    ("claim",): ["claim", "-q", "dur"],
    ("requeue",): ["requeue", "999999"],
    ("extend",): ["extend", "999999"],
    ("work",): ["work", "-q", "empty", "--until-empty", "--max-runtime", "1s"],
    ("purge",): ["purge", "-q", "dur", "--state", "dead"],
    ("watch",): ["watch", "--once"],
    ("doctor",): ["doctor"],
    ("queue", "config"): ["queue", "config", "-q", "dur"],
    ("migrate",): ["migrate"],
    ("bench",): ["bench", "--inflight", "0", "--samples", "2", "--ready", "10",
                 "--messages", "10", "--consumers", "1"],
}
# Where one option needs others beside it.
RUN_FOR_OPTION: dict[tuple[tuple[str, ...], str], list[str]] = {
    (("requeue",), "--older-than"): ["requeue", "--dead", "--all"],
}
TIMED = [(path, flag, metavar) for path, command in LEAVES
         for flag, metavar in time_options(command)]


def _run_with(path: tuple[str, ...], flag: str, value: str) -> list[str]:
    args = list(RUN_FOR_OPTION.get((path, flag), RUNS[path]))
    if path == ("work",):
        return [*args, flag, value, "--", "true"]
    return [*args, flag, value]


def test_every_time_option_is_exercised() -> None:
    assert len(TIMED) >= 20
    for path, _flag, _ in TIMED:
        assert path in RUNS, f"add a run of `pgq {' '.join(path)}` to RUNS"


@pytest.mark.parametrize(("path", "flag", "metavar"), TIMED,
                         ids=[f"{' '.join(p)} {f}" for p, f, _ in TIMED])
def test_every_time_option_accepts_units_and_names_itself_when_bad(
    cli: Cli, q: Queue, path: tuple[str, ...], flag: str, metavar: str
) -> None:
    values = ["30s", "2m"] if metavar == DURATION else ["3000", "3s", "500ms"]
    for value in values:
        q.send("{}", queue="dur")  # something to claim at once (claim --wait would wait)
        result = cli(*_run_with(path, flag, value))
        assert result.exit_code in (0, 3), (value, result.stderr)
        assert flag not in result.stderr, (value, result.stderr)
    bad = cli(*_run_with(path, flag, "5x"))
    line = assert_failed(bad, 2)
    assert flag in line and "5x" in line, line


def _vt_ahead_s(message: dict[str, Any]) -> float:
    vt = datetime.fromisoformat(message["vt"])
    return (vt - datetime.now(UTC)).total_seconds()


def test_send_delay_2m_is_two_minutes(cli: Cli) -> None:
    sent = cli("send", "-q", "later", "--delay", "2m", "{}")
    assert sent.exit_code == 0, sent.stderr
    (delayed,) = [json.loads(x) for x in cli("peek", "-q", "later", "--state", "delayed",
                                           "--json").stdout.splitlines()]
    assert 110 < _vt_ahead_s(delayed) <= 120


def test_claim_vt_1m_is_a_one_minute_lease(cli: Cli, q: Queue) -> None:
    q.send("{}", queue="lease")
    (claimed,) = [json.loads(x) for x in cli("claim", "-q", "lease", "--vt", "1m",
                                           "--json").stdout.splitlines()]
    assert 50 < _vt_ahead_s(claimed) <= 60
    (extended,) = [json.loads(x) for x in cli(
        "extend", str(claimed["msg_id"]), "--vt", "1h30m", "--json").stdout.splitlines()]
    assert 5390 < _vt_ahead_s(extended) <= 5400


def _timed(cli: Cli, *args: str) -> tuple[Any, float]:
    started = time.monotonic()
    result = cli(*args)
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    ("value", "low", "high"), [("3000", 2.5, 4.5), ("3s", 2.5, 4.5), ("500ms", 0.3, 2.0)]
)
def test_lock_timeout_bare_numbers_stay_milliseconds(
    db_dsn: str, value: str, low: float, high: float
) -> None:
    """`--lock-timeout 3000` waits 3 s for a lock (not 50 minutes); 3s and 500ms too. The
    migrators' advisory lock, held elsewhere, is what migrate waits for."""
    with psycopg.connect(db_dsn) as holder:
        holder.execute("SELECT pg_advisory_xact_lock(%s)", (ADVISORY_LOCK_KEY,))
        result, elapsed = _timed(Cli(db_dsn), "migrate", "--lock-timeout", value)
    assert_failed(result, 75)
    assert low <= elapsed <= high, elapsed


@pytest.mark.parametrize(("value", "low", "high"), [("3000", 2.5, 4.5), ("500ms", 0.3, 2.0)])
def test_statement_timeout_bare_numbers_stay_milliseconds(
    db_dsn: str, q: Queue, value: str, low: float, high: float
) -> None:
    """A claim blocked by a table lock ends at --statement-timeout, well before the 5 s
    lock_timeout that would end it if 3000 were read as seconds."""
    with psycopg.connect(db_dsn) as holder:
        holder.execute("LOCK TABLE pgq.messages IN ACCESS EXCLUSIVE MODE")
        result, elapsed = _timed(Cli(db_dsn), "claim", "--statement-timeout", value)
    assert_failed(result, 75)
    assert low <= elapsed <= high, elapsed


def test_one_parser_for_seconds_and_milliseconds() -> None:
    assert [parse_duration(t) for t in ("90", "500ms", "5m", "1h30m", "2m500ms")] == [
        90, 0.5, 300, 5400, 120.5
    ]
    assert [parse_milliseconds(t) for t in ("3000", "0", "500ms", "3s", "1m", "1.5s")] == [
        3000, 0, 500, 3000, 60000, 1500
    ]
    for bad in ("-1", "3x", "ms", "5 s", ""):
        with pytest.raises(InvalidInput):
            parse_milliseconds(bad, "--lock-timeout")


def test_bad_milliseconds_name_the_flag(cli: Cli) -> None:
    for args in (["migrate", "--lock-timeout", "3x"], ["claim", "--statement-timeout", "-1"]):
        line = assert_failed(cli(*args), 2)
        assert args[1] in line, line


# ------------------------------------------------------------------- queues


# Commands that took the queue as an argument before -q/--queue, with what else they need.
POSITIONAL_QUEUE = [
    (["pause"], []), (["resume"], []), (["queue", "config"], []), (["purge"], ["--all"]),
]


@pytest.mark.parametrize(("name", "rest"), POSITIONAL_QUEUE, ids=[" ".join(n) for n, _ in
                                                                  POSITIONAL_QUEUE])
def test_the_queue_as_option_or_argument(
    cli: Cli, q: Queue, name: list[str], rest: list[str]
) -> None:
    q.send("{}", queue="pq")
    for spelling in (["-q", "pq"], ["--queue", "pq"], ["pq"], ["pq", "-q", "pq"]):
        result = cli(*name, *spelling, *rest, "--json")
        assert result.exit_code == 0, (spelling, result.stderr)
        assert all(json.loads(line) for line in result.stdout.splitlines())
    both = assert_failed(cli(*name, "pq", "-q", "other", *rest), 2)
    assert "'pq'" in both and "'other'" in both
    assert "no queue given" in assert_failed(cli(*name, *rest), 2)


def test_queue_config_fair_and_key_weight_with_dash_q(cli: Cli) -> None:
    fair = cli("queue", "config", "-q", "t", "--fair", "--json")
    assert fair.exit_code == 0, fair.stderr
    assert json.loads(fair.stdout)["fair"] is True
    for args in (["-q", "t", "gold"], ["t", "gold"], ["t", "gold", "-q", "t"]):
        weighted = cli("queue", "key", *args, "--weight", "3", "--json")
        assert weighted.exit_code == 0, (args, weighted.stderr)
        row = json.loads(weighted.stdout)
        assert (row["queue"], row["key"], row["weight"]) == ("t", "gold", 3)
    assert_failed(cli("queue", "key", "t", "gold", "-q", "u", "--weight", "2"), 2)


# ------------------------------------------------------------------- output

# A run of every data command whose --json output is checked; {id} and {lease} are a
# message freshly claimed from queue "out", where another one waits to be claimed.
JSON_RUNS: dict[tuple[str, ...], list[str]] = {
    ("migrate",): ["migrate"],
    ("send",): ["send", "-q", "out", "{}"],
    ("claim",): ["claim", "-q", "out"],
    ("peek",): ["peek", "-q", "out", "--state", "all"],
    ("ack",): ["ack", "{id}", "--lease", "{lease}"],
    ("requeue",): ["requeue", "{id}", "--lease", "{lease}"],
    ("extend",): ["extend", "{id}", "--vt", "1m", "--lease", "{lease}"],
    ("stats",): ["stats"],
    ("queues",): ["queues"],
    ("queue", "config"): ["queue", "config", "-q", "out"],
    ("queue", "key"): ["queue", "key", "-q", "out", "k"],
    ("pause",): ["pause", "-q", "out"],
    ("resume",): ["resume", "-q", "out"],
    ("purge",): ["purge", "-q", "out", "--state", "dead"],
    ("watch",): ["watch", "--once"],
    ("doctor",): ["doctor"],
    ("bench",): RUNS[("bench",)],
    ("info",): ["info"],
    ("embedded", "status"): ["embedded", "status"],
    ("embedded", "path"): ["embedded", "path"],
}
def json_objects(text: str) -> bool:
    """Whether `text` is lines of JSON objects (at least one)."""
    try:
        lines = text.splitlines()
        return bool(lines) and all(isinstance(json.loads(line), dict) for line in lines)
    except ValueError:
        return False


DATA_COMMANDS = [path for path, _ in LEAVES if path not in NO_DATA]


def test_every_data_command_has_a_json_run() -> None:
    assert set(DATA_COMMANDS) == set(JSON_RUNS)


@pytest.mark.parametrize("path", DATA_COMMANDS, ids=" ".join)
def test_json_output_parses(cli: Cli, q: Queue, path: tuple[str, ...]) -> None:
    q.send('{"n": 1}', queue="out")
    q.send('{"n": 2}', queue="out")
    (message,) = q.claim(queue="out")
    args = [
        a.replace("{id}", str(message.msg_id)).replace("{lease}", str(message.lease))
        for a in JSON_RUNS[path]
    ]
    result = cli(*args, "--json")
    assert result.exit_code in (0, 3), result.stderr
    assert result.stdout, f"pgq {' '.join(args)} --json printed nothing"
    assert json_objects(result.stdout)
    plain = cli(*args, "--format", "plain")
    assert plain.exit_code in (0, 3), plain.stderr
    assert not json_objects(plain.stdout)  # the format was honoured


# ------------------------------------------------------------------- --quiet, --debug


@pytest.mark.parametrize("where", ["before", "after"])
def test_quiet_silences_status_lines_but_not_errors(cli: Cli, q: Queue, where: str) -> None:
    def run(*args: str) -> Any:
        return cli("--quiet", *args) if where == "before" else cli(*args, "--quiet")

    q.send("{}", queue="qq")
    loud = cli("purge", "-q", "qq", "--all")
    assert loud.exit_code == 0 and "deleted 1 message" in loud.stderr
    q.send("{}", queue="qq")
    quiet = run("purge", "-q", "qq", "--all")
    assert (quiet.exit_code, quiet.stderr) == (0, "")
    assert "deleted" in quiet.stdout  # the data still comes
    assert "up to date" in cli("migrate").stderr
    assert run("migrate").stderr == ""
    assert "was not paused" in cli("resume", "-q", "qq").stderr
    assert run("resume", "-q", "qq").stderr == ""
    # Errors, and the lines that say why the exit code is not 0, stay.
    assert "no queue given" in assert_failed(run("pause"), 2)
    not_done = run("ack", "999999")
    assert not_done.exit_code == 3 and "pgq: error:" in not_done.stderr


@pytest.mark.parametrize("where", ["before", "after"])
def test_debug_before_or_after_the_command(cli: Cli, where: str) -> None:
    args = ["claim", "--debug"] if where == "after" else ["--debug", "claim"]
    result = cli(*args, env={"PGQ_DSN": UNREACHABLE_DSN})
    assert result.exit_code == 69
    assert "Traceback" in result.stderr
    assert result.stderr.rstrip().splitlines()[-1].startswith("pgq: error: could not connect")
    plain = cli("claim", env={"PGQ_DSN": UNREACHABLE_DSN})
    assert "Traceback" not in plain.stderr  # and it does not stick to the next run

