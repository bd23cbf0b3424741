"""`pgq send -f` of an NDJSON file beside `psql \\copy` of the same file into pgq.messages.

    .venv/bin/python bench/send_file.py --dsn postgresql://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/send_file.py --dsn "$DSN" --lines 100000 --rounds 5 --json

Both write into the same scratch schema `pgq_bench_send_<random>` (migrated with pgq's own
migrator, so the same constraints, indexes and NOTIFY trigger; dropped at the end), which
is emptied (TRUNCATE) and VACUUMed before every run. Each run is a whole process, as a user
runs it: `pgq send -q bench -f FILE --schema SCRATCH` (PGQ_DSN set; Python start-up,
reading, validating, reserving ids, COPY and printing the ids included, stdout to
/dev/null) and `psql DSN -c "\\copy SCRATCH.messages (payload) FROM 'FILE'"` (the
table's defaults fill in the rest; nothing validated, no ids returned). The two take turns
in each round, the order alternating, and the median wall time of the rounds is reported
with the fastest and slowest, and pgq's speed as a fraction of psql's (psql s / pgq s).

The file: one JSON object per line, about 80 bytes, no backslashes (COPY's text format,
which psql uses here, would read them as escapes).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from pgq_cli.core import migrate

QUEUE = "bench"


def write_file(path: Path, lines: int) -> None:
    with path.open("w", encoding="utf-8") as out:
        for i in range(lines):
            out.write(json.dumps({"n": i, "user": f"user-{i % 977}", "action": "resize",
                                  "tags": ["a", "b"], "size": i * 7 % 1000}) + "\n")


def _reset(dsn: str, schema: str) -> None:
    table = sql.Identifier(schema, "messages")
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("TRUNCATE {}").format(table))
        conn.execute(sql.SQL("VACUUM (ANALYZE) {}").format(table))


def _timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dsn", default=os.environ.get("PGQ_DSN", ""), help="server to use")
    parser.add_argument("--lines", type=int, default=100_000, help="lines in the file")
    parser.add_argument("--rounds", type=int, default=5, help="rounds (median is reported)")
    parser.add_argument("--pgq", default=str(Path(sys.executable).parent / "pgq"),
                        help="the pgq console script")
    parser.add_argument("--psql", default=shutil.which("psql") or "psql", help="psql to use")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not args.dsn:
        parser.error("give --dsn or PGQ_DSN")
    schema = f"pgq_bench_send_{uuid.uuid4().hex[:8]}"
    times: dict[str, list[float]] = {"pgq": [], "psql": []}
    with tempfile.TemporaryDirectory(prefix="pgq-bench-send-") as scratch:
        path = Path(scratch) / "lines.ndjson"
        write_file(path, args.lines)
        env = {**os.environ, "PGQ_DSN": args.dsn}
        commands = {
            "pgq": [args.pgq, "send", "-q", QUEUE, "-f", str(path), "--schema", schema],
            "psql": [args.psql, args.dsn, "-qX", "-v", "ON_ERROR_STOP=1", "-c",
                     f"\\copy {schema}.messages (payload) FROM '{path}'"],
        }
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            migrate.migrate(conn, schema)
        try:
            for round_ in range(args.rounds):
                order = ["pgq", "psql"] if round_ % 2 == 0 else ["psql", "pgq"]
                for name in order:
                    _reset(args.dsn, schema)
                    seconds = _timed(commands[name], env)
                    times[name].append(seconds)
                    print(f"round={round_} {name}: {seconds:.3f} s", file=sys.stderr)
        finally:
            with psycopg.connect(args.dsn, autocommit=True) as conn:
                conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    median = {name: statistics.median(t) for name, t in times.items()}
    result: dict[str, Any] = {
        "lines": args.lines,
        "rounds": args.rounds,
        "seconds": {name: {"median": round(statistics.median(t), 3),
                           "min": round(min(t), 3), "max": round(max(t), 3)}
                    for name, t in times.items()},
        "pgq_speed_over_psql": round(median["psql"] / median["pgq"], 3),
    }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{args.lines:,} lines, wall seconds, median [min-max] of {args.rounds} rounds")
    for name, s in result["seconds"].items():
        print(f"{name:>5} {s['median']:.3f} [{s['min']:.3f}-{s['max']:.3f}]")
    print(f"pgq speed / psql \\copy speed: {result['pgq_speed_over_psql']:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
