"""The limits of a request and the one check of each input, run before any SQL.

Each check is written once: the CLI runs it before connecting (so a bad flag costs no
connection) and the library runs the same check before its statement. A check raises
`InvalidInput` or `BadPayload` whose message speaks in the library's parameter name
(`older_than`, `min_priority`) and lists it in `params`, so the CLI can say its flag.

Imports no psycopg, so that `import pgq_cli` and `pgq --version` stay cheap.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .durations import MAX_SECONDS
from .errors import BadPayload, InvalidInput
from .states import EFFECTIVE_STATES

MIN_PRIORITY = 1
MAX_PRIORITY = 10  # 10 is most urgent
DEFAULT_PRIORITY = 5
DEFAULT_QUEUE = "default"
DEFAULT_SCHEMA = "pgq"
DEFAULT_VT_S = 30.0
MAX_QTY = 100_000
MAX_PAYLOAD_BYTES = 1_048_576  # as stored (jsonb text form); the database CHECKs the same
# A lease or a delay beyond a year is a typo.
MAX_LEASE_OR_DELAY_S = 366 * 86400
# A limit beyond this is a typo; the column is an integer.
MAX_DELIVERIES_CAP = 1_000_000
# A claim waits at most this long; a shell loop does longer waits.
MAX_WAIT_S = 24 * 3600.0
MAX_MSG_ID = 2**63 - 1  # bigint
MAX_KEY_CHARS = 128  # the database CHECKs the same (messages_key_valid)
MAX_WEIGHT = 1000.0  # the database CHECKs the same (fair_keys_weight_range)
MAX_INFLIGHT_CAP = 1_000_000
# `stats --by-key` and the Prometheus per-key series show this many keys by default.
DEFAULT_TOP_KEYS = 20
MAX_TOP_KEYS = 10_000
# A dedup key is remembered this long unless the queue says otherwise (sql/0005;
# `pgq queue config Q --dedup-window`).
DEFAULT_DEDUP_WINDOW_S = 24 * 3600.0
MAX_DEDUP_KEY_BYTES = 512  # the database CHECKs the same
# Every connection's timeouts unless a command says otherwise; here, not beside the
# connecting code, because the CLI shows them in its help without loading psycopg.
DEFAULT_STATEMENT_TIMEOUT_MS = 30_000
DEFAULT_LOCK_TIMEOUT_MS = 5_000

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
# What `peek` shows: one effective state, or every message.
PEEK_ALL = "all"


class CheckedPayload(str):
    """JSON text that `check_payload` accepted: checking it again costs nothing.

    `pgq send --file` checks every line before connecting; `Queue.send_many` then sees
    checked payloads and does not parse them a second time.
    """

    __slots__ = ()


@dataclass(frozen=True)
class Envelope:
    """One message of a batch send (`Queue.send_envelopes`), with its own fairness key,
    priority, delay and, optionally, dedup key (sent as `Queue.send_deduplicated` does)."""

    payload: str
    key: str | None = None
    priority: int = DEFAULT_PRIORITY
    delay: float = 0.0
    dedup_key: str | None = None


def check_queue(name: str) -> str:
    if not QUEUE_NAME.fullmatch(name):  # match() would let a trailing newline through
        raise InvalidInput(
            f"invalid queue name {name[:70]!r}",
            hint="use 1-64 of A-Z a-z 0-9 _ . : - starting with a letter or digit",
        )
    return name


def check_schema(name: str) -> str:
    if not SCHEMA_NAME.fullmatch(name):
        raise InvalidInput(
            f"invalid schema name {name[:70]!r}",
            hint="use a lower-case SQL identifier, e.g. pgq",
        )
    return name


def check_priority(priority: int, param: str = "priority") -> int:
    """A priority; `param` names the parameter that holds it (e.g. `min_priority`)."""
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInput(
            f"{param} must be a whole number, not {priority!r}", params=(param,)
        )
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            f"{param} {priority} is out of range",
            hint=f"use {MIN_PRIORITY}..{MAX_PRIORITY} ({MAX_PRIORITY} is most urgent)",
            params=(param,),
        )
    return priority


def check_priority_range(min_priority: int, max_priority: int) -> tuple[int, int]:
    """The priorities a claim takes: each in range, and the lower one not above the other."""
    check_priority(min_priority, "min_priority")
    check_priority(max_priority, "max_priority")
    if min_priority > max_priority:
        raise InvalidInput(
            "min_priority is above max_priority", params=("min_priority", "max_priority")
        )
    return min_priority, max_priority


def check_key(key: str) -> str:
    """A fairness key: 1-128 printable characters (no control characters)."""
    if not isinstance(key, str) or not 1 <= len(key) <= MAX_KEY_CHARS:
        shown = key[:40] if isinstance(key, str) else key
        raise InvalidInput(
            f"invalid key {shown!r}",
            hint=f"use 1-{MAX_KEY_CHARS} printable characters",
            params=("key",),
        )
    if not key.isprintable():
        raise InvalidInput(
            f"invalid key {key[:40]!r}: it holds a control character",
            hint=f"use 1-{MAX_KEY_CHARS} printable characters",
            params=("key",),
        )
    return key


def check_seconds(value: float, param: str, *, allow_zero: bool = True) -> float:
    """A lease, delay or time budget in seconds: finite, not negative, at most a year."""
    if not math.isfinite(value):
        raise InvalidInput(f"{param} must be a finite number of seconds", params=(param,))
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(
            f"{param} must be {'0 or more' if allow_zero else 'more than 0'} seconds",
            params=(param,),
        )
    if value > MAX_LEASE_OR_DELAY_S:
        raise InvalidInput(f"{param} must be at most a year", params=(param,))
    return float(value)


def check_age(seconds: float, param: str = "older_than") -> float:
    """An age filter (`older_than`): finite, >= 0, and up to what
    `durations.parse_duration` accepts (ten years: keeping dead letters for more than a
    year is an ordinary request, unlike a year-long lease or delay)."""
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidInput(
            f"{param} must be a finite number of seconds >= 0", params=(param,)
        )
    if seconds > MAX_SECONDS:
        raise InvalidInput(f"{param} must be at most ten years", params=(param,))
    return float(seconds)


def check_qty(qty: int, param: str = "qty") -> int:
    if not 1 <= qty <= MAX_QTY:
        raise InvalidInput(f"{param} must be 1..{MAX_QTY}, not {qty}", params=(param,))
    return qty


def check_peek_state(state: str) -> str:
    """An effective state, or `all`."""
    if state not in (*EFFECTIVE_STATES, PEEK_ALL):
        raise InvalidInput(
            f"unknown state {state!r}", hint="use " + " | ".join((*EFFECTIVE_STATES, PEEK_ALL))
        )
    return state


def check_dedup_key(key: str) -> str:
    """A send's dedup key: 1..512 bytes of text without NUL."""
    if not isinstance(key, str) or not key:
        raise InvalidInput("dedup_key must be a non-empty string", params=("dedup_key",))
    if "\x00" in key:
        raise InvalidInput("dedup_key contains a NUL character", params=("dedup_key",))
    size = len(key.encode())
    if size > MAX_DEDUP_KEY_BYTES:
        raise InvalidInput(
            f"dedup_key is {size} bytes; the limit is {MAX_DEDUP_KEY_BYTES}",
            hint="use a hash of a longer key",
            params=("dedup_key",),
        )
    return key


