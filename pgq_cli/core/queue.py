"""The queue: send, claim, peek, ack, requeue, extend, stats.

This is the library API. It takes a psycopg connection (autocommit), returns frozen
dataclasses and raises the `errors.PgqError` family. It never prints and never imports
Typer or rich.

Every public method runs in its own short transaction (autocommit, one statement, or one
explicit transaction where noted) and holds no lock after it returns: a claim commits its
lease at once, and the consumer works with nothing held open.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import queries
from .durations import MAX_SECONDS
from .errors import (
    BadPayload,
    InvalidInput,
    NotFound,
    NothingDone,
    PgqError,
    StaleLease,
    translated,
)

MIN_PRIORITY = 1
MAX_PRIORITY = 10  # 10 is most urgent
DEFAULT_PRIORITY = 5
DEFAULT_QUEUE = "default"
DEFAULT_SCHEMA = "pgq"
DEFAULT_VT_S = 30.0
MAX_QTY = 100_000
MAX_PAYLOAD_BYTES = 1_048_576  # as stored (jsonb text form); the database CHECKs the same
# A dedup key is remembered this long unless the queue says otherwise (sql/0005;
# `pgq queue config Q --dedup-window`).
DEFAULT_DEDUP_WINDOW_S = 24 * 3600.0
MAX_DEDUP_KEY_BYTES = 512  # the database CHECKs the same
# A racing sender's record can be invisible to a statement that began before it committed
# (queries.INSERT_DEDUPLICATED); the next run sees it. More than a few runs is a bug.
DEDUP_ATTEMPTS = 5
# At most this many expired/due rows go back to ready per claim (or qty, if larger), so a
# mass expiry costs each claim a bounded amount; see queries.RETURN_DUE.
RETURN_DUE_BATCH = 1000

QUEUE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
STATES = ("ready", "leased", "expired", "delayed", "dead")


@dataclass(frozen=True)
class Message:
    msg_id: int
    queue: str
    priority: int
    state: str
    vt: datetime
    read_ct: int
    enqueued_at: datetime
    lease: uuid.UUID | None
    payload: Any

    def to_json(self) -> dict[str, Any]:
        """Stable field names for `--json`."""
        return {
            "msg_id": self.msg_id,
            "queue": self.queue,
            "priority": self.priority,
            "state": self.state,
            "payload": self.payload,
            "read_ct": self.read_ct,
            "lease": str(self.lease) if self.lease else None,
            "vt": self.vt.isoformat(),
            "enqueued_at": self.enqueued_at.isoformat(),
        }


@dataclass(frozen=True)
class Sent:
    """What a send with a dedup key did: `created` False means the key had already sent
    `msg_id` within its queue's dedup window, and nothing was sent this time."""

    msg_id: int
    created: bool

    def to_json(self) -> dict[str, Any]:
        return {"msg_id": self.msg_id, "created": self.created}


@dataclass(frozen=True)
class PriorityStats:
    queue: str
    priority: int
    ready: int
    leased: int
    expired: int
    delayed: int
    dead: int
    oldest_ready_age_s: float | None
    max_read_ct: int
    # Claim skips this queue/priority (`pgq pause`); last, with a default, so that
    # existing constructors keep working.
    paused: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "priority": self.priority,
            "ready": self.ready,
            "leased": self.leased,
            "expired": self.expired,
            "delayed": self.delayed,
            "dead": self.dead,
            "oldest_ready_age_s": self.oldest_ready_age_s,
            "max_read_ct": self.max_read_ct,
            "paused": self.paused,
        }


@dataclass(frozen=True)
class QueueStats:
    """Counts per queue and priority. Priority 10 is most urgent."""

    rows: tuple[PriorityStats, ...]

    @property
    def total(self) -> int:
        return sum(r.ready + r.leased + r.expired + r.delayed + r.dead for r in self.rows)


# ----------------------------------------------------------------------------- validation


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


