"""Purge and retention: delete a queue's messages by state and age, in bounded batches.

Library code: takes a `Queue`, returns a frozen `PurgeResult`, raises the
`errors.PgqError` family; never prints, never imports Typer or rich.

Why batches: one `DELETE` of millions of rows holds millions of row locks for its whole
duration, blocks claims that want those rows, and leaves one huge transaction for
replication and vacuum to digest. Here each batch of at most `batch` rows is its own
short autocommit statement (committed before the next begins), and `max_runtime` stops
the purge between batches, so a cron job can chip away at a backlog within a time budget.

Dedup keys: every purge of a queue (dry runs aside) also deletes the queue's dedup keys
(`send --dedup-key`, sql/0005) older than its dedup window. They must outlive their
messages, so deleting messages never deletes them; a key past its window no longer
deduplicates anything, and purge is the queue's retention job, run from cron.

Safety rule: a purge needs a filter. Without `states` and without `older_than` it would
delete the whole queue, in-flight leases included; the caller must say `everything=True`
(`pgq purge Q --all`) for that. Filters and `everything` together are refused too, so a
typo cannot turn a narrow purge into a total one.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.errors import InvalidInput, translated
from ..core.queue import (
    DEFAULT_DEDUP_WINDOW_S,
    STATES,
    Queue,
    check_age,
    check_queue,
    check_seconds,
)
from . import queries as ops_queries

DEFAULT_BATCH = 1000
MAX_BATCH = 100_000


@dataclass(frozen=True)
class PurgeResult:
    queue: str
    states: tuple[str, ...] | None  # None: every state
    older_than_s: float | None
    dry_run: bool
    # Rows deleted (or, with dry_run, that would be deleted now).
    deleted: int
    # Rows deleted by each committed batch, in order (dry run: the batches it would take).
    batches: tuple[int, ...]
    # max_runtime ran out with (possibly) more to delete.
    stopped_early: bool
    elapsed_s: float
    # Dedup keys older than the queue's dedup window, deleted (dry run: that would be).
    expired_dedup_keys: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "queue": self.queue,
            "states": list(self.states) if self.states is not None else None,
            "older_than_s": self.older_than_s,
            "dry_run": self.dry_run,
            "deleted": self.deleted,
            "batches": list(self.batches),
            "stopped_early": self.stopped_early,
            "expired_dedup_keys": self.expired_dedup_keys,
            "elapsed_s": round(self.elapsed_s, 3),
        }


def check_states(states: Sequence[str]) -> tuple[str, ...] | None:
    """The states to purge (None: all). Unknown names are refused with the known ones."""
    if not states:
        return None
    for state in states:
        if state not in STATES:
            raise InvalidInput(
                f"unknown state {state!r}", hint="use " + " | ".join(STATES) + " (repeatable)"
            )
    return tuple(dict.fromkeys(states))


def check_batch(batch: int) -> int:
    if not 1 <= batch <= MAX_BATCH:
        raise InvalidInput(f"batch must be 1..{MAX_BATCH}, not {batch}")
    return batch


def check_filters(
    states: tuple[str, ...] | None, older_than: float | None, everything: bool
) -> None:
    """The safety rule of this module (see its docstring)."""
    has_filter = states is not None or older_than is not None
    if everything and has_filter:
        raise InvalidInput(
            "--all deletes every message of the queue; it cannot be combined with filters",
            hint="drop --all to purge only what --state/--older-than select",
        )
    if not everything and not has_filter:
        raise InvalidInput(
            "refusing to purge a whole queue without a filter",
            hint="give --state and/or --older-than, or --all to delete every message of it",
        )


def check_older_than(seconds: float) -> float:
    """An age filter, checked as redrive checks its own (`queue.check_age`)."""
    return check_age(seconds)


def check_request(
    queue: str,
    states: Sequence[str],
    older_than: float | None,
    everything: bool,
    batch: int,
    max_runtime: float | None,
) -> tuple[str, ...] | None:
    """Every check `purge` makes before touching the database; the CLI runs it before
    connecting, so what it accepts is exactly what `purge` accepts. Returns the states."""
    check_queue(queue)
    wanted = check_states(states)
    if older_than is not None:
        check_older_than(older_than)
    check_filters(wanted, older_than, everything)
    check_batch(batch)
    if max_runtime is not None:
        check_seconds(max_runtime, "--max-runtime", allow_zero=False)
    return wanted


def purge(
    q: Queue,
    queue: str,
    *,
    states: Sequence[str] = (),
    older_than: float | None = None,
    everything: bool = False,
    batch: int = DEFAULT_BATCH,
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
    wanted = check_request(queue, states, older_than, everything, batch, max_runtime)
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
            row = q.conn.execute(q._q(ops_queries.PURGE_COUNT), params).fetchone()
            keys = q.conn.execute(q._q(ops_queries.COUNT_EXPIRED_DEDUP_KEYS), params).fetchone()
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
            rows = q.conn.execute(q._q(ops_queries.PURGE_BATCH), params).fetchall()
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
        forgotten = q.conn.execute(q._q(ops_queries.PURGE_EXPIRED_DEDUP_KEYS), params).rowcount
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
