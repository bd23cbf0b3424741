"""`pgq demo` is the README's first command: it must work and really check the order."""

from __future__ import annotations

import re

import psycopg
from conftest import Cli


def test_demo_migrates_claims_in_order_and_leaves_nothing(empty_db_dsn: str) -> None:
    result = Cli(empty_db_dsn)("demo")
    assert result.exit_code == 0, result.stderr
    assert "0001_create_messages.sql" in result.stdout
    section = result.stdout.split("4. claim")[1].split("5.")[0]
    priorities = [int(p) for p in re.findall(r"priority (\d+)", section)]
    assert priorities == [9, 7, 3, 3, 1]
    assert "refused: lease is not current" in result.stdout
    assert result.stdout.count("delivery 2") == 5
    with psycopg.connect(empty_db_dsn) as conn:
        row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row == (0,)


def test_demo_reports_up_to_date_schema_on_second_run(db_dsn: str) -> None:
    result = Cli(db_dsn)("demo")
    assert result.exit_code == 0, result.stderr
    assert "already up to date" in result.stdout
