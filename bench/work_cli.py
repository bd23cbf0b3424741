"""Per-message cost of `pgq work` against the README's old claim + ack shell loop.

    .venv/bin/python bench/work_cli.py --dsn postgresql://postgres@127.0.0.1:5432/postgres

Both run the same trivial handler (`true`) on messages of one queue in a scratch database,
and the time per message is wall time over messages. They take turns within each round;
the median of the rounds is reported with the spread.

- shell loop: what the README showed before `pgq work`: per message one `pgq claim --json`,
  two `jq` to pull out msg_id and lease, the handler, and one `pgq ack --lease`:
      pgq claim -q Q --json | while read -r msg; do
        id=$(echo "$msg" | jq .msg_id); lease=$(echo "$msg" | jq -r .lease)
        true "$msg" && pgq ack "$id" --lease "$lease"
      done
  run once per message (the loop handles one message per claim).
- pgq work: `pgq work -q Q --until-empty -- true`, one process for all messages, one
  `true` process per message.

Needs `jq` on PATH and the `pgq` console script next to this Python.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

import psycopg
from psycopg import conninfo, sql

from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

QUEUE = "work_cli"
SHELL_LOOP = """
pgq claim -q "$Q" --json | while read -r msg; do
  id=$(echo "$msg" | jq .msg_id); lease=$(echo "$msg" | jq -r .lease)
  true "$msg" && pgq ack "$id" --lease "$lease" > /dev/null
done
"""


def _fill(dsn: str, n: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        Queue(conn).send_many([json.dumps({"n": i}) for i in range(n)], queue=QUEUE)


def _left(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute("SELECT count(*) FROM pgq.messages").fetchone()
    assert row is not None
    return int(row[0])


def shell_loop(dsn: str, n: int, env: dict[str, str]) -> float:
    """Seconds per message of the README's shell loop, run once per message."""
    _fill(dsn, n)
    started = time.perf_counter()
    for _ in range(n):
        subprocess.run(["sh", "-c", SHELL_LOOP], env=env, check=True)
    seconds = time.perf_counter() - started
    if _left(dsn):
        raise RuntimeError("the shell loop left messages behind")
    return seconds / n


def pgq_work(dsn: str, n: int, env: dict[str, str]) -> float:
    """Seconds per message of `pgq work --until-empty -- true`, start-up included."""
    _fill(dsn, n)
    started = time.perf_counter()
    subprocess.run(["pgq", "work", "-q", QUEUE, "--until-empty", "--", "true"], env=env,
                   check=True)
    seconds = time.perf_counter() - started
    if _left(dsn):
        raise RuntimeError("pgq work left messages behind")
    return seconds / n


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""),
                        help="admin DSN of the server (a scratch database is made on it)")
    parser.add_argument("--shell-messages", type=int, default=20,
                        help="messages per shell-loop run")
    parser.add_argument("--work-messages", type=int, default=500,
                        help="messages per pgq work run")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median is reported)")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or PGQ_DSN")
    if shutil.which("jq") is None:
        parser.error("jq is not on PATH")
    bin_dir = str(Path(sys.executable).parent)
    dbname = f"pgq_bench_work_cli_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(args.dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    dsn = conninfo.make_conninfo(args.dsn, dbname=dbname)
    env = {**os.environ, "PGQ_DSN": dsn, "Q": QUEUE,
           "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    per_message: dict[str, list[float]] = {"shell loop": [], "pgq work": []}
    try:
        with psycopg.connect(dsn, autocommit=True) as conn:
            migrate.migrate(conn, "pgq")
        for round_ in range(args.rounds):
            runs = [("shell loop", shell_loop, args.shell_messages),
                    ("pgq work", pgq_work, args.work_messages)]
            for name, run, n in runs if round_ % 2 == 0 else runs[::-1]:
                seconds = run(dsn, n, env)
                per_message[name].append(seconds)
                print(f"round={round_} {name}: {seconds * 1000:.2f} ms/message ({n} messages)",
                      file=sys.stderr)
    finally:
        with psycopg.connect(args.dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(dbname)))
    median = {name: statistics.median(values) for name, values in per_message.items()}
    for name, values in per_message.items():
        print(f"{name:>10}: {median[name] * 1000:8.2f} ms/message "
              f"(spread {min(values) * 1000:.2f}-{max(values) * 1000:.2f}, "
              f"{len(values)} rounds)")
    print(f"pgq work is {median['shell loop'] / median['pgq work']:.1f}x faster per message")
    return 0


if __name__ == "__main__":
    sys.exit(main())
