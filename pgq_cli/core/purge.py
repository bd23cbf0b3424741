"""Purge and retention: delete a queue's messages by state and age, in bounded batches.

This module holds what `Queue.purge` returns (`PurgeResult`) and every check it makes
(`check_request`, which the CLI runs before connecting); `Queue.purge` does the deleting.
Never prints, never imports psycopg, Typer or rich.

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

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .checks import check_age, check_queue, check_seconds
from .errors import InvalidInput
from .states import EFFECTIVE_STATES

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
        if state not in EFFECTIVE_STATES:
            raise InvalidInput(
                f"unknown state {state!r}",
                hint="use " + " | ".join(EFFECTIVE_STATES) + " (repeatable)",
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
            "everything=True deletes every message of the queue; it cannot be combined with "
            "filters",
            hint="drop everything=True to purge only what states/older_than select",
            params=("everything=True", "states", "older_than"),
        )
    if not everything and not has_filter:
        raise InvalidInput(
            "refusing to purge a whole queue without a filter",
            hint="give states and/or older_than, or everything=True to delete every message "
            "of it",
            params=("states", "older_than", "everything=True"),
        )


def check_request(
    queue: str,
    states: Sequence[str],
    older_than: float | None,
    everything: bool,
    batch: int,
    max_runtime: float | None,
) -> tuple[str, ...] | None:
    """Every check `Queue.purge` makes before touching the database; the CLI runs it before
    connecting, so what it accepts is exactly what `Queue.purge` accepts. Returns the states."""
    check_queue(queue)
    wanted = check_states(states)
    if older_than is not None:
        check_age(older_than)
    check_filters(wanted, older_than, everything)
    check_batch(batch)
    if max_runtime is not None:
        check_seconds(max_runtime, "max_runtime", allow_zero=False)
    return wanted
