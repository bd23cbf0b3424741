"""What one pgq command costs from a cold process, beside a bare psycopg script.

Usage: .venv/bin/python bench/cli_startup.py [--dsn DSN] [--runs N] [--before DIR]

Each round runs, in rotated order, as separate processes with PGQ_DSN set:
  - bare:     python -c "import psycopg; connect; SELECT 1" (the floor for any client);
  - claim:    `pgq claim -q <empty scratch queue>` (connect, return-due, claim, exit 0);
  - version:  `pgq --version`;
  - help:     `pgq --help`;
  - cmd-help: `pgq claim --help`;
  - send:     `pgq send -q <scratch queue> '{}'`.
It reports the median and the spread (min-max) of the wall time in ms over N rounds, each
median / bare's, and the median CPU time (user + system) of the process: on a loaded
machine the wall time mostly measures waiting for a core, the CPU time much less so.

`--before DIR` adds, in the same rounds, the claim, version, help and cmd-help of another
source tree (an older commit: `mkdir /tmp/pgq-before && git archive <commit> | tar -x -C
/tmp/pgq-before`), run as `python -P -m pgq_cli.cli.main` with PYTHONPATH=DIR, so a change is
measured against what it replaced on the same machine at the same moment.
The queue is migrated first (`pgq migrate`) and its scratch messages are purged at the end.

Both source trees are byte-compiled first, as `pip install` does: with
PYTHONDONTWRITEBYTECODE set (some shells and CI set it) an editable checkout would
otherwise recompile every pgq module on every run, about 30 ms that no installed pgq
pays. The load average is printed before and after: the figures of a loaded machine say
little.
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import os
import resource
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


Shape = tuple[list[str], dict[str, str]]  # argv, extra environment


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU milliseconds of one run of `argv`."""
    cpu_before = _children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    elapsed = (time.perf_counter() - started) * 1000
    if done.returncode != 0:
        sys.exit(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
    return elapsed, (_children_cpu_s() - cpu_before) * 1000


def byte_compile(tree: Path) -> None:
    """Write the .pyc files of every module under `tree` (py_compile ignores
    PYTHONDONTWRITEBYTECODE)."""
    compileall.compile_dir(str(tree), quiet=1)


def installed_package_dir() -> Path:
    """Where the `pgq` executable imports pgq_cli from, without importing it here."""
    spec = importlib.util.find_spec("pgq_cli")
    if spec is None or spec.origin is None:
        sys.exit("bench/cli_startup.py: pgq_cli is not importable by this Python")
    return Path(spec.origin).parent


def load() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", default=os.environ.get(
        "PGQ_DSN", "postgresql://postgres@127.0.0.1:5432/postgres"))
    parser.add_argument("--runs", type=int, default=11)
    parser.add_argument("--before", metavar="DIR", help="another source tree to compare")
    args = parser.parse_args()

    pgq = pgq_executable()
    byte_compile(installed_package_dir())
    if args.before:
        byte_compile(Path(args.before))
    print(f"before: {load()}")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQ_"))}
    env["PGQ_DSN"] = args.dsn
    queue = f"bench-startup-{uuid.uuid4().hex[:8]}"
    subprocess.run([pgq, "migrate"], env=env, check=True, capture_output=True)

    shapes: dict[str, Shape] = {
        "bare": ([sys.executable, "-c", BARE], {}),
        "claim": ([pgq, "claim", "-q", queue], {}),
        "version": ([pgq, "--version"], {}),
        "help": ([pgq, "--help"], {}),
        "cmd-help": ([pgq, "claim", "--help"], {}),
        "send": ([pgq, "send", "-q", queue, "{}"], {}),
    }
    if args.before:
        # -P: without it `-m` puts the working directory (this checkout) ahead of PYTHONPATH.
        before = [sys.executable, "-P", "-m", "pgq_cli.cli.main"]
        tree = {"PYTHONPATH": str(Path(args.before).resolve())}
        for name in ("claim", "version", "help", "cmd-help"):
            shapes[f"{name}@before"] = (before + shapes[name][0][1:], tree)
    names = list(shapes)
    times: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # one untimed warm-up each: page cache, .pyc files
        timed(shapes[name][0], {**env, **shapes[name][1]})
    for round_no in range(args.runs):
        order = names[round_no % len(names):] + names[: round_no % len(names)]
        for name in order:
            argv, extra = shapes[name]
            wall_ms, cpu_ms = timed(argv, {**env, **extra})
            times[name].append(wall_ms)
            cpu[name].append(cpu_ms)
    subprocess.run([pgq, "purge", queue, "--all"], env=env, check=False, capture_output=True)

    print(f"after:  {load()}")
    bare = statistics.median(times["bare"])
    bare_cpu = statistics.median(cpu["bare"])
    print(f"{'command':<16} {'median ms':>10} {'min-max ms':>12} {'/ bare':>7} "
          f"{'cpu ms':>7} {'/ bare':>7}")
    for name in names:
        median = statistics.median(times[name])
        spread = f"{min(times[name]):.0f}-{max(times[name]):.0f}"
        cpu_median = statistics.median(cpu[name])
        print(f"{name:<16} {median:>10.1f} {spread:>12} {median / bare:>7.2f} "
              f"{cpu_median:>7.1f} {cpu_median / bare_cpu:>7.2f}")


if __name__ == "__main__":
    main()
