"""What one pgq command costs from a cold process, beside a bare psycopg script.

Usage: .venv/bin/python bench/cli_startup.py [--dsn DSN] [--runs N]

Each round runs, in rotated order, as separate processes with PGQ_DSN set:
  - bare:     python -c "import psycopg; connect; SELECT 1" (the floor for any client);
  - claim:    `pgq claim -q <empty scratch queue>` (connect, return-due, claim, exit 0);
  - version:  `pgq --version`;
  - help:     `pgq --help`;
  - send:     `pgq send -q <scratch queue> '{}'`.
It reports the median and the spread (min-max) in ms over N rounds, and claim / bare.
The queue is migrated first (`pgq migrate`) and its scratch messages are purged at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

BARE = (
    "import os, psycopg\n"
    "with psycopg.connect(os.environ['PGQ_DSN']) as c:\n"
    "    c.execute('SELECT 1').fetchone()\n"
)


def pgq_executable() -> str:
    beside = Path(sys.executable).with_name("pgq")
    found = str(beside) if beside.exists() else shutil.which("pgq")
    if not found:
        sys.exit("bench/cli_startup.py: no pgq executable beside this Python or on PATH")
    return found


def timed(argv: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "PGQ_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--runs", type=int, default=11)
    args = parser.parse_args()

    pgq = pgq_executable()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQ_"))}
    env["PGQ_DSN"] = args.dsn
    queue = f"bench-startup-{uuid.uuid4().hex[:8]}"
    subprocess.run([pgq, "migrate"], env=env, check=True, capture_output=True)

    shapes: dict[str, list[str]] = {
        "bare": [sys.executable, "-c", BARE],
        "claim": [pgq, "claim", "-q", queue],
        "version": [pgq, "--version"],
        "help": [pgq, "--help"],
        "send": [pgq, "send", "-q", queue, "{}"],
    }
    names = list(shapes)
    times: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # one untimed warm-up each: page cache, .pyc files
        timed(shapes[name], env)
    for round_no in range(args.runs):
        order = names[round_no % len(names):] + names[: round_no % len(names)]
        for name in order:
            times[name].append(timed(shapes[name], env))
    subprocess.run([pgq, "purge", queue, "--all"], env=env, check=False, capture_output=True)

    bare = statistics.median(times["bare"])
    print(f"{'command':<10} {'median ms':>10} {'min-max ms':>16} {'/ bare':>7}")
    for name in names:
        median = statistics.median(times[name])
        spread = f"{min(times[name]):.0f}-{max(times[name]):.0f}"
        print(f"{name:<10} {median:>10.1f} {spread:>16} {median / bare:>7.2f}")


if __name__ == "__main__":
    main()