def check_dedup_window(seconds: float) -> float:
    """How long a queue remembers dedup keys: more than 0, at most a year."""
    return check_seconds(seconds, "dedup_window", allow_zero=False)


def check_wait(seconds: float) -> float:
    """How long a claim may wait for work."""
    if not 0 <= seconds <= MAX_WAIT_S:  # also refuses NaN
        raise InvalidInput(
            f"wait must be 0..{MAX_WAIT_S:.0f} seconds, not {seconds}",
            hint="loop in the shell for longer waits",
            params=("wait",),
        )
    return float(seconds)


def check_lease(token: str | uuid.UUID | None) -> uuid.UUID | None:
    if token is None or isinstance(token, uuid.UUID):
        return token
    try:
        return uuid.UUID(token)
    except ValueError:
        raise InvalidInput(
            f"malformed lease token {token[:40]!r}", hint="pass the lease printed by claim"
        ) from None


def check_ids(ids: Iterable[int]) -> list[int]:
    out = list(ids)
    if not out:
        raise InvalidInput("no message id given")
    for msg_id in out:
        if isinstance(msg_id, bool) or not isinstance(msg_id, int) or msg_id <= 0:
            raise InvalidInput(f"malformed message id {msg_id!r}")
        if msg_id > MAX_MSG_ID:
            raise InvalidInput(f"message id {msg_id} is out of range")
    return out


