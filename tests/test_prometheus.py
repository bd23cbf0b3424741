"""`pgq stats --format prometheus` and `--textfile-dir`: the exposition text, parsed
strictly, with exact values for a known dataset, and the atomic textfile write.

The dataset is written with SQL so that every state, age and delivery count is known:

| queue | priority | rows                                                                |
| ----- | -------- | ------------------------------------------------------------------- |
| jobs  | 9        | 3 ready, sent 100 s ago, read_ct 2, 0, 0 (the head has read_ct 2)    |
| jobs  | 5        | 2 leased (read_ct 1), 1 expired lease (read_ct 3), 1 delayed        |
| jobs  | 1        | 1 dead (read_ct 5)                                                  |
| other | 5        | 2 ready, sent 40 s ago; queue `other` is paused                     |
"""

from __future__ import annotations

import math
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from conftest import Cli
from helpers import UNREACHABLE_DSN

from pgq_cli.core.queue import PriorityStats, QueueStats
from pgq_cli.core.states import EFFECTIVE_STATES
from pgq_cli.ops import prometheus
from pgq_cli.ops import thresholds as health

# ----------------------------------------------------------------------------- dataset

DATASET_SQL = """
INSERT INTO pgq.messages (queue, priority, state, vt, enqueued_at, read_ct, lease, payload)
VALUES
    ('jobs', 9, 'ready', now(), now() - interval '100 s', 2, NULL, '1'),
    ('jobs', 9, 'ready', now(), now() - interval '100 s', 0, NULL, '2'),
    ('jobs', 9, 'ready', now(), now() - interval '100 s', 0, NULL, '3'),
    ('jobs', 5, 'leased', now() + interval '5 min', now(), 1, gen_random_uuid(), '4'),
    ('jobs', 5, 'leased', now() + interval '5 min', now(), 1, gen_random_uuid(), '5'),
    ('jobs', 5, 'leased', now() - interval '10 s', now() - interval '1 min', 3,
     gen_random_uuid(), '6'),
    ('jobs', 5, 'delayed', now() + interval '10 min', now(), 0, NULL, '7'),
    ('jobs', 1, 'dead', now() - interval '50 s', now() - interval '1 h', 5, NULL, '8'),
    ('other', 5, 'ready', now(), now() - interval '40 s', 0, NULL, '9'),
    ('other', 5, 'ready', now(), now() - interval '40 s', 0, NULL, '10');
INSERT INTO pgq.queues (queue, paused) VALUES ('other', true);
"""

# (queue, priority) -> ready, leased, expired, delayed, dead
COUNTS = {
    ("jobs", 9): (3, 0, 0, 0, 0),
    ("jobs", 5): (0, 2, 1, 1, 0),
    ("jobs", 1): (0, 0, 0, 0, 1),
    ("other", 5): (2, 0, 0, 0, 0),
}
MAX_READ_CT = {("jobs", 9): 2, ("jobs", 5): 3, ("jobs", 1): 5, ("other", 5): 0}
PAUSED = {("jobs", 9): 0, ("jobs", 5): 0, ("jobs", 1): 0, ("other", 5): 1}
# Ages are measured when stats runs: at least this, and a few seconds more at most.
AGES = {("jobs", 9): 100.0, ("jobs", 5): 0.0, ("jobs", 1): 0.0, ("other", 5): 40.0}
AGE_SLACK = 15.0


def load_dataset(conn: psycopg.Connection[Any]) -> None:
    conn.execute(DATASET_SQL)


# ----------------------------------------------------------------------------- strict parser

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_SAMPLE = re.compile(rf"^({_NAME})(?:\{{((?:{_LABEL})(?:,{_LABEL})*)?\}})? (\S+)$")
_VALUE = re.compile(r"^(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)$")
_HELP = re.compile(rf"^# HELP ({_NAME}) (.*)$")
_TYPE = re.compile(rf"^# TYPE ({_NAME}) (counter|gauge|histogram|summary|untyped)$")


def _unescape(value: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), value)


@dataclass
class Family:
    name: str
    help: str
    type: str
    samples: dict[tuple[tuple[str, str], ...], float]

    def value(self, **labels: str) -> float:
        return self.samples[tuple(sorted(labels.items()))]

    def by(self, *keys: str) -> dict[tuple[str, ...], float]:
        """Samples keyed by the values of these labels (which must identify them)."""
        out: dict[tuple[str, ...], float] = {}
        for labels, value in self.samples.items():
            d = dict(labels)
            key = tuple(d[k] for k in keys)
            assert key not in out, f"{self.name}: {key} is not unique"
            out[key] = value
        return out


