"""The fused consumer loop behind `Queue.work`: claim, run a handler, ack, claim again.

Library code: never prints (handler failures go to the `pgq.worker` logger, which has a
NullHandler), never imports Typer or rich, installs no signal handlers. The caller stops
the loop with a `threading.Event`, or with its limits.

One statement per batch (queries.FUSED_ACK_CLAIM) acknowledges what the previous batch
finished and claims the next one: one round trip and one commit. Messages that go back
(`Retry`, `Reject`, a handler exception, or never started because the loop stopped) travel
in the same round trip (queries.GIVE_BACK). Every ack and give-back is fenced by the lease
token the claim handed out, so a message whose lease ran out and was claimed elsewhere is
never deleted or moved by this worker.

Leases: a heartbeat thread extends every message the loop holds, running, waiting its
turn in the batch, or finished and waiting for its ack, every vt/3 seconds. It shares the
work connection (psycopg serialises its use), so the loop needs one connection.

Expired leases and due delayed messages of the queue go back to ready through the loop's
own claims (queries.RETURN_DUE), at most every RETURN_DUE_INTERVAL_S, not before every
claim, so the common path stays one statement.

Reconnect: with `connect`, a statement that fails because the connection went away is
retried on a new connection, with back-off. Acks and give-backs whose outcome is unknown
are resent, fenced: one that did commit finds no row with its lease and changes nothing.
A claim that committed but whose answer was lost leaves its messages leased until their
vt; they then come back (at-least-once).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import wait as wait_for_futures
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from . import pooler, queries, waiting
from .checks import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    check_qty,
    check_queue,
    check_seconds,
    check_wait,
)
from .errors import ConnectFailed, InvalidInput, PgqError, Temporary
from .queue import Message, Queue
from .translate import translated

logger = logging.getLogger("pgq.worker")
logger.addHandler(logging.NullHandler())

MAX_CONCURRENCY = 1000
# The default back-off after a handler exception: 2^(read_ct - 1) seconds, at most this.
MAX_BACKOFF_S = 300.0
# How often the loop returns expired leases and due delayed messages to ready itself.
RETURN_DUE_INTERVAL_S = 0.25
# How often a waiting loop looks at its stop event and limits.
STOP_CHECK_S = 0.1
# Idle sleep between empty claims when `wait` is not given (a NOTIFY wakes it earlier).
DEFAULT_IDLE_S = waiting.DEFAULT_POLL_S
# Reconnect back-off: from this, doubling, up to the maximum.
RECONNECT_FIRST_S = 0.1
RECONNECT_MAX_S = 5.0


class Retry(Exception):
    """Raised by a handler: put the message back, claimable again after `delay` seconds.

    The queue's max_deliveries still applies: a message that has had them goes dead.
    """

    def __init__(self, delay: float = 0.0) -> None:
        super().__init__(f"retry in {delay} s")
        self.delay = check_seconds(delay, "Retry delay")


class Reject(Exception):
    """Raised by a handler: dead-letter the message at once (it will never succeed)."""


def default_backoff(read_ct: int) -> float:
    """Seconds before a message whose handler raised is claimable again: 1, 2, 4, … 300."""
    return min(2.0 ** max(read_ct - 1, 0), MAX_BACKOFF_S)


Handler = Callable[[Message], object]


@dataclass(frozen=True)
class Outcome:
    """What becomes of one claimed message: 'ack', 'retry', 'dead' or 'release'."""

    message: Message
    action: str
    delay: float = 0.0


class Worker:
    """One run of `Queue.work`. Use it through `Queue.work`."""

    def __init__(
        self,
        q: Queue,
        handler: Handler,
        *,
        queue: str,
        qty: int,
        vt: float,
        concurrency: int,
        wait: float | None,
        until_empty: bool,
        max_messages: int | None,
        max_runtime: float | None,
        stop: threading.Event | None,
        connect: Callable[[], psycopg.Connection[Any]] | None,
        backoff: Callable[[int], float] | None,
        reconnect_timeout: float | None,
    ) -> None:
        check_queue(queue)
        check_qty(qty)
        check_seconds(vt, "vt", allow_zero=False)
        if isinstance(concurrency, bool) or not 1 <= concurrency <= MAX_CONCURRENCY:
            raise InvalidInput(
                f"concurrency must be 1..{MAX_CONCURRENCY}, not {concurrency}",
                params=("concurrency",),
            )
        if wait is not None:
            check_wait(wait)
        if max_messages is not None and max_messages < 1:
            raise InvalidInput(
                f"max_messages must be at least 1, not {max_messages}", params=("max_messages",)
            )
        if max_runtime is not None:
            check_seconds(max_runtime, "max_runtime", allow_zero=False)
        if reconnect_timeout is not None:
            check_seconds(reconnect_timeout, "reconnect_timeout")
        self.q = q
        self.handler = handler
        self.queue = queue
        self.qty = qty
        self.vt = float(vt)
        self.concurrency = concurrency
        self.wait = wait
        self.until_empty = until_empty
        self.max_messages = max_messages
        self.max_runtime = max_runtime
        self.stop = stop or threading.Event()
        self.connect = connect
        self.backoff = backoff or default_backoff
        self.reconnect_timeout = reconnect_timeout

        self.started = time.monotonic()
        self.handled = 0  # messages whose handler ran (any outcome), for max_messages
        self.acked = 0
        # Messages this worker holds a lease on, by msg_id: the heartbeat extends them all.
        self.held: dict[int, Message] = {}
        self.held_lock = threading.Lock()
        # The heartbeat thread and the loop share the connection; psycopg serialises single
        # statements, but not a pipeline of several, so the loop's uses take this lock.
        self.conn_lock = threading.RLock()
        self.finished = threading.Event()
        self.opened: list[psycopg.Connection[Any]] = []  # connections the loop made itself
        self.last_return_due = float("-inf")
        # Acks sent when the connection went away: their outcome is unknown until resent.
        self.unknown_acks: set[int] = set()
        self.listening = False
        self.listen_wanted = False
        self._compose()

    # -- statements --------------------------------------------------------------------

    def _compose(self) -> None:
        """Compose the loop's statements once (schema identifiers filled in)."""
        self.fused = self.q.compose(queries.FUSED_ACK_CLAIM)
        self.give_back = self.q.compose(queries.GIVE_BACK)
        self.extend_held = self.q.compose(queries.EXTEND_HELD)
        self.return_due = self.q.compose(queries.RETURN_DUE)

    # -- the loop ----------------------------------------------------------------------

    def run(self) -> int:
        heartbeat = threading.Thread(target=self._heartbeat, name="pgq-heartbeat", daemon=True)
        heartbeat.start()
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="pgq-handler")
        settle: list[Outcome] = []
        try:
            # A fair queue is claimed through fair_claim (see _send): know it before the
            # first claim, or an until_empty loop would stop on the fused claim's nothing.
            self._retrying(lambda: self.q.recheck_fair(self.queue))
            # LISTEN before the first claim, so work sent between an empty claim and the
            # sleep after it still wakes the loop (psycopg keeps notifications received
            # meanwhile). A loop that never sleeps (until_empty without wait) needs none.
            # Behind a transaction pooler a LISTEN stays on a server connection other
            # clients get next (Queue.transaction_pooled): poll only, like waiting claims.
            self.listen_wanted = not self.q.transaction_pooled and (
                self.wait is not None or not self.until_empty
            )
            if self.listen_wanted:
                self._retrying(self._listen)
            idle_since: float | None = None
            while True:
                want = self._claim_size()
                batch = self._exchange(settle, want)
                settle = []
                if want == 0:
                    return self.acked
                if batch:
                    idle_since = None
                    settle = self._run_batch(batch, pool)
                    continue
                now = time.monotonic()
                idle_since = now if idle_since is None else idle_since
                if self.until_empty and (self.wait is None or now - idle_since >= self.wait):
                    return self.acked
                self._idle(idle_since)
        except BaseException:
            # Interrupted (KeyboardInterrupt in the caller's thread) or failed: settle what
            # is known and give back every other message held, best effort. Anything not
            # settled comes back after its vt (at-least-once either way).
            self._settle_on_the_way_out(settle)
            raise
        finally:
            self.finished.set()
            pool.shutdown(wait=False, cancel_futures=True)
            heartbeat.join()
            self._unlisten()
            for conn in self.opened:
                conn.close()

    def _settle_on_the_way_out(self, settle: list[Outcome]) -> None:
        settled = {o.message.msg_id for o in settle}
        with self.held_lock:
            unsettled = [m for msg_id, m in self.held.items() if msg_id not in settled]
        everything = settle + [Outcome(m, "retry") for m in unsettled]
        if not everything:
            return
        try:
            self._send(everything, 0)
        except (PgqError, psycopg.Error):
            logger.warning("could not settle %d messages on the way out", len(everything))

    def _should_stop(self) -> bool:
        if self.stop.is_set():
            return True
        return self.max_runtime is not None and time.monotonic() - self.started >= self.max_runtime

    def _claim_size(self) -> int:
        if self._should_stop():
            return 0
        if self.max_messages is None:
            return self.qty
        return max(0, min(self.qty, self.max_messages - self.handled))

    # -- one round trip ----------------------------------------------------------------

    def _retrying(self, step: Callable[[], object]) -> None:
        """Run a start-up step; a lost connection or a temporary failure is recovered from
        and the step run again, as for every statement of the loop. (The connection can go
        between connecting and the first statement: a failover, a dropped database.)"""
        failures = 0
        failing_since = 0.0
        while True:
            try:
                with translated():
                    step()
                return
            except (ConnectFailed, Temporary) as error:
                if failures == 0:
                    failing_since = time.monotonic()
                failures += 1
                self._recover(error, failures, failing_since)

    def _exchange(self, settle: list[Outcome], want: int) -> list[Message]:
        """Settle the last batch and claim `want` more; reconnect and resend on a lost
        connection (with `connect`), retry after a temporary failure."""
        failures = 0
        failing_since = 0.0
        while True:
            try:
                return self._send(settle, want)
            except (ConnectFailed, Temporary) as error:
                if failures == 0:
                    failing_since = time.monotonic()
                failures += 1
                self.unknown_acks.update(o.message.msg_id for o in settle if o.action == "ack")
                self._recover(error, failures, failing_since)
                if self._should_stop():
                    want = 0

    def _send(self, settle: list[Outcome], want: int) -> list[Message]:
        acks = [o.message for o in settle if o.action == "ack"]
        given = [o for o in settle if o.action != "ack"]
        if not acks and not given and want == 0:
            return []
        conn = self.q.conn
        params = {
            "ack_ids": [m.msg_id for m in acks],
            "ack_leases": [m.lease for m in acks],
            "queue": self.queue,
            "qty": want,
            "vt": self.vt,
            "min_priority": MIN_PRIORITY,
            "max_priority": MAX_PRIORITY,
            "batch": max(want, 1000),
        }
        return_due = want > 0 and time.monotonic() - self.last_return_due >= RETURN_DUE_INTERVAL_S
        # A fair queue's claim is fair_claim (the fused statement's ordinary claim yields
        # nothing there): the fused statement then only settles, and Queue.claim claims.
        # Whether the queue is fair is re-read only after an empty claim (below), as
        # Queue.claim does, so an ordinary queue's busy loop sends nothing more.
        fair = want > 0 and self.q.believed_fair(self.queue)
        if fair:
            params["qty"] = 0
        with self.conn_lock, translated(), conn.cursor() as cur:
            if given or return_due:
                with pooler.together(conn):
                    if given:
                        conn.execute(self.give_back, self._give_back_params(given))
                    if return_due:
                        conn.execute(self.return_due, params)
                    cur.execute(self.fused, params)
            else:
                cur.execute(self.fused, params)
            rows = cur.fetchall()
            fair_claimed = self.q.claim(queue=self.queue, qty=want, vt=self.vt) if fair else []
        acked = set(rows[0][0] or ()) if rows else set()
        self.acked += len(acked)
        # RETURNING order is unspecified: handle in claim order.
        claimed = sorted(
            [*(Message(*row[1:]) for row in rows if row[1] is not None), *fair_claimed],
            key=lambda m: (-m.priority, m.msg_id),
        )
        with self.held_lock:
            for outcome in settle:
                self.held.pop(outcome.message.msg_id, None)
            for message in claimed:
                self.held[message.msg_id] = message
        if return_due:
            self.last_return_due = time.monotonic()
        if want > 0 and not claimed:
            self.q.recheck_fair(self.queue)
        # The exchange has committed: what follows is bookkeeping, and a failure in it must
        # not make the loop resend (and lose track of the batch it just claimed). A lost
        # connection shows up again on the next statement.
        try:
            self._count_unknown_acks(acks, acked)
            if return_due and claimed and self.listening:
                self._forget_notifications()
        except PgqError as exc:
            logger.debug("after the exchange: %s", exc)
        return claimed

    def _forget_notifications(self) -> None:
        """Drop the notifications that piled up while the loop was busy (psycopg keeps
        them until read), so a long busy spell does not grow them without bound. Only
        after a claim that found work: the loop claims again before it sleeps."""
        with self.conn_lock, translated():
            for _ in self.q.conn.notifies(timeout=0):
                pass

    def _give_back_params(self, given: list[Outcome]) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "ids": [o.message.msg_id for o in given],
            "leases": [o.message.lease for o in given],
            "outcomes": [o.action for o in given],
            "delays": [o.delay for o in given],
        }

    def _count_unknown_acks(self, acks: list[Message], acked: set[int]) -> None:
        """A resent ack that deleted nothing was done by the attempt whose answer was lost
        if its row is gone; a row still there kept a lease that is no longer ours."""
        resent = [m.msg_id for m in acks if m.msg_id in self.unknown_acks]
        if not resent:
            return
        self.unknown_acks.difference_update(resent)
        unconfirmed = [msg_id for msg_id in resent if msg_id not in acked]
        if not unconfirmed:
            return
        with self.conn_lock, translated():
            rows = self.q.conn.execute(
                self.q.compose(queries.WHERE_NOW), {"ids": unconfirmed}
            ).fetchall()
        self.acked += len(unconfirmed) - len(rows)

    # -- running handlers --------------------------------------------------------------

    def _run_batch(self, batch: list[Message], pool: ThreadPoolExecutor) -> list[Outcome]:
        """Run the handler on every message of the batch; return their outcomes.

        Up to `concurrency` runners take messages from the batch in claim order. When the
        loop is told to stop, messages no runner has taken yet are given back at once
        (released: read_ct as before) while the running ones finish."""
        if len(batch) == 1:  # nothing can wait its turn: run it on this thread
            if self._should_stop():
                return [Outcome(batch[0], "release")]
            return [self._handle(batch[0])]
        unstarted = deque(batch)
        unstarted_lock = threading.Lock()
        outcomes: list[Outcome] = []

        def runner() -> None:
            while True:
                with unstarted_lock:
                    if not unstarted:
                        return
                    message = unstarted.popleft()
                outcomes.append(self._handle(message))

        runners = [pool.submit(runner) for _ in range(min(self.concurrency, len(batch)))]
        released = False
        while wait_for_futures(runners, timeout=STOP_CHECK_S).not_done:
            if not released and self._should_stop():
                released = True
                with unstarted_lock:
                    never_started = list(unstarted)
                    unstarted.clear()
                self._release_now(never_started, outcomes)
        for finished in runners:
            finished.result()  # a BaseException in a handler thread ends the loop here
        return outcomes

    def _release_now(self, messages: list[Message], outcomes: list[Outcome]) -> None:
        """Give back messages that never started, without waiting for the batch to end.
        If that fails they go back with the batch's settle statement instead."""
        if not messages:
            return
        released = [Outcome(m, "release") for m in messages]
        try:
            self._send(released, 0)
        except (PgqError, psycopg.Error):
            outcomes.extend(released)

    def _handle(self, message: Message) -> Outcome:
        try:
            self.handler(message)
        except Retry as retry:
            return self._counted(Outcome(message, "retry", retry.delay))
        except Reject:
            return self._counted(Outcome(message, "dead"))
        except Exception:
            delay = self.backoff(message.read_ct)
            logger.warning(
                "handler failed for message %d (read_ct %d); back in %.1f s",
                message.msg_id,
                message.read_ct,
                delay,
                exc_info=True,
            )
            return self._counted(Outcome(message, "retry", delay))
        return self._counted(Outcome(message, "ack"))

    def _counted(self, outcome: Outcome) -> Outcome:
        with self.held_lock:
            self.handled += 1
        return outcome

    # -- heartbeat ---------------------------------------------------------------------

    def _heartbeat(self) -> None:
        """Extend every held lease each vt/3 seconds until the loop ends."""
        interval = self.vt / 3
        while not self.finished.wait(interval):
            with self.held_lock:
                held = list(self.held.values())
            if not held:
                continue
            params = {
                "ids": [m.msg_id for m in held],
                "leases": [m.lease for m in held],
                "vt": self.vt,
            }
            try:
                with self.conn_lock:
                    self.q.conn.execute(self.extend_held, params)
            except psycopg.Error as exc:
                # The loop finds a lost connection on its next statement and reconnects;
                # the next beat uses the new one.
                logger.debug("heartbeat failed: %s", exc)

    # -- idling ------------------------------------------------------------------------

    def _idle(self, idle_since: float) -> None:
        """Sleep after an empty claim until a NOTIFY for the queue, the next due time, the
        end of the idle period, or a stop."""
        if self.listen_wanted:
            self._listen()
        now = time.monotonic()
        if self.until_empty:
            assert self.wait is not None
            end = idle_since + self.wait
        else:
            end = now + (DEFAULT_IDLE_S if self.wait is None else self.wait)
        if self.max_runtime is not None:
            end = min(end, self.started + self.max_runtime)
        try:
            with self.conn_lock:
                due = self.q.next_due_s(self.queue)
            if due is not None:  # a little past it, so the next claim returns it
                end = min(end, now + max(due + waiting.PAST_DUE_S, waiting.MIN_SLEEP_S))
            if not self.listen_wanted:  # polling: claim again at least every poll interval
                end = min(end, now + waiting.DEFAULT_POLL_S)
            while not self._should_stop():
                remaining = end - time.monotonic()
                if remaining <= 0:
                    return
                if not self.listen_wanted:
                    self.stop.wait(min(remaining, STOP_CHECK_S))
                    continue
                with self.conn_lock:
                    woken = waiting.sleep_until_woken(
                        self.q.conn, self.queue, min(remaining, STOP_CHECK_S)
                    )
                if woken:
                    return
        except (ConnectFailed, Temporary) as error:
            self._recover(error, 1, time.monotonic())

    def _listen(self) -> None:
        if not self.listening:
            with self.conn_lock, translated():
                self.q.conn.execute(sql.SQL("LISTEN {}").format(self._channel()))
            self.listening = True

    def _unlisten(self) -> None:
        if self.listening and not self.q.conn.closed:
            try:
                with self.conn_lock:
                    self.q.conn.execute(sql.SQL("UNLISTEN {}").format(self._channel()))
            except psycopg.Error:
                pass  # the connection is going away anyway
        self.listening = False

    def _channel(self) -> sql.Identifier:
        return sql.Identifier(self.q.notify_channel)

    # -- reconnect ---------------------------------------------------------------------

    def _recover(self, error: PgqError, failures: int, failing_since: float) -> None:
        """After a failed statement: reconnect (lost connection) or wait (temporary), with
        back-off, until it works, the reconnect timeout runs out or the loop is stopped."""
        if isinstance(error, ConnectFailed) and self.connect is None:
            raise error
        delay = min(RECONNECT_FIRST_S * 2 ** (failures - 1), RECONNECT_MAX_S)
        while True:
            elapsed = time.monotonic() - failing_since
            if self.reconnect_timeout is not None and elapsed >= self.reconnect_timeout:
                raise ConnectFailed(
                    f"{error.message}; gave up after {self.reconnect_timeout:g} s of retrying",
                    hint="check that the server is up; raise reconnect_timeout to wait longer",
                    params=("reconnect_timeout",),
                ) from error
            if self.stop.is_set() and isinstance(error, ConnectFailed):
                raise error
            if self.reconnect_timeout is not None:
                delay = min(delay, max(self.reconnect_timeout - elapsed, 0.0))
            self.stop.wait(delay)
            if isinstance(error, Temporary):
                return
            try:
                self._reconnect()
                return
            except (PgqError, psycopg.Error, OSError) as exc:
                logger.debug("reconnect failed: %s", exc)
                delay = min(delay * 2, RECONNECT_MAX_S)

    def _reconnect(self) -> None:
        assert self.connect is not None
        old = self.q.conn
        conn = self.connect()
        conn.autocommit = True
        self.opened.append(conn)
        if old in self.opened:
            self.opened.remove(old)
            old.close()
        # The pooler stays what it was: asking the server again would cost a round trip.
        mode = pooler.TRANSACTION if self.q.transaction_pooled else "none"
        self.q = Queue(conn, self.q.schema, pool_mode=mode)
        self._compose()
        self.listening = False
        if self.listen_wanted:  # on the new connection too
            self._listen()
