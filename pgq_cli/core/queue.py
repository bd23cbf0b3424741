"""The queue: send, claim (waiting or not), peek, ack, requeue, extend, redrive, purge,
stats, and the per-queue settings (max deliveries, pause, resume, the list of queues).

This is the library API. It takes a psycopg connection (autocommit), returns frozen
dataclasses and raises the `errors.PgqError` family. It never prints and never imports
Typer or rich. Each input is checked before any SQL by the one check in `checks` (or
`purge`) that the CLI also runs before it connects.

Every public method runs in its own short transaction (autocommit, one statement, or one
explicit transaction where noted) and holds no lock after it returns: a claim commits its
lease at once, and the consumer works with nothing held open.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from itertools import groupby
from typing import TYPE_CHECKING, Any, LiteralString

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from . import fair_queries, pooler, queries, waiting
from . import purge as purge_checks
from .checks import (
    DEFAULT_DEDUP_WINDOW_S,
    DEFAULT_PRIORITY,
    DEFAULT_QUEUE,
    DEFAULT_SCHEMA,
    DEFAULT_TOP_KEYS,
    DEFAULT_VT_S,
    MAX_PRIORITY,
    MIN_PRIORITY,
    Envelope,
    check_age,
    check_below_priority,
    check_dedup_key,
    check_dedup_window,
    check_ids,
    check_key,
    check_lease,
    check_limit,
    check_max_deliveries,
    check_max_inflight,
    check_payload,
    check_peek_state,
    check_priority,
    check_priority_range,
    check_qty,
    check_queue,
    check_schema,
    check_seconds,
    check_top_keys,
    check_wait,
    check_weight,
)
from .errors import InvalidInput, NotFound, NothingDone, PgqError, StaleLease
from .purge import PurgeResult
from .states import State
from .translate import translated

# The settings and fairness records load with the methods that return them: a one-shot
# `pgq claim` or `pgq send` needs neither (about 4 ms of its start-up; bench/README.md).
if TYPE_CHECKING:
    from .fairness import FairnessSettings, KeyBreakdown, KeyDepth, KeyWeight
    from .settings import ConfigResult, DedupWindow, QueueInfo, QueueSettings

# Shell completion offers at most this many queue names.
COMPLETION_LIMIT = 500
# At most this many expired/due rows go back to ready per claim (or qty, if larger), so a
# mass expiry costs each claim a bounded amount; see queries.RETURN_DUE.
RETURN_DUE_BATCH = 1000
# A racing sender's record can be invisible to a statement that began before it committed
# (queries.INSERT_DEDUPLICATED); the next run sees it. More than a few runs is a bug.
DEDUP_ATTEMPTS = 5
# send_many hands COPY this many rows at a time (one string each): few calls, bounded memory.
COPY_CHUNK_ROWS = 5000
# A Queue remembers which queues are fair. An empty claim re-reads the flag if the last
# read is older than this, so a queue turned fair (or back) is claimed the right way
# within this long, and an idle consumer's empty polls do not each pay the extra read.
FAIRNESS_RECHECK_S = 1.0


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
    # The fairness key it was sent with (a tenant, org or customer id); None: none.
    key: str | None = None

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
            "key": self.key,  # last: fields only ever get added at the end
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
class IdResult:
    """What `ack_each`/`requeue_each` did with one id.

    `result`: "acked" or "requeued" when done; otherwise "unknown" (no such message),
    "stale_lease" (a lease token was given and it is not the message's current lease) or
    "not_leased" (no token was given and the message cannot take it: a dead letter given
    back, or a message that is not leased extended). `reason` says what happened to a
    message that was not done; `state` is where a requeued message went (ready, delayed,
    dead), or where a message not done stands now.
    """

    msg_id: int
    result: str
    reason: str = ""
    state: str | None = None

    @property
    def done(self) -> bool:
        return self.result in ("acked", "requeued")

    def to_json(self) -> dict[str, Any]:
        """Stable field names for `--json`: one object per id."""
        return {"msg_id": self.msg_id, "result": self.result}


@dataclass(frozen=True)
class PriorityStats:
    queue: str
    priority: int
    ready: int
    leased: int
    expired: int
    delayed: int
    dead: int
    oldest_ready_age: float | None
    max_read_ct: int
    # Claim skips this queue/priority (`Queue.pause`); most are not paused.
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
            "oldest_ready_age": self.oldest_ready_age,
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

    def with_drained(
        self, groups: Iterable[tuple[str, int]], settings: Iterable[QueueSettings] = ()
    ) -> QueueStats:
        """These stats plus a row of zeros for each (queue, priority) in `groups` that has
        none (a queue that drained reports 0 instead of vanishing), paused as `settings`
        say; rows stay in stats order (queue, then priority 10 first)."""
        present = {(r.queue, r.priority) for r in self.rows}
        paused = {s.queue: s for s in settings}
        added = [
            PriorityStats(
                queue, priority, 0, 0, 0, 0, 0, None, 0,
                paused=queue in paused and paused[queue].is_paused(priority),
            )
            for queue, priority in sorted(set(groups) - present)
        ]
        if not added:
            return self
        rows = sorted([*self.rows, *added], key=lambda r: (r.queue, -r.priority))
        return QueueStats(tuple(rows))


def _not_done(msg_id: int, now: tuple[str, int] | None, lease: uuid.UUID | None) -> IdResult:
    """Why `msg_id` was not done, from where it stands now (`now`: state, read_ct)."""
    if now is None:
        return IdResult(msg_id, "unknown", f"no such message: {msg_id} (acked already, or purged)")
    state, read_ct = now
    if lease is None:
        if state == "dead":
            return IdResult(msg_id, "not_leased", f"message {msg_id} is a dead letter", state)
        return IdResult(msg_id, "not_leased", f"message {msg_id} is {state}, not leased", state)
    # The token is not current. A claim gives a fresh token, and only a requeue (by the
    # holder, or a claim returning an expired lease) clears it: the state says which.
    if state == "leased" and read_ct <= 1:
        # Delivered once: no earlier lease of it ever existed, so the token is not one.
        what = f"is leased under another token (delivery {read_ct}): the token is not its lease"
    elif state == "leased":
        what = f"was claimed again by another consumer (delivery {read_ct})"
    elif state == "delayed":
        what = "was requeued by its holder with a delay"
    elif state == "dead":
        what = "went to dead letters (its last delivery was given back or ran out)"
    else:
        what = "is ready again: it was requeued, or its lease expired and it was returned"
    return IdResult(
        msg_id, "stale_lease", f"lease is not current: message {msg_id} {what}", state
    )


def _done_or_raise(results: Sequence[IdResult]) -> list[int]:
    """The done ids, sorted; if any id was not done, raise for the first such one, with
    every done id on the error (the library's all-or-error shape of `ack_each`)."""
    done = sorted(r.msg_id for r in results if r.done)
    failed = [r for r in results if not r.done]
    if not failed:
        return done
    unknown = [r for r in failed if r.result == "unknown"]
    error: NothingDone
    if unknown:
        error = NotFound(
            f"no such message: {', '.join(str(r.msg_id) for r in unknown[:10])} "
            "(acked already, or purged)"
        )
    elif failed[0].result == "stale_lease":
        error = StaleLease(failed[0].reason)
    elif failed[0].state == "dead":
        error = NotFound(
            failed[0].reason,
            hint="dead letters are redriven with redrive_dead()",
            params=("redrive_dead()",),
        )
    else:
        error = NotFound(failed[0].reason, hint="claim it first")
    error.done = tuple(done)
    raise error


def _copy_text(payload: str) -> str:
    """A payload as a field of COPY's text format."""
    if "\\" in payload:
        payload = payload.replace("\\", "\\\\")
    if "\n" in payload or "\r" in payload or "\t" in payload:
        payload = payload.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return payload


def _sort_claim_order(messages: Iterable[Message]) -> list[Message]:
    return sorted(messages, key=lambda m: (-m.priority, m.msg_id))


# ----------------------------------------------------------------------------- the queue


class Queue:
    """The queue API over one connection. `schema` is where `pgq migrate` installed it.

    `pool_mode` says whether `conn` goes through a transaction pooler such as PgBouncer
    (`pooler.POOL_MODES`); the default, "auto", asks the server once (`pooler`). Behind
    one, the connection stops preparing statements and waiting claims poll instead of
    LISTENing: `transaction_pooled` is the switch every waiting loop honours.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        schema: str = DEFAULT_SCHEMA,
        *,
        pool_mode: str = pooler.AUTO,
    ) -> None:
        self.conn = conn
        self.schema = check_schema(schema)
        self.transaction_pooled = pooler.transaction_pooled(conn, pool_mode)
        if self.transaction_pooled:
            pooler.prepare_for_pooler(conn)
        self._table = sql.Identifier(schema, "messages")
        self._queues = sql.Identifier(schema, "queues")
        self._dedup_keys = sql.Identifier(schema, "dedup_keys")
        # The hot path's statements as the bytes sent, composed once per Queue: composing
        # and encoding a statement on every call cost about 5% of a claim+ack round.
        self._rendered: dict[str, bytes] = {}
        self._fair_keys = sql.Identifier(schema, "fair_keys")
        self._fair_claim = sql.Identifier(schema, "fair_claim")
        self._fair_clock = sql.Identifier(schema, "fair_clock")
        # queue -> (whether it is fair, monotonic time that was read); see claim().
        self._fairness: dict[str, tuple[bool, float]] = {}

    @property
    def notify_channel(self) -> str:
        """The LISTEN/NOTIFY channel on which new ready work is announced (sql/0002)."""
        return f"pgq_ready:{self.schema}"

    def compose(self, template: LiteralString) -> sql.Composed:
        """A statement of this queue's schema: `{messages}`, `{queues}` and `{dedup_keys}`
        in `template` become its tables (quoted identifiers), `{fair_keys}`, `{fair_claim}`
        and `{fair_clock}` its fairness table and functions. For SQL kept outside the core
        (ops) too."""
        return sql.SQL(template).format(
            messages=self._table,
            queues=self._queues,
            dedup_keys=self._dedup_keys,
            fair_keys=self._fair_keys,
            fair_claim=self._fair_claim,
            fair_clock=self._fair_clock,
        )

    def _rendered_sql(self, template: LiteralString) -> bytes:
        """`compose(template)` as the bytes sent, composed on first use only (psycopg also
        caches its parsing of a bytes query, which it cannot do for a Composed one)."""
        found = self._rendered.get(template)
        if found is None:
            found = self._rendered[template] = self.compose(template).as_bytes(self.conn)
        return found

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
        key: str | None = None,
        dedup_key: str | None = None,
    ) -> int:
        """Insert one message (JSON text); return its msg_id. One autocommit INSERT.

        `key`: its fairness key (a tenant, org or customer id); a fair queue rotates its
        claims across keys (docs/fairness.md). None: no key.
        With `dedup_key`: a send whose key already sent a message to this queue within the
        queue's dedup window sends nothing and returns that first message's id (see
        `send_deduplicated`).
        """
        if dedup_key is not None:
            sent = self.send_deduplicated(
                payload,
                dedup_key=dedup_key,
                queue=queue,
                priority=priority,
                delay=delay,
                key=key,
            )
            return sent.msg_id
        params = {
            "queue": check_queue(queue),
            "priority": check_priority(priority),
            "delay": check_seconds(delay, "delay"),
            "payload": check_payload(payload),
            "key": None if key is None else check_key(key),
        }
        with translated():
            row = self.conn.execute(self.compose(queries.INSERT_ONE), params).fetchone()
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
        key: str | None = None,
    ) -> Sent:
        """Send once per `dedup_key` and queue within the queue's dedup window.

        One autocommit statement writes the key's record and the message together
        (queries.INSERT_DEDUPLICATED), so a retry after a lost connection either finds the
        record (the first send committed: its id comes back, created False) or sends anew.
        Racing senders of one key produce one message. The key outlives the message: a
        repeat after the first message was acked still sends nothing.
        """
        params = {
            "queue": check_queue(queue),
            "priority": check_priority(priority),
            "delay": check_seconds(delay, "delay"),
            "payload": check_payload(payload),
            "dedup_key": check_dedup_key(dedup_key),
            "key": None if key is None else check_key(key),
            "default_window": DEFAULT_DEDUP_WINDOW_S,
            "table": f"{self.schema}.messages",
        }
        statement = self.compose(queries.INSERT_DEDUPLICATED)
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
        key: str | None = None,
    ) -> list[int]:
        """Insert many messages in one transaction with COPY; return their ids in order.

        Every payload is validated before anything is written (a `CheckedPayload` is not
        parsed again), so one bad payload means nothing is inserted (BadPayload names its
        1-based position). Two statements: reserve the ids (and fix vt), then one COPY.
        """
        check_queue(queue)
        check_priority(priority)
        check_seconds(delay, "delay")
        if key is not None:
            check_key(key)
        checked = [
            check_payload(payload, where=f"line {index}")
            for index, payload in enumerate(payloads, start=1)
        ]
        return self._copy_in(checked, queue, priority, delay, key)

    def _copy_in(
        self,
        checked: Sequence[str],
        queue: str,
        priority: int,
        delay: float,
        key: str | None,
    ) -> list[int]:
        """COPY checked payloads that share queue, priority, delay and key; ids in order."""
        if not checked:
            return []
        state = (State.DELAYED if delay > 0 else State.READY).value
        params = {"table": f"{self.schema}.messages", "count": len(checked), "delay": delay}
        key_text = r"\N" if key is None else _copy_text(key)
        with translated(), self.conn.transaction(), self.conn.cursor() as cur:
            row = cur.execute(self._rendered_sql(queries.RESERVE_IDS), params).fetchone()
            assert row is not None
            vt, first_id, last_id, scattered_ids = row
            ids = list(range(first_id, last_id + 1)) if scattered_ids is None else scattered_ids
            # Every column but the payload is the same on each row (queue names need no
            # escaping: check_queue allows none of COPY's special characters).
            same = f"\t{queue}\t{priority}\t{state}\t{vt}\t"
            with cur.copy(self._rendered_sql(queries.COPY_IN)) as copy:
                for start in range(0, len(checked), COPY_CHUNK_ROWS):
                    end = start + COPY_CHUNK_ROWS
                    copy.write("".join(
                        f"{msg_id}{same}{_copy_text(text)}\t{key_text}\n"
                        for msg_id, text in zip(ids[start:end], checked[start:end], strict=True)
                    ))
        return ids

    def send_envelopes(
        self, envelopes: Sequence[Envelope], *, queue: str = DEFAULT_QUEUE
    ) -> list[int]:
        """`send_many` where each message has its own key, priority, delay and dedup key.

        Everything is validated before anything is written (errors name the 1-based
        position); one transaction; ids come back in input order. Envelopes without a
        dedup key go in with COPY; one with a dedup key is sent as `send_deduplicated`
        does (a key already sent within the queue's dedup window sends nothing and gives
        the first message's id), in file order between the COPY runs around it.
        """
        check_queue(queue)
        checked = []
        for index, envelope in enumerate(envelopes, start=1):
            where = f"line {index}"
            checked.append(check_payload(envelope.payload, where=where))
            try:
                if envelope.key is not None:
                    check_key(envelope.key)
                if envelope.dedup_key is not None:
                    check_dedup_key(envelope.dedup_key)
                check_priority(envelope.priority)
                check_seconds(envelope.delay, "delay")
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{where}: {exc.message}", hint=exc.hint, params=exc.params
                ) from None
        if all(e.dedup_key is None for e in envelopes):
            return self._copy_envelopes(envelopes, checked, queue)
        ids: list[int] = []
        with translated(), self.conn.transaction():
            runs = groupby(zip(envelopes, checked, strict=True),
                           key=lambda pair: pair[0].dedup_key is not None)
            for deduplicated, run in runs:
                pairs = list(run)
                if not deduplicated:
                    ids += self._copy_envelopes([e for e, _ in pairs], [c for _, c in pairs],
                                                queue)
                    continue
                for e, payload in pairs:
                    assert e.dedup_key is not None
                    ids.append(self.send_deduplicated(
                        payload, dedup_key=e.dedup_key, queue=queue, priority=e.priority,
                        delay=e.delay, key=e.key,
                    ).msg_id)
        return ids

    def _copy_envelopes(
        self, envelopes: Sequence[Envelope], checked: Sequence[str], queue: str
    ) -> list[int]:
        """COPY checked envelopes (no dedup keys) in one transaction; ids in order."""
        if not envelopes:
            return []
        first = envelopes[0]
        if all((e.key, e.priority, e.delay) == (first.key, first.priority, first.delay)
               for e in envelopes):
            return self._copy_in(checked, queue, first.priority, first.delay, first.key)
        params = {"table": f"{self.schema}.messages", "count": len(envelopes), "delay": 0}
        with translated(), self.conn.transaction(), self.conn.cursor() as cur:
            now = cur.execute("SELECT now()").fetchone()
            assert now is not None
            row = cur.execute(self._rendered_sql(queries.RESERVE_IDS), params).fetchone()
            assert row is not None
            _, first_id, last_id, scattered_ids = row
            ids = list(range(first_id, last_id + 1)) if scattered_ids is None else scattered_ids
            with cur.copy(self.compose(queries.COPY_IN)) as copy:
                for msg_id, e, payload in zip(ids, envelopes, checked, strict=True):
                    state = (State.DELAYED if e.delay > 0 else State.READY).value
                    vt = now[0] + timedelta(seconds=e.delay)
                    copy.write_row((msg_id, queue, e.priority, state, vt, payload, e.key))
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
        wait: float | None = None,
        poll: float = waiting.DEFAULT_POLL_S,
    ) -> list[Message]:
        """Lease up to qty ready messages, highest priority first, FIFO within a priority.

        Exactly-n rows are locked with SKIP LOCKED and leased with a fresh token each, in
        autocommit statements; nothing stays locked after it returns. Expired leases and due
        delayed messages of the queue go back to ready first (bounded batch), so they
        compete for this very claim by priority:
        - nothing due (the common case): one statement, queries.CLAIM_UNLESS_DUE, whose
          probe of the due index finds nothing;
        - something due, or nothing claimed: one more round trip (pipeline) with two
          statements, queries.RETURN_DUE then queries.CLAIM.

        With `wait` seconds, an empty claim waits for work and claims again (LISTEN/NOTIFY,
        polling at least every `poll` seconds for work that comes due; see `waiting`). It
        returns as soon as a claim yields messages, or [] when `wait` runs out, and holds
        no transaction and no lock while waiting.
        """
        params = {
            "queue": check_queue(queue),
            "qty": check_qty(qty),
            "vt": check_seconds(vt, "vt", allow_zero=False),
            "min_priority": min_priority,
            "max_priority": max_priority,
            "batch": max(qty, RETURN_DUE_BATCH),
        }
        check_priority_range(min_priority, max_priority)
        if wait is None:
            return self._claim_once(params)
        check_wait(wait)
        if not poll > 0:
            raise InvalidInput("poll must be > 0 seconds", params=("poll",))
        return waiting.claim_until(
            self.conn,
            channel=None if self.transaction_pooled else self.notify_channel,
            queue=queue,
            wait=wait,
            poll=poll,
            attempt=lambda: self._claim_once(params),
            next_due_s=lambda: self.next_due_s(queue),
        )

    def _claim_once(self, params: dict[str, Any]) -> list[Message]:
        """One claim: the ordinary or the fair one, as this Queue believes the queue is."""
        queue = params["queue"]
        fair = self._fairness.get(queue, (False, 0.0))[0]
        found = self._claim_as(params, fair=fair)
        if not found and self._fairness_changed(queue, fair):
            found = self._claim_as(params, fair=not fair)
        return found

    def _claim_as(self, params: dict[str, Any], *, fair: bool) -> list[Message]:
        # Each claim statement yields nothing for the other kind of queue (CLAIM skips fair
        # queues, fair_claim skips the others), so a stale guess costs an empty result,
        # never a wrong claim.
        if fair:
            with translated(), self.conn.cursor(row_factory=dict_row) as dict_cur:
                with pooler.together(self.conn):
                    self.conn.execute(self._rendered_sql(queries.RETURN_DUE), params)
                    dict_cur.execute(self.compose(fair_queries.FAIR_CLAIM), params)
                return _sort_claim_order(self._messages(dict_cur))
        with translated(), self.conn.cursor() as cur:
            rows = cur.execute(self._rendered_sql(queries.CLAIM_UNLESS_DUE), params).fetchall()
            if not rows:
                with pooler.together(self.conn):
                    self.conn.execute(self._rendered_sql(queries.RETURN_DUE), params)
                    cur.execute(self._rendered_sql(queries.CLAIM), params)
                rows = cur.fetchall()
        # Tuple rows in LEASE_LOCKED's RETURNING order, which is Message's field order.
        return _sort_claim_order(Message(*row) for row in rows)

    def believed_fair(self, queue: str) -> bool:
        """Whether this Queue last found `queue` fair; no statement (see recheck_fair)."""
        return self._fairness.get(queue, (False, 0.0))[0]

    def recheck_fair(self, queue: str) -> bool:
        """After an empty claim made elsewhere (the consumer loop's own statement): read
        whether `queue` is fair, at most once per FAIRNESS_RECHECK_S, and remember it."""
        self._fairness_changed(queue, False)
        return self._fairness[queue][0]

    def _fairness_changed(self, queue: str, assumed: bool) -> bool:
        """After an empty claim: read whether the queue is fair (at most once per
        FAIRNESS_RECHECK_S), remember it, and say whether it differs from `assumed`."""
        now = time.monotonic()
        cached = self._fairness.get(queue)
        if cached is not None and now - cached[1] < FAIRNESS_RECHECK_S:
            return cached[0] != assumed
        with translated():
            row = self.conn.execute(
                self.compose(fair_queries.IS_FAIR), {"queue": queue}
            ).fetchone()
        fair = bool(row and row[0])
        self._fairness[queue] = (fair, now)
        return fair != assumed

    def next_due_s(self, queue: str) -> float | None:
        """Seconds until the queue's next leased/delayed message comes due (None: none)."""
        with translated():
            row = self.conn.execute(self.compose(queries.NEXT_DUE), {"queue": queue}).fetchone()
        return None if row is None or row[0] is None else float(row[0])

    # -- peek --------------------------------------------------------------------------

    def peek(
        self,
        *,
        queue: str = DEFAULT_QUEUE,
        limit: int = 10,
        state: str = State.READY.value,
        key: str | None = None,
    ) -> list[Message]:
        """Show messages in claim order without touching any lease. Read-only.

        `state`: one effective state (`EffectiveState`), or "all". `key`: only messages
        sent with that fairness key."""
        check_queue(queue)
        check_peek_state(state)
        check_qty(limit, "limit")
        if key is not None:
            check_key(key)
        params = {"queue": queue, "limit": limit, "state": state, "key": key}
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.compose(queries.PEEK), params)
            return self._messages(cur)

    # -- ack / requeue / extend --------------------------------------------------------

    def _explain_missing(
        self, wanted: list[int], done: dict[int, str], lease: uuid.UUID | None, done_as: str
    ) -> list[IdResult]:
        """One IdResult per wanted id, in the order given (repeats once): done ones as
        `done_as`, the others with what happened to them, read after the fact."""
        order = list(dict.fromkeys(wanted))
        missing = [i for i in order if i not in done]
        now: dict[int, tuple[str, int]] = {}
        if missing:
            with translated():
                rows = self.conn.execute(
                    self.compose(queries.WHERE_NOW), {"ids": missing}
                ).fetchall()
            now = {int(r[0]): (str(r[1]), int(r[2])) for r in rows}
        return [
            IdResult(i, done_as, state=done[i]) if i in done
            else _not_done(i, now.get(i), lease)
            for i in order
        ]

    def ack_each(
        self, ids: Iterable[int], *, lease: str | uuid.UUID | None = None
    ) -> list[IdResult]:
        """Delete (acknowledge) messages, each id on its own; one IdResult per id.

        One autocommit DELETE (with a lease token, only where it is current); then one
        read of the ids that were not done, to say why.
        """
        wanted = check_ids(ids)
        token = check_lease(lease)
        with translated():
            rows = self.conn.execute(
                self._rendered_sql(queries.ACK), {"ids": wanted, "lease": token}
            ).fetchall()
        return self._explain_missing(wanted, {int(r[0]): "" for r in rows}, token, "acked")

    def ack(self, ids: Iterable[int], *, lease: str | uuid.UUID | None = None) -> list[int]:
        """Delete (acknowledge) messages. With a lease token, only where it is current.

        One autocommit DELETE; ids that were done are returned. Raises NotFound for unknown
        ids and StaleLease for a stale token, after acking all the others.
        """
        return _done_or_raise(self.ack_each(ids, lease=lease))

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
        results = self.requeue_each(ids, lease=lease, delay=delay)
        _done_or_raise(results)
        return {r.msg_id: str(r.state) for r in results}

    def requeue_each(
        self,
        ids: Iterable[int],
        *,
        lease: str | uuid.UUID | None = None,
        delay: float = 0.0,
    ) -> list[IdResult]:
        """`requeue`, each id on its own; one IdResult per id (`state`: where it went)."""
        wanted = check_ids(ids)
        token = check_lease(lease)
        params = {"ids": wanted, "lease": token, "delay": check_seconds(delay, "delay")}
        with translated():
            rows = self.conn.execute(self.compose(queries.REQUEUE), params).fetchall()
        done = {int(r[0]): str(r[1]) for r in rows}
        return self._explain_missing(wanted, done, token, "requeued")

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
        if limit is not None:
            check_limit(limit)
        done: list[int] = []
        while limit is None or len(done) < limit:
            size = batch if limit is None else min(batch, limit - len(done))
            params = {"queue": queue, "older_than": older_than, "limit": size}
            with translated():
                rows = self.conn.execute(self.compose(queries.REDRIVE_DEAD), params).fetchall()
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
                    self.compose(queries.RETURN_DUE_ANY_QUEUE), {"queue": queue, "batch": batch}
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
            cur.execute(self.compose(queries.EXTEND), params)
            found = self._messages(cur)
        if not found:
            _done_or_raise(self._explain_missing([checked], {}, token, "extended"))
        return found[0]

    # -- purge -------------------------------------------------------------------------
    # Why batches, and the safety rule of needing a filter: see the `purge` module.

    def purge(
        self,
        queue: str,
        *,
        states: Sequence[str] = (),
        older_than: float | None = None,
        everything: bool = False,
        batch: int = purge_checks.DEFAULT_BATCH,
        max_runtime: float | None = None,
        dry_run: bool = False,
        clock: Callable[[], float] = time.monotonic,
    ) -> PurgeResult:
        """Delete the queue's messages that the filters select, `batch` rows per transaction.

        At least one batch runs; after each, the purge stops if `max_runtime` seconds have
        passed since it began. Rows that a claimer has locked at that instant are skipped.
        With `dry_run`, counts what would be deleted (one read-only statement) and deletes
        nothing.
        """
        wanted = purge_checks.check_request(
            queue, states, older_than, everything, batch, max_runtime
        )
        params: dict[str, Any] = {
            "queue": queue,
            "states": list(wanted) if wanted is not None else None,
            "older_than": older_than,
            "batch": batch,
            "after": 0,
            "default_window": DEFAULT_DEDUP_WINDOW_S,
        }
        started = clock()
        if dry_run:
            with translated():
                row = self.conn.execute(self.compose(queries.PURGE_COUNT), params).fetchone()
                keys = self.conn.execute(
                    self.compose(queries.COUNT_EXPIRED_DEDUP_KEYS), params
                ).fetchone()
            count = int(row[0]) if row else 0
            full, rest = divmod(count, batch)
            planned = (batch,) * full + ((rest,) if rest else ())
            return PurgeResult(
                queue, wanted, older_than, True, count, planned, False, clock() - started,
                int(keys[0]) if keys else 0,
            )
        done: list[int] = []
        stopped_early = False
        while True:
            with translated():
                rows = self.conn.execute(self.compose(queries.PURGE_BATCH), params).fetchall()
            if not rows:
                break
            done.append(len(rows))
            params["after"] = max(int(r[0]) for r in rows)
            if len(rows) < batch:
                break  # SKIP LOCKED applies before LIMIT: a short batch means nothing is left
            if max_runtime is not None and clock() - started >= max_runtime:
                stopped_early = True
                break
        with translated():
            forgotten = self.conn.execute(
                self.compose(queries.PURGE_EXPIRED_DEDUP_KEYS), params
            ).rowcount
        return PurgeResult(
            queue,
            wanted,
            older_than,
            False,
            sum(done),
            tuple(done),
            stopped_early,
            clock() - started,
            forgotten,
        )

    # -- work --------------------------------------------------------------------------

    def work(
        self,
        handler: Callable[[Message], object],
        *,
        queue: str,
        qty: int = 1,
        vt: float = DEFAULT_VT_S,
        concurrency: int = 1,
        wait: float | None = None,
        until_empty: bool = False,
        max_messages: int | None = None,
        max_runtime: float | None = None,
        stop: threading.Event | None = None,
        connect: Callable[[], psycopg.Connection[Any]] | None = None,
        backoff: Callable[[int], float] | None = None,
        reconnect_timeout: float | None = None,
    ) -> int:
        """Consume `queue`: call `handler(message)` for each message; return how many were acked.

        Claims up to `qty` messages at a time (leased for `vt` seconds) and runs the
        handler on them, on `concurrency` threads. When a batch is done, its acks travel
        in the statement that claims the next batch: one round trip and one commit per
        batch, each ack fenced by the message's lease token.

        The handler's outcome decides what becomes of the message: returning acks it;
        `worker.Retry(delay=…)` puts it back after `delay` seconds; `worker.Reject()`
        dead-letters it at once; any other exception puts it back after
        `backoff(read_ct)` seconds (default min(2^(read_ct-1), 300)). The queue's
        max_deliveries applies: a message given back after its last delivery goes dead.

        Every message held (running, waiting in the batch, or waiting for its ack) has
        its lease extended every vt/3 seconds by a heartbeat thread.

        Stops claiming when `stop` is set, after `max_messages` messages, after
        `max_runtime` seconds, or with `until_empty` once nothing is claimable (for
        `wait` seconds, when given). Work in progress then finishes and is acked;
        messages of the batch not yet started are given back at once, their read_ct as
        before. Between empty claims it sleeps on LISTEN/NOTIFY for up to `wait`
        seconds (1 s when not given).

        With `connect` (returns a new connection), a lost connection is replaced, with
        back-off, for up to `reconnect_timeout` seconds (None: until stopped); acks whose
        outcome was lost are resent, fenced. Without it, a lost connection raises
        ConnectFailed. Installs no signal handlers: set `stop` from yours.
        """
        from .worker import Worker  # the worker builds on this module

        return Worker(
            self,
            handler,
            queue=queue,
            qty=qty,
            vt=vt,
            concurrency=concurrency,
            wait=wait,
            until_empty=until_empty,
            max_messages=max_messages,
            max_runtime=max_runtime,
            stop=stop,
            connect=connect,
            backoff=backoff,
            reconnect_timeout=reconnect_timeout,
        ).run()

    # -- stats -------------------------------------------------------------------------

    def stats(self, *, queue: str | None = None) -> QueueStats:
        """Counts per queue and priority by state, oldest ready age, max read_ct. Read-only.

        A configured queue (`configure`, `pause`) with no message at all reports one row of
        zeros at the default priority: a drained queue does not vanish.
        """
        if queue is not None:
            check_queue(queue)
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.compose(queries.STATS), {"queue": queue})
            rows = cur.fetchall()
        return self.with_configured(self._stats_of(rows), queue=queue)

    def configured(self, *, queue: str | None = None) -> list[QueueSettings]:
        """The settings of every configured queue (a row in `<schema>.queues`), or of
        `queue` only. Read-only."""
        from .settings import settings_from_row

        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self.compose(queries.CONFIGURED_QUEUES), {"queue": queue})
            return [settings_from_row(r) for r in cur.fetchall()]

    def with_configured(self, stats: QueueStats, *, queue: str | None = None) -> QueueStats:
        """`stats` plus a row of zeros at the default priority for each configured queue
        (or `queue`) that has no row in it."""
        configured = self.configured(queue=queue)
        present = {r.queue for r in stats.rows}
        missing = [(s.queue, DEFAULT_PRIORITY) for s in configured if s.queue not in present]
        return stats.with_drained(missing, configured)

    @staticmethod
    def _stats_of(rows: Sequence[dict[str, Any]]) -> QueueStats:
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
                    oldest_ready_age=(
                        None if r["oldest_ready_age"] is None else float(r["oldest_ready_age"])
                    ),
                    max_read_ct=int(r["max_read_ct"]),
                    paused=bool(r["paused"]),
                )
                for r in rows
            )
        )

    # -- settings ----------------------------------------------------------------------
    # Per-queue settings live in `<schema>.queues` (sql/0002), and the claim statement
    # reads them itself (queries.CLAIM, queries.RETURN_DUE), so they hold for every
    # consumer at once, with no restart and no daemon. A queue without a row has the
    # defaults: no limit, not paused.

    def settings(self, queue: str) -> QueueSettings:
        """The queue's settings (defaults when it has none). Read-only."""
        from .settings import QueueSettings, settings_from_row

        check_queue(queue)
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(self.compose(queries.GET_QUEUE), {"queue": queue}).fetchone()
        return QueueSettings.defaults(queue) if row is None else settings_from_row(row)

    def configure(self, queue: str, *, max_deliveries: int | None) -> ConfigResult:
        """Set (or with None remove) the queue's max deliveries.

        One transaction: upsert the setting, then move waiting (ready/delayed) messages that
        have already been delivered that many times to 'dead', so the limit holds for them
        too. Leased ones go dead when they come back.
        """
        from .settings import ConfigResult, settings_from_row

        check_queue(queue)
        check_max_deliveries(max_deliveries)
        params = {"queue": queue, "max_deliveries": max_deliveries}
        with (
            translated(),
            self.conn.transaction(),
            self.conn.cursor(row_factory=dict_row) as cur,
        ):
            row = cur.execute(self.compose(queries.CONFIGURE_QUEUE), params).fetchone()
            assert row is not None
            moved = 0
            if max_deliveries is not None:
                moved = cur.execute(self.compose(queries.SWEEP_OVER_LIMIT), params).rowcount
        return ConfigResult(settings_from_row(row), moved)

    def dedup_window(self, queue: str) -> DedupWindow:
        """How long the queue remembers dedup keys (the default when it has set none)."""
        from .settings import DedupWindow

        check_queue(queue)
        with translated():
            row = self.conn.execute(
                self.compose(queries.GET_DEDUP_WINDOW), {"queue": queue}
            ).fetchone()
        if row is None or row[0] is None:
            return DedupWindow(queue, DEFAULT_DEDUP_WINDOW_S, True)
        return DedupWindow(queue, float(row[0]), False)

    def set_dedup_window(self, queue: str, seconds: float) -> DedupWindow:
        """Set how long the queue remembers dedup keys. A shorter window applies at once to
        keys already stored (they expire by their age); purge deletes the expired ones."""
        from .settings import DedupWindow

        check_queue(queue)
        params = {"queue": queue, "seconds": check_dedup_window(seconds)}
        with translated():
            row = self.conn.execute(
                self.compose(queries.CONFIGURE_DEDUP_WINDOW), params
            ).fetchone()
        assert row is not None
        return DedupWindow(queue, float(row[0]), False)

    def pause(self, queue: str, *, below_priority: int | None = None) -> QueueSettings:
        """Pause the queue (claim yields nothing), or only priorities below `below_priority`.

        Replaces any earlier pause of the queue. Messages already leased are not affected.
        """
        from .settings import settings_from_row

        check_queue(queue)
        check_below_priority(below_priority)
        params = {"queue": queue, "paused": below_priority is None, "below": below_priority}
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(self.compose(queries.PAUSE_QUEUE), params).fetchone()
        assert row is not None
        return settings_from_row(row)

    def resume(self, queue: str) -> QueueSettings:
        """Lift any pause of the queue and wake its waiting claimers (`claim(wait=...)`).

        Resuming a queue that is not paused is not an error: the result is the same.
        """
        from .settings import QueueSettings, settings_from_row

        check_queue(queue)
        params = {"queue": queue, "channel": self.notify_channel}
        with (
            translated(),
            self.conn.transaction(),
            self.conn.cursor(row_factory=dict_row) as cur,
        ):
            row = cur.execute(self.compose(queries.RESUME_QUEUE), params).fetchone()
            cur.execute(self.compose(queries.NOTIFY_READY), params)
        return QueueSettings.defaults(queue) if row is None else settings_from_row(row)

    def queues(self) -> list[QueueInfo]:
        """Every queue with settings or messages: its settings and depth by state. Read-only.

        Counting depth reads every message row (like `stats`).
        """
        from .settings import QueueInfo, settings_from_row

        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(self.compose(queries.LIST_QUEUES)).fetchall()
        return [
            QueueInfo(
                settings=settings_from_row({**r, "updated_at": None}),
                ready=int(r["ready"]),
                leased=int(r["leased"]),
                expired=int(r["expired"]),
                delayed=int(r["delayed"]),
                dead=int(r["dead"]),
            )
            for r in rows
        ]

    def queue_names(self, prefix: str = "", limit: int = COMPLETION_LIMIT) -> list[str]:
        """Names of queues that have messages or settings, starting with `prefix`. Read-only.

        Does not count anything: one index probe per distinct queue (queries.QUEUE_NAMES).
        """
        params = {"prefix": prefix, "limit": limit}
        with translated():
            rows = self.conn.execute(self.compose(queries.QUEUE_NAMES), params).fetchall()
        return [str(r[0]) for r in rows]

    # -- fairness (docs/fairness.md) ---------------------------------------------------

    def fairness(self, queue: str) -> FairnessSettings:
        """The queue's fairness settings (off, no cap when it has none). Read-only."""
        from .fairness import FairnessSettings

        check_queue(queue)
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(
                self.compose(fair_queries.GET_FAIRNESS), {"queue": queue}
            ).fetchone()
        if row is None:
            return FairnessSettings(queue, False, None)
        return FairnessSettings(row["queue"], bool(row["fair"]), row["max_inflight_per_key"])

    def configure_fairness(
        self,
        queue: str,
        *,
        fair: bool | None = None,
        max_inflight_per_key: int | None = None,
        set_max_inflight: bool = False,
    ) -> FairnessSettings:
        """Turn fair claiming on or off (`fair`, None: unchanged) and/or set the cap on live
        leases per key (`max_inflight_per_key` when `set_max_inflight`; None removes it).

        One transaction. Turning fairness on registers the keys of the queue's waiting
        ready work (reads those rows once). Leases taken before it was on are not counted
        toward the cap; they end as usual.
        """
        from .fairness import FairnessSettings

        check_queue(queue)
        check_max_inflight(max_inflight_per_key)
        params = {
            "queue": queue,
            "fair": fair,
            "set_fair": fair is not None,
            "cap": max_inflight_per_key,
            "set_cap": set_max_inflight,
        }
        with (
            translated(),
            self.conn.transaction(),
            self.conn.cursor(row_factory=dict_row) as cur,
        ):
            row = cur.execute(self.compose(fair_queries.CONFIGURE_FAIRNESS), params).fetchone()
            assert row is not None
            if fair:
                cur.execute(self.compose(fair_queries.FORGET_HEADS), params)
                cur.execute(self.compose(fair_queries.REGISTER_READY_KEYS), params)
        self._fairness.pop(queue, None)  # the next claim reads it again
        return FairnessSettings(row["queue"], bool(row["fair"]), row["max_inflight_per_key"])

    def set_key_weight(self, queue: str, key: str | None, weight: float) -> KeyWeight:
        """Set a key's weight in a queue (None: the messages sent without a key).

        While several keys have work at the same priority, each gets claims in proportion
        to its weight. Takes effect at the next claim.
        """
        from .fairness import KeyWeight

        check_queue(queue)
        if key is not None:
            check_key(key)
        params = {"queue": queue, "key": key or "", "weight": check_weight(weight)}
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            row = cur.execute(self.compose(fair_queries.SET_KEY_WEIGHT), params).fetchone()
        assert row is not None
        return KeyWeight(
            row["queue"], row["key"] or None, float(row["weight"]), int(row["inflight"])
        )

    def depth_by_key(self, queue: str, *, top: int = DEFAULT_TOP_KEYS) -> list[KeyDepth]:
        """Ready, leased and delayed messages per key of `queue`, the `top` keys by ready
        depth. Read-only; exact, so it reads every live row of the queue once."""
        from .fairness import KeyDepth

        check_queue(queue)
        check_top_keys(top)
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                self.compose(fair_queries.STATS_BY_KEY), {"queue": queue, "limit": top}
            ).fetchall()
        return [
            KeyDepth(r["key"], int(r["ready"]), int(r["leased"]), int(r["delayed"]))
            for r in rows
        ]

    def key_breakdown(
        self, *, queue: str | None = None, top: int = DEFAULT_TOP_KEYS
    ) -> list[KeyBreakdown]:
        """For every fair queue (or `queue`): the `top` keys by ready depth and the others
        summed, so that a metric per key has a bounded number of series. Read-only; one
        pass over the fair queues' live rows."""
        from .fairness import KeyDepth, breakdown

        if queue is not None:
            check_queue(queue)
        check_top_keys(top)
        with translated(), self.conn.cursor(row_factory=dict_row) as cur:
            rows = cur.execute(
                self.compose(fair_queries.FAIR_QUEUES_BY_KEY), {"queue": queue}
            ).fetchall()
        return breakdown(
            (
                (
                    r["queue"],
                    KeyDepth(r["key"], int(r["ready"]), int(r["leased"]), int(r["delayed"])),
                )
                for r in rows
            ),
            top,
        )