def check_limit(limit: int, param: str = "limit") -> int:
    """A positive cap on how many messages an operation touches."""
    if limit < 1:
        raise InvalidInput(f"{param} must be a positive number, not {limit}", params=(param,))
    return limit


def check_max_deliveries(value: int | None) -> int | None:
    """A queue's delivery limit; None removes it."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"max_deliveries must be a whole number >= 1, not {value!r}",
            hint="or max_deliveries=None to remove the limit",
            params=("max_deliveries", "max_deliveries=None"),
        )
    if value > MAX_DELIVERIES_CAP:
        raise InvalidInput(
            f"max_deliveries must be at most {MAX_DELIVERIES_CAP}", params=("max_deliveries",)
        )
    return value


def check_below_priority(value: int | None) -> int | None:
    """The band a partial pause stops: priorities below `value` (None: the whole queue)."""
    if value is None:
        return None
    check_priority(value, "below_priority")
    if value == MIN_PRIORITY:
        raise InvalidInput(
            f"below_priority {MIN_PRIORITY} pauses nothing",
            hint=f"use {MIN_PRIORITY + 1}..{MAX_PRIORITY}, or below_priority=None to pause "
            "the whole queue",
            params=("below_priority", "below_priority=None"),
        )
    return value


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


class _ExponentNumber(Exception):
    """A number written with an exponent: its stored form may be far longer (1e300)."""


def _float_without_exponent(text: str) -> float:
    if "e" in text or "E" in text:
        raise _ExponentNumber
    return float(text)


# One decoder for every payload (json.loads with any option builds a new one per call).
_PAYLOAD_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_float_without_exponent
)


def check_payload(text: str, where: str = "payload") -> CheckedPayload:
    """Validate JSON text before any SQL; return it unchanged (numbers keep their digits).

    Text that this check already accepted (a `CheckedPayload`) is not parsed again. Parsed
    once; the stored size (jsonb's text form, which the database CHECKs) is computed only
    when it could pass the cap: jsonb's form adds at most one space per separator and never
    lengthens a string, so without an exponent it is at most twice the input's size.
    """
    if isinstance(text, CheckedPayload):
        return text
    exponent = False
    try:
        try:
            value = _PAYLOAD_DECODER.decode(text)
        except _ExponentNumber:
            exponent = True
            value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"{where} is not valid JSON: {str(exc)[:120]}") from None
    if "\x00" in text or "\\u0000" in text:
        raise BadPayload(f"{where} contains a NUL character, which PostgreSQL cannot store")
    input_size = len(text) if text.isascii() else len(text.encode())
    if exponent or 2 * input_size > MAX_PAYLOAD_BYTES:
        # json.dumps matches jsonb's spacing.
        stored_size = len(json.dumps(value, ensure_ascii=False).encode())
        if stored_size > MAX_PAYLOAD_BYTES:
            raise BadPayload(
                f"{where} is {stored_size} bytes; the limit is {MAX_PAYLOAD_BYTES} (1 MiB)",
                hint="store large data elsewhere and send a reference to it",
            )
    return CheckedPayload(text)


def check_weight(weight: float) -> float:
    """A fairness key's weight: its share of claims while several keys have work."""
    if weight != weight or not 0 < weight <= MAX_WEIGHT:
        raise InvalidInput(
            f"weight must be a number above 0 and at most {MAX_WEIGHT:g}, not {weight!r}",
            hint="weight 2 gets twice the claims of weight 1 while both have work",
            params=("weight",),
        )
    return float(weight)


def check_max_inflight(value: int | None) -> int | None:
    """A fair queue's cap on live leases per key (None: no cap)."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidInput(
            f"max_inflight_per_key must be a whole number >= 1, not {value!r}",
            params=("max_inflight_per_key",),
        )
    if value > MAX_INFLIGHT_CAP:
        raise InvalidInput(
            f"max_inflight_per_key must be at most {MAX_INFLIGHT_CAP}",
            params=("max_inflight_per_key",),
        )
    return value


def check_top_keys(value: int) -> int:
    """How many keys a per-key listing shows (the top ones by ready depth)."""
    if not 1 <= value <= MAX_TOP_KEYS:
        raise InvalidInput(f"top must be 1..{MAX_TOP_KEYS}, not {value}", params=("top",))
    return value
