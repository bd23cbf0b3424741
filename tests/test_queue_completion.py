"""Queue names complete from the database; on any error the shell gets nothing, quickly."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import psycopg
import pytest
from helpers import UNREACHABLE_DSN

from pgq_cli.cli import completion
from pgq_cli.cli.completion import complete_queue
from pgq_cli.core.queue import Queue


def ctx(**params: Any) -> Any:
    return SimpleNamespace(params=params)


@pytest.fixture
def named_queues(q: Queue) -> list[str]:
    q.send("1", queue="orders")
    q.send("2", queue="orders.eu", delay=60)  # only delayed
    (held,) = q.claim(queue="orders") or [None]
    assert held is not None  # 'orders' now has only a leased message
    q.send("3", queue="other")
    q.configure("outbox", max_deliveries=1)  # settings only
    q.configure("poison", max_deliveries=1)
    q.send("4", queue="poison")
    q.requeue([q.claim(queue="poison")[0].msg_id])  # only a dead letter
    return ["orders", "orders.eu", "other", "outbox", "poison"]


def test_callback_lists_queues_in_every_state(db_dsn: str, named_queues: list[str]) -> None:
    assert complete_queue(ctx(dsn=db_dsn), "") == named_queues
    assert complete_queue(ctx(dsn=db_dsn), "or") == ["orders", "orders.eu"]
    assert complete_queue(ctx(dsn=db_dsn), "o") == ["orders", "orders.eu", "other", "outbox"]
    assert complete_queue(ctx(dsn=db_dsn), "zzz") == []


def test_callback_treats_like_wildcards_literally(db_dsn: str, q: Queue) -> None:
    q.send("1", queue="a_b")
    q.send("1", queue="axb")
    assert complete_queue(ctx(dsn=db_dsn), "a_") == ["a_b"]


def test_callback_reads_the_dsn_from_the_environment(
    db_dsn: str, named_queues: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGQ_DSN", db_dsn)
    assert complete_queue(ctx(), "p") == ["poison"]


@pytest.mark.parametrize(
    "params",
    [
        {"dsn": UNREACHABLE_DSN},
        {"dsn": "not a dsn === at all"},
        {"dsn": "postgresql://127.0.0.1:5432/x?sslmode=bogus"},
    ],
)
def test_callback_returns_nothing_on_errors(params: dict[str, str]) -> None:
    started = time.monotonic()
    assert complete_queue(ctx(**params), "") == []
    assert time.monotonic() - started < completion.DEADLINE_S + 2


def test_callback_returns_nothing_for_a_missing_schema(
    db_dsn: str, empty_db_dsn: str, named_queues: list[str]
) -> None:
    assert complete_queue(ctx(dsn=empty_db_dsn), "") == []
    assert complete_queue(ctx(dsn=db_dsn, schema="elsewhere"), "") == []
    assert complete_queue(ctx(dsn=db_dsn, schema="Bad Schema;"), "") == []


def test_callback_never_starts_the_embedded_server(tmp_path: Path) -> None:
    # conftest points PGQ_EMBEDDED_DIR at an unused directory and clears every DSN.
    assert complete_queue(ctx(), "") == []
    assert not Path(os.environ["PGQ_EMBEDDED_DIR"]).exists()


def test_callback_gives_up_at_its_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever hangs inside (a DNS lookup, a server that never answers), Tab returns."""

    def hang(*args: Any, **kwargs: Any) -> None:
        time.sleep(30)

    monkeypatch.setattr(psycopg, "connect", hang)  # the callback imports it when it runs
    monkeypatch.setattr(completion, "DEADLINE_S", 0.5)
    started = time.monotonic()
    assert complete_queue(ctx(dsn=UNREACHABLE_DSN), "") == []
    assert time.monotonic() - started < 5


def test_callback_survives_a_missing_context() -> None:
    assert complete_queue(None, "") == []  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- the shell


def complete_in_subprocess(pgq_bin: str, dsn: str, *words: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PGQ_DSN": dsn,
        "_PGQ_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join(words),
        "COMP_CWORD": str(len(words) - 1),
    }
    return subprocess.run([pgq_bin], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "words",
    [
        ("pgq", "claim", "-q", "or"),
        ("pgq", "peek", "--queue", "or"),
        ("pgq", "pause", "or"),
        ("pgq", "queue", "config", "or"),
        ("pgq", "requeue", "--dead", "-q", "or"),
    ],
)
def test_bash_completion_offers_queue_names(
    pgq_bin: str, db_dsn: str, named_queues: list[str], words: tuple[str, ...]
) -> None:
    result = complete_in_subprocess(pgq_bin, db_dsn, *words)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["orders", "orders.eu"]
    assert result.stderr == ""


def test_bash_completion_with_unreachable_server_is_quiet_and_quick(pgq_bin: str) -> None:
    started = time.monotonic()
    result = complete_in_subprocess(pgq_bin, UNREACHABLE_DSN, "pgq", "claim", "-q", "")
    assert result.returncode == 0
    assert result.stdout.strip() == ""
    assert result.stderr == ""
    assert time.monotonic() - started < 20  # includes interpreter start on a busy machine