def check_priority(priority: int) -> int:
    if isinstance(priority, bool) or not isinstance(priority, int):
        raise InvalidInput(f"priority must be a whole number, not {priority!r}")
    if not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        raise InvalidInput(
            f"priority {priority} is out of range",
            hint=f"use {MIN_PRIORITY}..{MAX_PRIORITY} ({MAX_PRIORITY} is most urgent)",
        )
    return priority


def check_seconds(value: float, what: str, *, allow_zero: bool = True) -> float:
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{what} must be a finite number of seconds")
    if value < 0 or (value == 0 and not allow_zero):
        raise InvalidInput(f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds")
    if value > 366 * 86400:
        raise InvalidInput(f"{what} must be at most a year")
    return float(value)


def check_age(seconds: float) -> float:
    """An age filter (`--older-than`): finite, >= 0, and up to what
    `durations.parse_duration` accepts (ten years: keeping dead letters for more than a
    year is an ordinary request, unlike a year-long lease or delay)."""
    if seconds != seconds or seconds in (float("inf"), float("-inf")) or seconds < 0:
        raise InvalidInput("--older-than must be a finite number of seconds >= 0")
    if seconds > MAX_SECONDS:
        raise InvalidInput("--older-than must be at most ten years")
    return float(seconds)


def check_qty(qty: int) -> int:
    if not 1 <= qty <= MAX_QTY:
        raise InvalidInput(f"qty must be 1..{MAX_QTY}, not {qty}")
    return qty


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
        if msg_id > 2**63 - 1:
            raise InvalidInput(f"message id {msg_id} is out of range")
    return out


def check_dedup_key(key: str) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidInput("dedup key must be a non-empty string")
    if "\x00" in key:
        raise InvalidInput("dedup key contains a NUL character")
    if len(key.encode()) > MAX_DEDUP_KEY_BYTES:
        raise InvalidInput(
            f"dedup key is {len(key.encode())} bytes; the limit is {MAX_DEDUP_KEY_BYTES}",
            hint="use a hash of a longer key",
        )
    return key


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def check_payload(text: str, where: str = "payload") -> str:
    """Validate JSON text before any SQL; return it unchanged (numbers keep their digits)."""
    try:
        value = json.loads(text, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise BadPayload(f"{where} is not valid JSON: {str(exc)[:120]}") from None
    if "\x00" in text or "\\u0000" in text:
        raise BadPayload(f"{where} contains a NUL character, which PostgreSQL cannot store")
    # jsonb's text form is what the database CHECK measures; json.dumps matches its spacing.
    stored_size = len(json.dumps(value, ensure_ascii=False).encode())
    if stored_size > MAX_PAYLOAD_BYTES:
        raise BadPayload(
            f"{where} is {stored_size} bytes; the limit is {MAX_PAYLOAD_BYTES} (1 MiB)",
            hint="store large data elsewhere and send a reference to it",
        )
    return text


def _with_done(error: NothingDone, done: set[int]) -> NothingDone:
    error.done = tuple(sorted(done))
    return error


def _sort_claim_order(messages: Iterable[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (-m.priority, m.msg_id))


# ----------------------------------------------------------------------------- the queue


class Queue:
    """The queue API over one connection. `schema` is where `pgq migrate` installed it."""

    def __init__(self, conn: psycopg.Connection[Any], schema: str = DEFAULT_SCHEMA) -> None:
        self.conn = conn
        self.schema = check_schema(schema)
        self._table = sql.Identifier(schema, "messages")
        self._queues = sql.Identifier(schema, "queues")
        self._dedup_keys = sql.Identifier(schema, "dedup_keys")

    @property
    def notify_channel(self) -> str:
        """The LISTEN/NOTIFY channel on which new ready work is announced (sql/0002)."""
        return f"pgq_ready:{self.schema}"

    def _q(self, template: LiteralString) -> sql.Composed:
        return sql.SQL(template).format(
            messages=self._table, queues=self._queues, dedup_keys=self._dedup_keys
        )

    def _messages(self, cur: psycopg.Cursor[Any]) -> list[Message]:
        return [Message(**row) for row in cur.fetchall()]

    # -- send --------------------------------------------------------------------------

    def send(
        self,
        payload: str,
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        delay: float = 0.0,
        dedup_key: str | None = None,
    ) -> int:
        """Insert one message (JSON text); return its msg_id. One autocommit INSERT.

        With `dedup_key`: a send whose key already sent a message to this queue within the
        queue's dedup window sends nothing and returns that first message's id (see
        `send_deduplicated`).
        """
        if dedup_key is not None:
            sent = self.send_deduplicated(
                payload, dedup_key=dedup_key, queue=queue, priority=priority, delay=delay
            )
            return sent.msg_id
        params = {
            "queue": check_queue(queue),
            "priority": check_priority(priority),
            "delay": check_seconds(delay, "delay"),
            "payload": check_payload(payload),
        }
        with translated():
            row = self.conn.execute(self._q(queries.INSERT_ONE), params).fetchone()
        assert row is not None
        return int(row[0])

    def send_deduplicated(
        self,
        payload: str,
        *,
        dedup_key: str,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        delay: float = 0.0,
    ) -> Sent:
        """Send once per `dedup_key` and queue within the queue's dedup window.

        One autocommit statement writes the key's record and the message together
        (queries.INSERT_DEDUPLICATED), so a retry after a lost connection either finds the
        record (the first send committed: its id comes back, created False) or sends anew.
        Racing senders of one key produce one message.
        """
        params = {
            "queue": check_queue(queue),
            "priority": check_priority(priority),
            "delay": check_seconds(delay, "delay"),
            "payload": check_payload(payload),
            "dedup_key": check_dedup_key(dedup_key),
            "default_window": DEFAULT_DEDUP_WINDOW_S,
            "table": f"{self.schema}.messages",
        }
        statement = self._q(queries.INSERT_DEDUPLICATED)
        for _ in range(DEDUP_ATTEMPTS):
            with translated():
                row = self.conn.execute(statement, params).fetchone()
            if row is not None:
                return Sent(int(row[0]), bool(row[1]))
        raise PgqError(f"dedup key {dedup_key[:40]!r} was neither recorded nor found")

    def send_many(
        self,
        payloads: Sequence[str],
        *,
        queue: str = DEFAULT_QUEUE,
        priority: int = DEFAULT_PRIORITY,
        delay: float = 0.0,
    ) -> list[int]:
        """Insert many messages in one transaction with COPY; return their ids in order.

        Every payload is validated before anything is written, so one bad payload means
        nothing is inserted (BadPayload names its 1-based position).
        """
        check_queue(queue)
        check_priority(priority)
        check_seconds(delay, "delay")
        for index, payload in enumerate(payloads, start=1):
            check_payload(payload, where=f"line {index}")
        if not payloads:
            return []
        state = "delayed" if delay > 0 else "ready"
        table_name = f"{self.schema}.messages"
        with translated(), self.conn.transaction(), self.conn.cursor() as cur:
            now = cur.execute("SELECT now() + make_interval(secs => %s)", (delay,)).fetchone()
            assert now is not None
            vt = now[0]
            cur.execute(queries.RESERVE_IDS, {"table": table_name, "count": len(payloads)})
            ids = sorted(int(r[0]) for r in cur.fetchall())
            with cur.copy(self._q(queries.COPY_IN)) as copy:
                for msg_id, payload in zip(ids, payloads, strict=True):
                    copy.write_row((msg_id, queue, priority, state, vt, payload))
        return ids

    # -- claim -------------------------------------------------------------------------

    def claim(
        self,
        *,
        queue: str = DEFAULT_QUEUE,
        qty: int = 1,
        vt: float = DEFAULT_VT_S,
        min_priority: int = MIN_PRIORITY,
        max_priority: int = MAX_PRIORITY,
    ) -> list[Message]:
        """Lease up to qty ready messages, highest priority first, FIFO within a priority.

        One network round trip (pipeline), two autocommit statements: first expired leases
        and due delayed messages of this queue go back to ready (bounded batch), then
        exactly-n rows are locked with SKIP LOCKED and leased with a fresh token each.
        Nothing stays locked after it returns.
        """
        params = {
            "queue": check_queue(queue),
            "qty": check_qty(qty),
            "vt": check_seconds(vt, "vt", allow_zero=False),
            "min_priority": check_priority(min_priority),
            "max_priority": check_priority(max_priority),
            "batch": max(qty, RETURN_DUE_BATCH),
        }
        if min_priority > max_priority:
            raise InvalidInput("--min-priority is above --max-priority")
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            with self.conn.pipeline():
                self.conn.execute(self._q(queries.RETURN_DUE), params)
                cur.execute(self._q(queries.CLAIM), params)
            return _sort_claim_order(self._messages(cur))

    # -- peek --------------------------------------------------------------------------

    def peek(
        self, *, queue: str = DEFAULT_QUEUE, limit: int = 10, state: str = "ready"
    ) -> list[Message]:
        """Show messages in claim order without touching any lease. Read-only."""
        check_queue(queue)
        if state not in (*STATES, "all"):
            raise InvalidInput(f"unknown state {state!r}", hint=f"use one of {STATES} or all")
        if not 1 <= limit <= MAX_QTY:
            raise InvalidInput(f"limit must be 1..{MAX_QTY}")
        params = {"queue": queue, "limit": limit, "state": state}
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._q(queries.PEEK), params)
            return self._messages(cur)

    # -- ack / requeue / extend --------------------------------------------------------

    def _explain_missing(self, wanted: list[int], done: set[int], lease: uuid.UUID | None) -> None:
        missing = [i for i in wanted if i not in done]
        if not missing:
            return
        with translated():
            rows = self.conn.execute(self._q(queries.EXISTING_IDS), {"ids": missing}).fetchall()
        existing = {int(r[0]) for r in rows}
        unknown = [i for i in missing if i not in existing]
        if unknown:
            raise _with_done(
                NotFound(
                    f"no such message: {', '.join(map(str, unknown[:10]))}",
                    hint="it may have been acked already",
                ),
                done,
            )
        if lease is not None:
            raise _with_done(
                StaleLease(
                    f"lease is not current for message {', '.join(map(str, missing[:10]))}"
                ),
                done,
            )
        raise _with_done(
            NotFound(
                f"message {', '.join(map(str, missing[:10]))} is not in a state for that",
                hint="dead letters are redriven with `pgq requeue --dead`",
            ),
            done,
        )

    def ack(self, ids: Iterable[int], *, lease: str | uuid.UUID | None = None) -> list[int]:
        """Delete (acknowledge) messages. With a lease token, only where it is current.

        One autocommit DELETE; ids that were done are returned. Raises NotFound for unknown
        ids and StaleLease for a stale token, after acking all the others.
        """
        wanted = check_ids(ids)
        token = check_lease(lease)
        with translated():
            rows = self.conn.execute(
                self._q(queries.ACK), {"ids": wanted, "lease": token}
            ).fetchall()
        done = {int(r[0]) for r in rows}
        self._explain_missing(wanted, done, token)
        return sorted(done)

    def requeue(
        self,
        ids: Iterable[int],
        *,
        lease: str | uuid.UUID | None = None,
        delay: float = 0.0,
    ) -> list[int]:
        """Give messages back: ready now, or delayed by `delay` seconds. read_ct is kept.

        A message that has had its queue's max_deliveries goes to 'dead' instead.
        """
        return sorted(self.requeue_states(ids, lease=lease, delay=delay))

    def requeue_states(
        self,
        ids: Iterable[int],
        *,
        lease: str | uuid.UUID | None = None,
        delay: float = 0.0,
    ) -> dict[int, str]:
        """`requeue`, returning the state each message went to ('ready', 'delayed', 'dead')."""
        wanted = check_ids(ids)
        token = check_lease(lease)
        params = {"ids": wanted, "lease": token, "delay": check_seconds(delay, "delay")}
        with translated():
            rows = self.conn.execute(self._q(queries.REQUEUE), params).fetchall()
        done = {int(r[0]): str(r[1]) for r in rows}
        self._explain_missing(wanted, set(done), token)
        return done

    def redrive_dead(
        self,
        *,
        queue: str | None = None,
        older_than: float | None = None,
        limit: int | None = None,
        batch: int = 10_000,
    ) -> list[int]:
        """Dead letters back to ready (read_ct reset to 0); return their ids, oldest death first.

        `queue`: only that queue. `older_than`: only those that died at least that many
        seconds ago. `limit`: at most that many. Works in batches of `batch`, each its own
        short transaction (SKIP LOCKED), so a large redrive never holds many locks at once.
        The caller decides whether acting on every dead letter is intended.
        """
        if queue is not None:
            check_queue(queue)
        if older_than is not None:
            check_age(older_than)
        if limit is not None and limit < 1:
            raise InvalidInput(f"limit must be a positive number, not {limit}")
        done: list[int] = []
        while limit is None or len(done) < limit:
            size = batch if limit is None else min(batch, limit - len(done))
            params = {"queue": queue, "older_than": older_than, "limit": size}
            with translated():
                rows = self.conn.execute(self._q(queries.REDRIVE_DEAD), params).fetchall()
            done.extend(sorted(int(r[0]) for r in rows))
            if len(rows) < size:
                break
        return done

    def requeue_expired(self, *, queue: str | None = None, batch: int = 10_000) -> int:
        """Return every expired lease and due delayed message to ready now; return the count.

        Works in batches of `batch` rows, each its own short transaction, so it never holds
        many row locks at once (for cron; claims do the same lazily).
        """
        if queue is not None:
            check_queue(queue)
        total = 0
        while True:
            with translated():
                cur = self.conn.execute(
                    self._q(queries.RETURN_DUE_ANY_QUEUE), {"queue": queue, "batch": batch}
                )
            total += cur.rowcount
            if cur.rowcount < batch:
                return total

    def extend(
        self, msg_id: int, *, vt: float, lease: str | uuid.UUID | None = None
    ) -> Message:
        """Set a leased message's lease to run out `vt` seconds from now."""
        (checked,) = check_ids([msg_id])
        token = check_lease(lease)
        seconds = check_seconds(vt, "vt", allow_zero=False)
        params = {"msg_id": checked, "lease": token, "vt": seconds}
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._q(queries.EXTEND), params)
            found = self._messages(cur)
        if not found:
            self._explain_missing([checked], set(), token)
            raise NotFound(f"message {checked} is not leased", hint="claim it first")
        return found[0]

    # -- stats -------------------------------------------------------------------------

    def stats(self, *, queue: str | None = None) -> QueueStats:
        """Counts per queue and priority by state, oldest ready age, max read_ct. Read-only."""
        if queue is not None:
            check_queue(queue)
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._q(queries.STATS), {"queue": queue})
            rows = cur.fetchall()
        return QueueStats(
            tuple(
                PriorityStats(
                    queue=r["queue"],
                    priority=int(r["priority"]),
                    ready=int(r["ready"]),
                    leased=int(r["leased"]),
                    expired=int(r["expired"]),
                    delayed=int(r["delayed"]),
                    dead=int(r["dead"]),
                    oldest_ready_age_s=(
                        None if r["oldest_ready_age_s"] is None else float(r["oldest_ready_age_s"])
                    ),
                    max_read_ct=int(r["max_read_ct"]),
                    paused=bool(r["paused"]),
                )
                for r in rows
            )
        )
