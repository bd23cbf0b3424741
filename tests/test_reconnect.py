"""Long-running commands ride out a server restart: `claim --wait` and `watch` reconnect
with back-off (pgq_cli/core/reconnect.py), and exit 69 with one error line when the server stays
away longer than --reconnect-timeout.

On a private server the test owns (helpers_server), never the shared one.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from itertools import islice

import psycopg
import pytest
from helpers import error_line
from helpers_server import RestartableServer

from pgq_cli.core.errors import ConfigError, ConnectFailed
from pgq_cli.core.queue import Queue
from pgq_cli.core.reconnect import MAX_DELAY_S, backoff_delays, reconnect


@pytest.fixture(scope="module")
def server() -> Iterator[RestartableServer]:
    with RestartableServer() as own:
        yield own


def _wait_for_client(dsn: str, application_name: str, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    with psycopg.connect(dsn, autocommit=True) as watcher:
        while watcher.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s",
            (application_name,),
        ).fetchone() != (1,):
            assert time.monotonic() < deadline, f"{application_name} never connected"
            time.sleep(0.05)


def test_backoff_doubles_from_a_tenth_of_a_second_up_to_the_cap() -> None:
    assert list(islice(backoff_delays(), 8)) == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, MAX_DELAY_S, 5.0]


def test_reconnect_gives_up_after_the_timeout_and_stops_at_once_on_a_config_error() -> None:
    slept: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    def unreachable() -> psycopg.Connection[tuple[object, ...]]:
        raise ConnectFailed("could not connect: Connection refused")

    with pytest.raises(ConnectFailed, match="gave up reconnecting after 2 s") as gave_up:
        reconnect(unreachable, timeout_s=2, lost=ConnectFailed("gone"), sleep=sleep,
                  clock=lambda: now[0])
    assert gave_up.value.params == ("timeout_s",) and "timeout_s" in gave_up.value.hint
    # 0.1 + 0.2 + 0.4 + 0.8, then only what is left of the 2 s.
    assert slept == pytest.approx([0.1, 0.2, 0.4, 0.8, 0.5])

    def refused() -> psycopg.Connection[tuple[object, ...]]:
        raise ConfigError("login refused")

    with pytest.raises(ConfigError):
        reconnect(refused, timeout_s=60, lost=ConnectFailed("gone"), sleep=sleep,
                  clock=lambda: now[0])


@pytest.mark.slow
def test_claim_wait_survives_a_server_crash_and_claims_what_is_sent_after_it(
    server: RestartableServer, pgq_bin: str
) -> None:
    dsn = server.migrated_database()
    env = {**os.environ, "PGQ_DSN": dsn}
    proc = subprocess.Popen(
        [pgq_bin, "claim", "--wait", "60", "--reconnect-timeout", "60s", "--json"],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        _wait_for_client(dsn, "pgq claim")
        server.stop("immediate")
        time.sleep(1)  # the claim is now retrying against a server that is down
        assert proc.poll() is None, proc.communicate()
        server.start()
        with psycopg.connect(dsn, autocommit=True) as producer:
            msg_id = Queue(producer).send(json.dumps({"after": "restart"}))
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    claimed = [json.loads(line) for line in out.splitlines()]
    assert [m["msg_id"] for m in claimed] == [msg_id]
    assert claimed[0]["payload"] == {"after": "restart"}
    assert "reconnecting for up to 60 s" in err


@pytest.mark.slow
def test_claim_wait_exits_69_with_one_error_line_when_the_server_stays_away(
    server: RestartableServer, pgq_bin: str
) -> None:
    dsn = server.migrated_database()
    env = {**os.environ, "PGQ_DSN": dsn}
    proc = subprocess.Popen(
        [pgq_bin, "claim", "--wait", "60", "--reconnect-timeout", "2s"],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        _wait_for_client(dsn, "pgq claim")
        started = time.monotonic()  # the claim may notice before stop() returns
        server.stop("immediate")
        out, err = proc.communicate(timeout=30)
        gave_up_after = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
        server.start()
    assert proc.returncode == 69, err
    assert out == ""
    assert "Traceback" not in err
    # A status line saying it reconnects, then the one error line.
    talk, error = err.strip().splitlines()
    assert talk.startswith("pgq: ") and "reconnecting for up to 2 s" in talk
    assert "gave up reconnecting after 2 s" in error_line(error)
    assert error.endswith("raise --reconnect-timeout to wait longer")
    assert 2 <= gave_up_after < 15


@pytest.mark.slow
def test_watch_keeps_drawing_frames_across_a_server_restart(
    server: RestartableServer, pgq_bin: str
) -> None:
    dsn = server.migrated_database()
    with psycopg.connect(dsn, autocommit=True) as producer:
        Queue(producer).send_many(["{}"] * 3)
    env = {**os.environ, "PGQ_DSN": dsn}
    proc = subprocess.Popen(
        [pgq_bin, "watch", "--json", "--interval", "0.2", "--iterations", "40"],
        env=env, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    try:
        _wait_for_client(dsn, "pgq watch")
        server.restart("immediate")
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    frames = [json.loads(line) for line in out.splitlines()]
    # Every frame it owed, counted across the reconnect; each still sees the 3 messages.
    assert len(frames) == 40
    assert {sum(r["ready"] for r in f["rows"]) for f in frames} == {3}
    assert "reconnecting" in err
