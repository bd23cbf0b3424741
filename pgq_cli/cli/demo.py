"""`pgq demo`: a one-minute tour that is also a self-check.

It migrates, sends five messages with mixed priorities to a queue of its own, claims them
back one at a time, shows lease fencing and redelivery after a lease runs out, prints the
stats, and removes what it sent. It exits 1 if anything comes back out of the promised
order, so the README's first command proves the install works, not just that it imports.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import TYPE_CHECKING

import typer

from ..core import checks
from ..core.errors import PgqError, StaleLease
from . import output as render
from .connection import session
from .options import DsnOpt, SchemaOpt
from .output import Format, line

if TYPE_CHECKING:
    from ..core import queue as core

# (priority, payload), deliberately sent out of priority order.
DEMO_MESSAGES: tuple[tuple[int, dict[str, str]], ...] = (
    (3, {"job": "resize image", "file": "a.png"}),
    (1, {"job": "nightly report"}),
    (9, {"job": "page the on-call engineer"}),
    (3, {"job": "resize image", "file": "b.png"}),
    (7, {"job": "send invoice", "invoice": "2026-0042"}),
)
SHORT_LEASE_S = 1.0

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()


def _compact(payload: object) -> str:
    return json.dumps(payload, separators=(",", ":"))


@commands.command()
def demo(dsn: DsnOpt = "", schema: SchemaOpt = checks.DEFAULT_SCHEMA) -> None:
    """A short tour: migrate, send with priorities, claim in order, leases, stats.

    Works with zero configuration on the embedded PostgreSQL. Uses a queue of its own
    (demo-<random>) and deletes what it sent, so it is safe on a real server too.

    Examples:
      pgq demo
    """
    from ..core import migrate as migrator  # psycopg: loaded when the demo runs, not for help

    queue = f"demo-{uuid.uuid4().hex[:8]}"
    with session("demo", dsn, schema) as q:
        applied = migrator.migrate(q.conn, schema)
        line(f"1. migrate: schema {schema!r} " + (
            f"created/upgraded ({', '.join(m.filename for m in applied)})" if applied
            else "already up to date"))

        line(f"2. send to queue {queue!r} (priority 10 is most urgent):")
        sent: dict[int, int] = {}
        for priority, payload in DEMO_MESSAGES:
            msg_id = q.send(json.dumps(payload), queue=queue, priority=priority)
            sent[msg_id] = priority
            line(f"   msg {msg_id}  priority {priority}  {_compact(payload)}")

        line("3. stats:")
        render.stats(q.stats(queue=queue), Format.rich if sys.stdout.isatty() else Format.table)

        line("4. claim one at a time: highest priority first, FIFO within a priority:")
        expected = sorted(sent, key=lambda i: (-sent[i], i))
        claimed: list[core.Message] = []
        for _ in sent:
            (message,) = q.claim(queue=queue, qty=1, vt=SHORT_LEASE_S)
            claimed.append(message)
            line(f"   msg {message.msg_id}  priority {message.priority}  "
                 f"{_compact(message.payload)}")
        got = [m.msg_id for m in claimed]
        if got != expected:
            raise PgqError(f"claim order was {got}, expected {expected}",
                           hint="this is a bug in pgq; please report it")

        first = claimed[0]
        line(f"5. lease fencing: ack msg {first.msg_id} with a wrong lease token is refused:")
        try:
            q.ack([first.msg_id], lease=uuid.uuid4())
            raise PgqError("an ack with a wrong lease was accepted",
                           hint="this is a bug in pgq; please report it")
        except StaleLease as refused:
            line(f"   refused: {refused.message}")

        line(f"6. at-least-once: the leases were {SHORT_LEASE_S:g} s; after they run out "
             "the messages come back:")
        time.sleep(SHORT_LEASE_S + 0.2)
        again = q.claim(queue=queue, qty=len(sent), vt=checks.DEFAULT_VT_S)
        for message in again:
            line(f"   msg {message.msg_id}  priority {message.priority}  "
                 f"delivery {message.read_ct}")
        if sorted(m.msg_id for m in again) != sorted(sent) or any(
            m.read_ct != 2 for m in again
        ):
            raise PgqError("expired leases did not all come back exactly once",
                           hint="this is a bug in pgq; please report it")

        for message in again:
            q.ack([message.msg_id], lease=message.lease)
        line(f"7. acked all {len(again)} with their current lease tokens; queue {queue!r} "
             "is empty again.")
        line("Next: `pgq send --priority 9 '{\"job\": 1}'`, `pgq claim --qty 5`, `pgq stats`, "
             "`pgq --help`.")
