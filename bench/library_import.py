"""What importing the library costs from a cold process: the light names against Queue.

Usage: .venv/bin/python bench/library_import.py [--runs N]

Each round runs, in rotated order, as separate processes:
  - python:   `python -c pass` (the interpreter's own start, the floor);
  - package:  `import pgq_cli` (what every `pgq` start pays for the package itself);
  - light:    `from pgq_cli import ExitCode, InvalidInput, MAX_PRIORITY` plus the request
              checks (no psycopg);
  - version:  `import pgq_cli; pgq_cli.__version__` (reads the installed metadata);
  - queue:    `from pgq_cli import Queue` (loads psycopg);
It reports the median and the spread (min-max) in ms over N rounds, and each minus python.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

CASES = {
    "python": "pass",
    "package": "import pgq_cli",
    "light": (
        "from pgq_cli import ExitCode, InvalidInput, MAX_PRIORITY\n"
        "from pgq_cli.core import checks\n"
        "checks.check_priority(MAX_PRIORITY)"
    ),
    "version": "import pgq_cli\npgq_cli.__version__",
    "queue": "from pgq_cli import Queue",
}


def once(code: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - started) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    names = list(CASES)
    timings: dict[str, list[float]] = {name: [] for name in names}
    for name in names:  # warm the file system cache; not counted
        once(CASES[name])
    for round_number in range(args.runs):
        shift = round_number % len(names)
        for name in names[shift:] + names[:shift]:
            timings[name].append(once(CASES[name]))
    floor = statistics.median(timings["python"])
    print(f"{'case':<9} {'median ms':>10} {'min-max ms':>15} {'minus python':>13}")
    for name in names:
        values = timings[name]
        median = statistics.median(values)
        spread = f"{min(values):.1f}-{max(values):.1f}"
        print(f"{name:<9} {median:>10.1f} {spread:>15} {median - floor:>13.1f}")


if __name__ == "__main__":
    main()
