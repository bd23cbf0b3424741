"""The fairness surface of the CLI: send --key / --envelope, queue config --fair, queue
key --weight, claim/peek showing the key, peek --key, stats --by-key, Prometheus per key,
and bad input (exit 2 before connecting, nothing written)."""

from __future__ import annotations

import json
from typing import Any

import psycopg
import pytest
from conftest import Cli
from test_prometheus import parse_exposition

from pgq_cli.core import fairness
from pgq_cli.core.queue import Queue
from pgq_cli.ops import prometheus

UNREACHABLE_DSN = "postgresql://nobody@127.0.0.1:1/nothing?connect_timeout=1"


def _json_lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def _count(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row is not None
    return int(row[0])


def test_send_key_is_stored_and_shown_by_claim_and_peek(cli: Cli) -> None:
    assert cli("send", "-q", "t", "--key", "acme", '{"a": 1}').exit_code == 0
    assert cli("send", "-q", "t", '{"b": 2}').exit_code == 0
    peeked = _json_lines(cli("peek", "-q", "t", "--json").stdout)
    assert [m["key"] for m in peeked] == ["acme", None]
    only = _json_lines(cli("peek", "-q", "t", "--key", "acme", "--json").stdout)
    assert [m["payload"] for m in only] == [{"a": 1}]
    claimed = _json_lines(cli("claim", "-q", "t", "-n", "2", "--json").stdout)
    assert [m["key"] for m in claimed] == ["acme", None]
    plain = cli("peek", "-q", "t", "--state", "leased").stdout.splitlines()
    assert [line.split("\t")[7] for line in plain] == ["acme", ""]


def test_send_file_with_one_key_and_with_envelopes(cli: Cli, tmp_path: Any, q: Queue) -> None:
    plain = tmp_path / "plain.ndjson"
    plain.write_text('{"n": 1}\n{"n": 2}\n')
    assert cli("send", "-q", "t", "--file", str(plain), "--key", "k1").exit_code == 0
    envelopes = tmp_path / "env.ndjson"
    envelopes.write_text(
        '{"payload": {"n": 3}, "key": "k2", "priority": 9}\n'
        '{"payload": [4], "delay": 600}\n'
        '{"payload": "five"}\n'
    )
    result = cli("send", "-q", "t", "--file", str(envelopes), "--envelope", "--key", "dflt")
    assert result.exit_code == 0, result.stderr
    found = {json.dumps(m.payload): m for m in q.peek(queue="t", state="all", limit=10)}
    assert (found['{"n": 1}'].key, found['{"n": 2}'].key) == ("k1", "k1")
    assert (found['{"n": 3}'].key, found['{"n": 3}'].priority) == ("k2", 9)
    assert (found["[4]"].key, found["[4]"].state) == ("dflt", "delayed")
    assert (found['"five"'].key, found['"five"'].priority) == ("dflt", 5)


@pytest.mark.parametrize(
    ("line", "code", "says"),
    [
        ('{"key": "a"}', 65, "not an envelope"),
        ('[1, 2]', 65, "not an envelope"),
        ('{"payload": 1, "tenant": "a"}', 65, "unknown envelope field 'tenant'"),
        ('{"payload": 1, "key": ""}', 2, "line 2: invalid key"),
        ('{"payload": 1, "key": "a\\u0007b"}', 2, "control character"),
        ('{"payload": 1, "priority": 11}', 2, "line 2: priority 11 is out of range"),
        ('{"payload": 1, "delay": "soon"}', 2, "line 2: delay must be a number"),
    ],
)
def test_a_bad_envelope_line_writes_nothing(
    cli: Cli, tmp_path: Any, conn: psycopg.Connection[Any], line: str, code: int, says: str
) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text('{"payload": {"ok": true}}\n' + line + "\n")
    result = cli("send", "--file", str(path), "--envelope")
    assert result.exit_code == code, result.stderr
    assert says in result.stderr and result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1
    assert _count(conn) == 0


@pytest.mark.parametrize(
    "args",
    [
        ("send", "--key", "", "{}"),
        ("send", "--key", "x" * 129, "{}"),
        ("send", "--key", "tab\there", "{}"),
        ("send", "--envelope", "{}"),
        ("peek", "--key", "a\nb"),
        ("queue", "config", "t", "--max-inflight-per-key", "0"),
        ("queue", "config", "t", "--max-inflight-per-key", "2", "--no-max-inflight"),
        ("queue", "key", "t", "acme", "--weight", "0"),
        ("queue", "key", "t", "acme", "--weight", "1001"),
        ("stats", "--by-key"),
        ("stats", "-q", "t", "--by-key", "--format", "prometheus"),
        ("stats", "-q", "t", "--by-key", "--top", "0"),
    ],
)
def test_bad_fairness_input_exits_2_before_connecting(args: tuple[str, ...]) -> None:
    result = Cli(UNREACHABLE_DSN)(*args)
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("pgq: error:")
    assert "Traceback" not in result.stderr and result.stdout == ""


def test_a_128_character_key_with_spaces_and_unicode_is_fine(cli: Cli, q: Queue) -> None:
    key = ("Ünïcode tenant " * 10)[:128]
    assert cli("send", "--key", key, "{}").exit_code == 0
    assert q.peek()[0].key == key


def test_queue_config_fair_and_cap_then_off(cli: Cli, q: Queue) -> None:
    shown = _json_lines(cli("queue", "config", "t", "--json").stdout)[0]
    assert (shown["fair"], shown["max_inflight_per_key"]) == (False, None)
    result = cli("queue", "config", "t", "--fair", "--max-inflight-per-key", "2", "--json")
    assert result.exit_code == 0, result.stderr
    (row,) = _json_lines(result.stdout)
    assert (row["fair"], row["max_inflight_per_key"]) == (True, 2)
    assert q.fairness("t") == fairness.FairnessSettings("t", True, 2)
    # Options not given keep their value.
    cli("queue", "config", "t", "--max-deliveries", "3")
    assert q.fairness("t") == fairness.FairnessSettings("t", True, 2)
    cli("queue", "config", "t", "--no-max-inflight")
    assert q.fairness("t") == fairness.FairnessSettings("t", True, None)
    cli("queue", "config", "t", "--no-fair")
    assert q.fairness("t").fair is False


def test_claims_from_the_cli_rotate_and_respect_weights(cli: Cli, q: Queue) -> None:
    cli("queue", "config", "t", "--fair")
    result = cli("queue", "key", "t", "gold", "--weight", "3", "--json")
    assert result.exit_code == 0, result.stderr
    assert _json_lines(result.stdout) == [
        {"queue": "t", "key": "gold", "weight": 3.0, "inflight": 0}
    ]
    q.send_many(["{}"] * 20, queue="t", key="gold")
    q.send_many(["{}"] * 20, queue="t", key="free")
    keys = [
        _json_lines(cli("claim", "-q", "t", "--json").stdout)[0]["key"] for _ in range(8)
    ]
    assert keys.count("gold") == 6 and keys.count("free") == 2


def test_stats_by_key_top_n(cli: Cli, q: Queue) -> None:
    for key, count in (("a", 5), ("b", 3), ("c", 1)):
        q.send_many(["{}"] * count, queue="t", key=key)
    q.send("{}", queue="t")
    q.send("{}", queue="t", key="b", delay=600)
    q.claim(queue="t", vt=300)  # an "a" (FIFO: not a fair queue)
    rows = _json_lines(cli("stats", "-q", "t", "--by-key", "--top", "2", "--json").stdout)
    assert rows == [
        {"key": "a", "ready": 4, "leased": 1, "delayed": 0},
        {"key": "b", "ready": 3, "leased": 0, "delayed": 1},
    ]
    plain = cli("stats", "-q", "t", "--by-key").stdout.splitlines()
    assert [line.split("\t")[0] for line in plain] == ["a", "b", "", "c"]


def test_prometheus_keeps_the_top_keys_and_sums_the_rest(
    cli: Cli, q: Queue
) -> None:
    q.configure_fairness("t", fair=True)
    for k in range(25):
        q.send_many(["{}"] * (k + 1), queue="t", key=f"k{k:02d}")
    q.send_many(["{}"] * 3, queue="plain", key="ignored")  # not fair: no per-key series
    text = cli("stats", "--format", "prometheus").stdout
    series = parse_exposition(text)["pgq_key_messages"].by("queue", "key", "state")
    ready = {key: int(n) for (_, key, state), n in series.items() if state == "ready"}
    assert len(ready) == 21
    assert ready[prometheus.OTHER_KEYS_LABEL] == sum(range(1, 6))  # k00..k04
    assert min(v for k, v in ready.items() if k != prometheus.OTHER_KEYS_LABEL) == 6
    assert {queue for queue, _, _ in series} == {"t"}  # not fair: no per-key series
    assert "# TYPE pgq_key_messages gauge" in text
