"""`pgq ack -` and `pgq requeue -`: act on the `claim --json` lines read from stdin.

So that `pgq claim --json | … | pgq ack -` works: every line is checked before anything is
done (a bad line exits 2 and nothing is acked), then each message is handled on its own
with its own line's lease, as `ack ID --lease TOKEN` would handle it.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import IO, Any

from ..core import checks
from ..core.errors import InvalidInput

STDIN = "-"


@dataclass(frozen=True)
class Leased:
    """One line of `claim --json`: the message and the lease it was claimed with."""

    msg_id: int
    lease: uuid.UUID


def parse_ids(values: list[str] | None, lease: str | None) -> list[int] | None:
    """The message ids given as arguments, or None for `-` (read stdin)."""
    if not values:
        return []
    if STDIN in values:
        if values != [STDIN]:
            raise InvalidInput("give message ids or -, not both")
        if lease is not None:
            raise InvalidInput(
                "--lease cannot be used with -", hint="each stdin line carries its own lease"
            )
        return None
    ids: list[int] = []
    for value in values:
        try:
            ids.append(int(value))
        except ValueError:
            raise InvalidInput(
                f"invalid value for MSG_IDS: {value[:40]!r} is not a message id",
                hint="give numeric ids, or - to read `claim --json` lines from stdin",
            ) from None
    return checks.check_ids(ids)


def read_claimed(stream: IO[str]) -> list[Leased]:
    """Every non-blank line of `stream` as a claimed message; InvalidInput names a bad line."""
    found: list[Leased] = []
    for number, line in enumerate(stream, start=1):
        if not line.strip():
            continue
        where = f"stdin line {number}"
        try:
            record: Any = json.loads(line)
        except ValueError:
            raise InvalidInput(
                f"{where} is not JSON", hint="pipe in the output of `pgq claim --json`"
            ) from None
        if not isinstance(record, dict) or "msg_id" not in record:
            raise InvalidInput(
                f"{where} has no msg_id", hint="pipe in the output of `pgq claim --json`"
            )
        msg_id = record["msg_id"]
        if isinstance(msg_id, bool) or not isinstance(msg_id, int):
            raise InvalidInput(f"{where}: msg_id {str(msg_id)[:40]!r} is not a message id")
        (msg_id,) = checks.check_ids([msg_id])
        if not isinstance(record.get("lease"), str):
            raise InvalidInput(
                f"{where} (message {msg_id}) has no lease",
                hint="only claimed messages (`pgq claim --json`) can be acked or requeued this way",
            )
        lease = checks.check_lease(record["lease"])
        assert lease is not None
        found.append(Leased(msg_id, lease))
    return found