def parse_exposition(text: str) -> dict[str, Family]:
    """Text exposition format 0.0.4, strictly: HELP then TYPE before each family's samples,
    a family's samples together, every sample `name{labels} value` with escaped label
    values and a number, no duplicate label sets, a final newline."""
    assert text.endswith("\n") and not text.endswith("\n\n"), repr(text[-20:])
    families: dict[str, Family] = {}
    current: Family | None = None
    pending_help: tuple[str, str] | None = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {number}: {line!r}"
        if line.startswith("#"):
            if (m := _HELP.match(line)) is not None:
                assert pending_help is None, where
                assert m.group(1) not in families, f"family repeated, {where}"
                pending_help = (m.group(1), m.group(2))
                continue
            m = _TYPE.match(line)
            assert m is not None, f"not HELP or TYPE, {where}"
            assert pending_help is not None and pending_help[0] == m.group(1), (
                f"TYPE without its HELP just before, {where}"
            )
            current = Family(m.group(1), pending_help[1], m.group(2), {})
            families[current.name] = current
            pending_help = None
            continue
        m = _SAMPLE.match(line)
        assert m is not None, f"not a sample, {where}"
        assert pending_help is None, f"sample between HELP and TYPE, {where}"
        assert current is not None and m.group(1) == current.name, (
            f"sample outside its family, {where}"
        )
        labels_text, raw = m.group(2) or "", m.group(m.lastindex or 0)
        assert _VALUE.match(raw), f"value is not a number, {where}"
        pairs = re.findall(_LABEL, labels_text)
        names = [k for k, _ in pairs]
        assert len(names) == len(set(names)), f"repeated label, {where}"
        key = tuple(sorted((k, _unescape(v)) for k, v in pairs))
        assert key not in current.samples, f"duplicate series, {where}"
        current.samples[key] = float(raw)
    assert pending_help is None, "HELP without TYPE at the end"
    return families


FAMILIES = [
    "pgq_messages",
    "pgq_oldest_ready_age_seconds",
    "pgq_max_read_count",
    "pgq_paused",
    "pgq_stats_estimated",
    "pgq_stats_collected_timestamp_seconds",
    "pgq_stats_duration_seconds",
]


def assert_dataset(families: dict[str, Family], *, schema: str = "pgq") -> None:
    """The exact numbers of the dataset above."""
    messages = families["pgq_messages"]
    expected = {
        (schema, q, str(p), state): float(n)
        for (q, p), counts in COUNTS.items()
        for state, n in zip(EFFECTIVE_STATES, counts, strict=True)
    }
    assert messages.by("schema", "queue", "priority", "state") == expected
    by_group = ("schema", "queue", "priority")
    assert families["pgq_max_read_count"].by(*by_group) == {
        (schema, q, str(p)): float(v) for (q, p), v in MAX_READ_CT.items()
    }
    assert families["pgq_paused"].by(*by_group) == {
        (schema, q, str(p)): float(v) for (q, p), v in PAUSED.items()
    }
    ages = families["pgq_oldest_ready_age_seconds"].by(*by_group)
    assert set(ages) == {(schema, q, str(p)) for q, p in AGES}
    for (q, p), least in AGES.items():
        age = ages[(schema, q, str(p))]
        assert age == 0.0 if least == 0 else least <= age < least + AGE_SLACK, (q, p, age)
    assert families["pgq_stats_estimated"].samples == {(("schema", schema),): 0.0}


# ----------------------------------------------------------------------------- exposition


def test_exposition_parses_strictly_with_exact_values(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    load_dataset(conn)
    before = time.time()
    result = cli("stats", "--format", "prometheus")
    after = time.time()
    assert result.exit_code == 0, result.stderr
    assert result.stderr == ""
    families = parse_exposition(result.stdout)
    assert list(families) == FAMILIES  # no pgq_threshold_breached without --fail-if
    assert {f.type for f in families.values()} == {"gauge"}
    assert all(f.help for f in families.values())
    assert_dataset(families)
    (collected,) = families["pgq_stats_collected_timestamp_seconds"].samples.values()
    assert before - 1 <= collected <= after + 1
    (duration,) = families["pgq_stats_duration_seconds"].samples.values()
    assert 0 <= duration < after - before + 0.01


def test_exposition_of_one_queue_and_of_an_empty_schema(
    cli: Cli, conn: psycopg.Connection[Any]
) -> None:
    empty = parse_exposition(cli("stats", "--format", "prometheus").stdout)
    assert list(empty) == FAMILIES
    for name in FAMILIES[:4]:
        assert empty[name].samples == {}, name
    load_dataset(conn)
    result = cli("stats", "-q", "other", "--format", "prometheus")
    assert result.exit_code == 0, result.stderr
    families = parse_exposition(result.stdout)
    assert families["pgq_messages"].by("queue", "priority", "state") == {
        ("other", "5", s): float(n) for s, n in zip(EFFECTIVE_STATES, COUNTS[("other", 5)],
                                                   strict=True)
    }
    assert families["pgq_paused"].value(schema="pgq", queue="other", priority="5") == 1


def test_label_values_are_escaped() -> None:
    nasty = 'ready > 1 "quoted" \\ back\nslash'
    breach = health.Breach(health.Threshold("ready", ">", 1.0, nasty), 2.0)
    row = PriorityStats("jobs", 5, 2, 0, 0, 0, 0, 1.5, 0)
    snapshot = health.Snapshot(QueueStats((row,)), False, 1700000000.25, 0.001)
    text = prometheus.render(snapshot, schema="pgq", breached=[breach])
    assert '\\"quoted\\" \\\\ back\\nslash' in text
    families = parse_exposition(text)  # one line per sample despite the newline
    breached = families["pgq_threshold_breached"]
    assert breached.samples == {(("expression", nasty), ("schema", "pgq")): 1.0}
    assert families["pgq_stats_collected_timestamp_seconds"].value(schema="pgq") == 1700000000.25
    assert families["pgq_oldest_ready_age_seconds"].value(
        schema="pgq", queue="jobs", priority="5"
    ) == 1.5


def test_numbers_are_prometheus_client_floats() -> None:
    """prometheus_client writes every value as a float: 12345678 as 1.2345678e+07, 0 as
    0.0 (valid exposition text), and sorts each sample's labels by name."""
    text = prometheus.render(
        health.Snapshot(
            QueueStats((PriorityStats("jobs", 10, 12_345_678, 0, 0, 0, 0, None, 7),)),
            True,
            1.0,
            0.5,
        )
    )
    assert ('pgq_messages{priority="10",queue="jobs",schema="pgq",state="ready"} '
            "1.2345678e+07\n") in text
    assert 'pgq_oldest_ready_age_seconds{priority="10",queue="jobs",schema="pgq"} 0.0\n' in text
    assert 'pgq_stats_duration_seconds{schema="pgq"} 0.5\n' in text
    assert 'pgq_stats_estimated{schema="pgq"} 1.0\n' in text
    families = parse_exposition(text)
    assert families["pgq_messages"].value(
        schema="pgq", queue="jobs", priority="10", state="ready") == 12_345_678
    for line in text.splitlines():
        if not line.startswith("#"):
            assert math.isfinite(float(line.rsplit(" ", 1)[1])), line


def test_format_prometheus_and_json_exclude_each_other() -> None:
    result = Cli(UNREACHABLE_DSN)("stats", "--format", "prometheus", "--json")
    assert result.exit_code == 2, result.stderr
    assert result.stderr.startswith("pgq: error: --json and --format prometheus")


# ----------------------------------------------------------------------------- textfile


def files_in(directory: Path) -> list[str]:
    return sorted(os.listdir(directory))


def test_textfile_is_written_atomically_and_stdout_stays_empty(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    load_dataset(conn)
    target = tmp_path / "pgq.prom"
    target.write_text("stale\n")
    stale_inode = target.stat().st_ino
    result = cli("stats", "--textfile-dir", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    assert (result.stdout, result.stderr) == ("", "")
    assert files_in(tmp_path) == ["pgq.prom"]  # no temporary file left behind
    # Replaced by a rename (a new inode), not rewritten in place where a scrape could
    # catch it half-written.
    assert target.stat().st_ino != stale_inode
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    families = parse_exposition(target.read_text())
    assert list(families) == FAMILIES
    assert_dataset(families)


def test_textfile_name_and_schema(cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    load_dataset(conn)
    result = cli("stats", "--textfile-dir", str(tmp_path), "--textfile-name", "queue-a.prom",
                 "--format", "prometheus")
    assert result.exit_code == 0, result.stderr
    assert files_in(tmp_path) == ["queue-a.prom"]
    assert_dataset(parse_exposition((tmp_path / "queue-a.prom").read_text()))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--textfile-name", "pgq.txt"], "is not usable"),
        (["--textfile-name", "../pgq.prom"], "is not usable"),
        (["--textfile-name", "sub/pgq.prom"], "is not usable"),
        (["--textfile-name", ".prom"], "is not usable"),
        (["--json"], "writes the Prometheus format"),
        (["--format", "table"], "writes the Prometheus format"),
    ],
)
def test_bad_textfile_options_exit_2_before_connecting(
    tmp_path: Path, args: list[str], says: str
) -> None:
    result = Cli(UNREACHABLE_DSN)("stats", "--textfile-dir", str(tmp_path), *args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("pgq: error: ") and says in line, line
    assert files_in(tmp_path) == []


def test_textfile_name_without_textfile_dir_exits_2_before_connecting() -> None:
    result = Cli(UNREACHABLE_DSN)("stats", "--format", "prometheus", "--textfile-name", "a.prom")
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("pgq: error: --textfile-name names a file in --textfile-dir"), line


def test_missing_textfile_dir_exits_2_before_connecting(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    result = Cli(UNREACHABLE_DSN)("stats", "--textfile-dir", str(missing))
    assert result.exit_code == 2, result.stderr
    (line,) = result.stderr.splitlines()
    assert line.startswith("pgq: error: --textfile-dir") and "is not a directory" in line
    assert not missing.exists()
    # The control: valid options with this DSN do try to connect.
    assert Cli(UNREACHABLE_DSN)("stats", "--textfile-dir", str(tmp_path)).exit_code == 69


def test_unwritable_target_exits_78_with_one_line_and_leaves_no_temporary(
    cli: Cli, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """The rename cannot succeed (the target name is taken by a directory): one line on
    stderr, exit 78 (configuration), and the temporary file is cleaned up."""
    load_dataset(conn)
    (tmp_path / "pgq.prom").mkdir()
    (tmp_path / "pgq.prom" / "keep").write_text("x")
    result = cli("stats", "--textfile-dir", str(tmp_path))
    assert result.exit_code == 78, (result.stdout, result.stderr)
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith(f"pgq: error: cannot write {tmp_path / 'pgq.prom'}: "), line
    assert files_in(tmp_path) == ["pgq.prom"]
    assert files_in(tmp_path / "pgq.prom") == ["keep"]


def _snapshot(ready: int) -> health.Snapshot:
    row = PriorityStats("jobs", 5, ready, 0, 0, 0, 0, None, 0)
    return health.Snapshot(QueueStats((row,)), False, 1.0, 0.5)


def test_write_textfile_library_contract(tmp_path: Path) -> None:
    metrics = prometheus.registry(_snapshot(1))
    path = prometheus.write_textfile(tmp_path, metrics, "x.prom")
    assert path == tmp_path / "x.prom"
    assert path.read_text() == prometheus.render(_snapshot(1))
    path = prometheus.write_textfile(tmp_path, prometheus.registry(_snapshot(2)), "x.prom")
    assert parse_exposition(path.read_text())["pgq_messages"].value(
        schema="pgq", queue="jobs", priority="5", state="ready") == 2
    assert files_in(tmp_path) == ["x.prom"]


def test_textfile_is_readable_by_all_under_a_strict_umask(tmp_path: Path) -> None:
    """node_exporter often runs as another user: 0644 even when cron's umask is 077."""
    previous = os.umask(0o077)
    try:
        path = prometheus.write_textfile(tmp_path, prometheus.registry(_snapshot(1)))
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


@pytest.mark.parametrize(
    "text",
    [
        "a 1",  # no final newline
        "# HELP a x\n# TYPE a gauge\na 1\n\n",  # blank line
        "a 1\n",  # no HELP/TYPE
        "# TYPE a gauge\n# HELP a x\na 1\n",  # TYPE before HELP
        "# HELP a x\n# TYPE a gauge\nb 1\n",  # sample of another family
        "# HELP a x\n# TYPE a gauge\na{q=\"x\"} one\n",  # not a number
        "# HELP a x\n# TYPE a gauge\na{q=\"x\"y\"} 1\n",  # unescaped quote
        "# HELP a x\n# TYPE a gauge\na{q=\"x\"} 1\na{q=\"x\"} 2\n",  # duplicate series
        "# HELP a x\n# TYPE a gauge\na 1\n# HELP a x\n# TYPE a gauge\na 2\n",  # split family
    ],
)
def test_the_parser_itself_rejects_malformed_text(text: str) -> None:
    with pytest.raises(AssertionError):
        parse_exposition(text)
