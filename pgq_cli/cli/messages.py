"""The everyday loop: `pgq send`, `claim`, `peek`, `ack`, `requeue`, `extend`.

No queue logic lives here. Inputs are validated (by the core's own check functions) before
connecting, so bad input exits 2 even when the database is down, and nothing is written.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from ..core import checks
from ..core.checks import Envelope
from ..core.durations import parse_duration, parse_milliseconds
from ..core.errors import BadPayload, EmptyClaim, InvalidInput
from ..core.exitcodes import ExitCode
from . import output as render
from . import pipeline
from .boundary import boundary, say, status
from .connection import run_reconnecting, session
from .options import (
    DEFAULT_RECONNECT_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    DURATION,
    DsnOpt,
    FormatOpt,
    HeaderOpt,
    JsonOpt,
    KeyOpt,
    LeaseOpt,
    OptionalQueueOpt,
    PriorityOpt,
    QueueOpt,
    ReconnectTimeoutOpt,
    SchemaOpt,
    StatementTimeoutOpt,
    seconds_of,
    seconds_text,
)
from .output import Format

if TYPE_CHECKING:  # the start-up rule: no psycopg (core.queue) at the top of a command module
    from ..core.queue import IdResult, Message, Queue

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()


def _read_ndjson(path: str) -> tuple[list[str], list[int]]:
    """Payload lines and their 1-based line numbers; blank lines are skipped."""
    try:
        stream = sys.stdin if path == "-" else Path(path).open(encoding="utf-8")  # noqa: SIM115
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}") from None
    payloads: list[str] = []
    line_numbers: list[int] = []
    try:
        with stream:
            for number, line in enumerate(stream, start=1):
                text = line.strip()
                if text:
                    payloads.append(text)
                    line_numbers.append(number)
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"{path} is not UTF-8 text: {exc.reason}") from None
    return payloads, line_numbers


ENVELOPE_FIELDS = ("payload", "key", "priority", "delay", "dedup_key")


def _envelope(
    text: str, number: int, *, priority: int, delay: float, key: str | None
) -> Envelope:
    """One `--envelope` line: {"payload": …, "key": …, "priority": …, "delay": …,
    "dedup_key": …}; the options give what a line leaves out (there is no --dedup-key
    for a file). Checked as fully as a plain line."""
    where = f"line {number}"
    checks.check_payload(text, where=where)
    line = json.loads(text)
    if not isinstance(line, dict) or "payload" not in line:
        raise BadPayload(
            f"{where} is not an envelope",
            hint='each line must be {"payload": ..., "key": ..., "priority": ..., "delay": ..., '
            '"dedup_key": ...}',
        )
    unknown = sorted(set(line) - set(ENVELOPE_FIELDS))
    if unknown:
        raise BadPayload(f"{where}: unknown envelope field {unknown[0]!r}",
                         hint=f"use {', '.join(ENVELOPE_FIELDS)}")
    envelope = Envelope(
        payload=checks.check_payload(json.dumps(line["payload"], ensure_ascii=False)),
        key=line.get("key", key),
        priority=line.get("priority", priority),
        delay=line.get("delay", delay),
        dedup_key=line.get("dedup_key"),
    )
    try:
        if envelope.key is not None:
            checks.check_key(envelope.key)
        if envelope.dedup_key is not None:
            checks.check_dedup_key(envelope.dedup_key)
        checks.check_priority(envelope.priority)
        if isinstance(envelope.delay, bool) or not isinstance(envelope.delay, int | float):
            raise InvalidInput(
                f"delay must be a number of seconds, not {envelope.delay!r}", params=("delay",)
            )
        checks.check_seconds(envelope.delay, "delay")
    except InvalidInput as exc:
        # No params: the error names a field of the line, not a flag of the command.
        raise InvalidInput(f"{where}: {exc.message}", hint=exc.hint) from None
    return envelope


@commands.command()
def send(
    payload: Annotated[
        str | None,
        typer.Argument(help="JSON payload; '-' reads one payload from stdin.", show_default=False),
    ] = None,
    queue: QueueOpt = checks.DEFAULT_QUEUE,
    priority: PriorityOpt = checks.DEFAULT_PRIORITY,
    delay: Annotated[
        str,
        typer.Option(
            "--delay", metavar=DURATION, help="How long before it can be claimed (30s, 5m, 2h)."
        ),
    ] = "0",
    file: Annotated[
        str | None,
        typer.Option(
            "--file",
            "-f",
            help="NDJSON file ('-' for stdin): one payload per line, all in one transaction.",
        ),
    ] = None,
    key: KeyOpt = None,
    envelope: Annotated[
        bool,
        typer.Option(
            "--envelope",
            help='With --file: each line is {"payload": ..., "key": ..., "priority": ..., '
            '"delay": ..., "dedup_key": ...}; the options give what a line leaves out. A '
            "line's dedup_key works as --dedup-key does.",
        ),
    ] = False,
    dedup_key: Annotated[
        str | None,
        typer.Option(
            "--dedup-key",
            help="Send at most once per key and queue within the queue's dedup window "
            "(default 24h): a repeat sends nothing and prints the first message's id.",
            show_default=False,
        ),
    ] = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Send messages; print their msg ids. Priority 10 is most urgent.

    --key: the fairness key (tenant, org or customer id); a queue configured with
    `pgq queue config Q --fair` rotates its claims across keys.

    A producer that retries after exit 69 (the connection went away, e.g. in a failover)
    cannot know whether the first try committed: give each message a --dedup-key and the
    retry cannot send it twice.
    """
    fmt = render.resolve_format(fmt, json_out)
    envelopes: list[Envelope] = []
    with boundary():
        checks.check_queue(queue)
        checks.check_priority(priority)
        delay_s = seconds_of(delay, "--delay")
        if key is not None:
            checks.check_key(key)
        if (payload is None) == (file is None):
            raise InvalidInput("give one PAYLOAD or --file", hint="see 'pgq send --help'")
        if envelope and file is None:
            raise InvalidInput("--envelope goes with --file")
        if dedup_key is not None:
            checks.check_dedup_key(dedup_key)
            if file is not None:
                raise InvalidInput(
                    "--dedup-key is for one PAYLOAD, not --file",
                    hint='give each line its own "dedup_key" with --envelope',
                )
        if file is not None:
            lines, line_numbers = _read_ndjson(file)
            # Checked once here, before connecting; send_envelopes sees them checked.
            for text, number in zip(lines, line_numbers, strict=True):
                if envelope:
                    envelopes.append(
                        _envelope(text, number, priority=priority, delay=delay_s, key=key)
                    )
                else:
                    checked = checks.check_payload(text, where=f"line {number}")
                    envelopes.append(Envelope(checked, key, priority, delay_s))
        else:
            assert payload is not None
            text = sys.stdin.read() if payload == "-" else payload
            payloads = [checks.check_payload(text.strip() if payload == "-" else text)]
    with session("send", dsn, schema) as q:
        if file is not None:
            ids = q.send_envelopes(envelopes, queue=queue)
        elif dedup_key is not None:
            sent = q.send_deduplicated(
                payloads[0],
                dedup_key=dedup_key,
                queue=queue,
                priority=priority,
                delay=delay_s,
                key=key,
            )
            if not sent.created:
                status(
                    f"pgq: dedup key {dedup_key[:40]!r} already sent message {sent.msg_id} "
                    f"to {queue!r}; nothing sent"
                )
            ids = [sent.msg_id]
        else:
            ids = [q.send(payloads[0], queue=queue, priority=priority, delay=delay_s, key=key)]
        render.ids(ids, fmt)


@commands.command()
def claim(
    queue: QueueOpt = checks.DEFAULT_QUEUE,
    qty: Annotated[int, typer.Option("--qty", "-n", help="At most this many messages.")] = 1,
    vt: Annotated[
        str,
        typer.Option(
            "--vt", metavar=DURATION, help="Lease (visibility timeout): 30s, 5m, 2h."
        ),
    ] = seconds_text(checks.DEFAULT_VT_S),
    min_priority: Annotated[
        int, typer.Option("--min-priority", help="Only claim priority >= this.")
    ] = checks.MIN_PRIORITY,
    max_priority: Annotated[
        int, typer.Option("--max-priority", help="Only claim priority <= this.")
    ] = checks.MAX_PRIORITY,
    fail_if_empty: Annotated[
        bool, typer.Option("--fail-if-empty", help="Exit 3 when nothing was claimed.")
    ] = False,
    wait: Annotated[
        str,
        typer.Option(
            "--wait",
            metavar=DURATION,
            help="Wait up to this long for work (LISTEN/NOTIFY, polling for delayed "
            "and expired work); needs a session connection, not transaction-pooled PgBouncer.",
        ),
    ] = "0",
    reconnect_timeout: ReconnectTimeoutOpt = DEFAULT_RECONNECT_TIMEOUT,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    header: HeaderOpt = False,
    fmt: FormatOpt = Format.auto,
    statement_timeout: StatementTimeoutOpt = DEFAULT_STATEMENT_TIMEOUT,
) -> None:
    """Lease up to --qty messages: highest priority first (10 is most urgent), FIFO within one.

    Each message gets a lease token; pass it to ack/requeue/extend with --lease so that a
    consumer whose lease ran out cannot ack a message someone else now holds.
    Paused queues and bands (`pgq pause`) yield nothing.

    With --wait, a connection that goes away (server restart, failover) is dialled again
    with back-off for up to --reconnect-timeout, and the wait goes on; a claim without
    --wait is one-shot and exits 69 at once.
    """
    render.plain_header(header)
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        checks.check_queue(queue)
        checks.check_qty(qty)
        vt_s = seconds_of(vt, "--vt", allow_zero=False)
        checks.check_priority_range(min_priority, max_priority)
        wait_s = checks.check_wait(parse_duration(wait, "--wait"))
        reconnect_s = seconds_of(reconnect_timeout, "--reconnect-timeout")
        statement_timeout_ms = parse_milliseconds(statement_timeout, "--statement-timeout")
    bounds = {"min_priority": min_priority, "max_priority": max_priority}
    if wait_s > 0:
        deadline = time.monotonic() + wait_s

        def wait_for_work(q: Queue) -> list[Message]:
            # After a reconnect the wait goes on for what is left of it (at least one claim).
            left = max(deadline - time.monotonic(), 0.0)
            return q.claim(queue=queue, qty=qty, vt=vt_s, **bounds, wait=left)

        found = run_reconnecting(
            "claim",
            dsn,
            schema,
            wait_for_work,
            reconnect_timeout_s=reconnect_s,
            statement_timeout_ms=statement_timeout_ms,
        )
    else:
        with session("claim", dsn, schema, statement_timeout_ms=statement_timeout_ms) as q:
            found = q.claim(queue=queue, qty=qty, vt=vt_s, **bounds)
    with boundary():
        if not found and fail_if_empty:
            raise EmptyClaim(f"queue {queue!r} had nothing ready to claim")
        render.messages(found, fmt, title=f"claimed from {queue}")


@commands.command()
def peek(
    queue: QueueOpt = checks.DEFAULT_QUEUE,
    limit: Annotated[int, typer.Option("--limit", "-l", help="At most this many.")] = 10,
    state: Annotated[
        str,
        typer.Option(
            "--state", help="ready | leased | expired | delayed | dead | all."
        ),
    ] = "ready",
    key: Annotated[
        str | None,
        typer.Option(
            "--key", help="Only messages sent with this fairness key.", show_default=False
        ),
    ] = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    header: HeaderOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Show messages in claim order without claiming them or touching any lease."""
    render.plain_header(header)
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        checks.check_queue(queue)
        checks.check_peek_state(state)
        checks.check_qty(limit, "limit")
        if key is not None:
            checks.check_key(key)
    with session("peek", dsn, schema) as q:
        found = q.peek(queue=queue, limit=limit, state=state, key=key)
        render.messages(found, fmt, title=queue)


MsgIdsArg = Annotated[
    list[str],
    typer.Argument(
        help="Message ids, or - to read `claim --json` lines from stdin (each with its lease).",
        show_default=False,
    ),
]


@commands.command()
def ack(
    msg_ids: MsgIdsArg,
    lease: LeaseOpt = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Acknowledge (delete) messages, each id on its own.

    stdout lists the ids acked (--json: one {"msg_id", "result"} per id given, result
    acked, unknown, stale_lease or not_leased); each id not acked gets a line on stderr
    saying what happened to it, and the exit code is 3. `pgq claim --json | ... | pgq ack -`
    acks each claimed message with its own lease.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        ids = pipeline.parse_ids(msg_ids, lease)
        checks.check_lease(lease)
        claimed = pipeline.read_claimed(sys.stdin) if ids is None else []
    with session("ack", dsn, schema) as q:
        if ids is None:  # each stdin line with its own lease
            results = [r for m in claimed for r in q.ack_each([m.msg_id], lease=m.lease)]
        else:
            results = q.ack_each(ids, lease=lease)
    _report_each(results, fmt)


@commands.command()
def requeue(
    msg_ids: Annotated[
        list[str] | None,
        typer.Argument(
            help="Message ids, or - to read `claim --json` lines from stdin (each with its "
            "lease).",
            show_default=False,
        ),
    ] = None,
    lease: LeaseOpt = None,
    delay: Annotated[
        str,
        typer.Option(
            "--delay", metavar=DURATION, help="How long before it can be claimed again (30s, 5m)."
        ),
    ] = "0",
    expired: Annotated[
        bool,
        typer.Option(
            "--expired", help="Return every expired lease (and due delayed message) now; for cron."
        ),
    ] = False,
    dead: Annotated[
        bool,
        typer.Option(
            "--dead",
            help="Redrive dead letters to ready (read_ct reset). Needs --queue, --older-than, "
            "--limit or --all.",
        ),
    ] = False,
    queue: OptionalQueueOpt = None,
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar=DURATION,
            help="With --dead: only those that died at least this long ago (30s, 15m, 2h, 7d).",
            show_default=False,
        ),
    ] = None,
    limit: Annotated[
        int | None,
        typer.Option("--limit", help="With --dead: at most this many.", show_default=False),
    ] = None,
    all_dead: Annotated[
        bool, typer.Option("--all", help="With --dead: every dead letter, no filter needed.")
    ] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose",
            "-v",
            help="With --expired: print requeued<TAB>N (by default it prints nothing, so "
            "cron mails nothing; --json prints {\"requeued\": N}).",
        ),
    ] = False,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Give messages back to the queue (read_ct is kept), now or after --delay.

    A message that has had its queue's max deliveries goes to dead letters instead
    (`pgq queue config Q --max-deliveries N`). `--dead` redrives dead letters.
    """
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        if [bool(msg_ids), expired, dead].count(True) != 1:
            raise InvalidInput("give MSG_IDs, --expired or --dead")
        if verbose and not expired:
            raise InvalidInput("--verbose goes with --expired")
        if queue is not None:
            checks.check_queue(queue)
        ids: list[int] | None = []
        claimed: list[pipeline.Leased] = []
        delay_s = seconds_of(delay, "--delay")
        if msg_ids:
            ids = pipeline.parse_ids(msg_ids, lease)
            checks.check_lease(lease)
        age = _check_redrive(dead, older_than, limit, all_dead, has_queue=queue is not None)
        if ids is None:
            claimed = pipeline.read_claimed(sys.stdin)
    with session("requeue", dsn, schema) as q:
        if expired:
            count = q.requeue_expired(queue=queue)
            if fmt is Format.json or verbose:
                render.one({"requeued": count}, fmt)
            return
        if dead:
            redriven = q.redrive_dead(queue=queue, older_than=age, limit=limit)
            status(f"pgq: redrove {len(redriven)} dead letter(s) to ready")
            if redriven:
                render.ids(redriven, fmt)
            elif fmt is Format.json:
                render.one({"redriven": 0}, fmt)  # a result, even when there was nothing
            return
        _requeue_messages(q, ids, claimed, lease=lease, delay=delay_s, fmt=fmt)


def _requeue_messages(
    q: Queue,
    ids: list[int] | None,
    claimed: list[pipeline.Leased],
    *,
    lease: str | None,
    delay: float,
    fmt: Format,
) -> None:
    """`requeue ID...` (ids), or `requeue -` (ids None: each claimed line with its lease)."""
    if ids is None:
        results = [
            r for m in claimed for r in q.requeue_each([m.msg_id], lease=m.lease, delay=delay)
        ]
    else:
        results = q.requeue_each(ids, lease=lease, delay=delay)
    went_dead = [r.msg_id for r in results if r.done and r.state == "dead"]
    if went_dead:
        status(
            f"pgq: {len(went_dead)} message(s) had their last delivery and went to dead "
            f"letters: {', '.join(map(str, went_dead[:10]))}"
        )
    _report_each(results, fmt)


def _report_each(results: Sequence[IdResult], fmt: Format) -> None:
    """stdout: the ids done (--json: every id with its result); stderr: one line per id
    not done, saying what happened to it; exit 3 if any id was not done."""
    render.id_results(results, fmt)
    not_done = [r for r in results if not r.done]
    for r in not_done:
        say(f"pgq: error: {r.reason}")
    if not_done:
        raise typer.Exit(int(ExitCode.NOTHING_DONE))


def _check_redrive(
    dead: bool, older_than: str | None, limit: int | None, all_dead: bool, *, has_queue: bool
) -> float | None:
    """Validate the --dead options; return --older-than in seconds."""
    if not dead:
        if older_than is not None or limit is not None or all_dead:
            raise InvalidInput("--older-than, --limit and --all go with --dead")
        return None
    if limit is not None and limit < 1:
        raise InvalidInput(f"--limit must be >= 1, not {limit}")
    age = None if older_than is None else parse_duration(older_than, "--older-than")
    if age is not None:
        checks.check_age(age)
    if not (all_dead or has_queue or age is not None or limit is not None):
        raise InvalidInput(
            "refusing to redrive every dead letter of every queue",
            hint="give --queue, --older-than or --limit, or --all if you mean it",
        )
    return age


@commands.command()
def extend(
    msg_id: Annotated[int, typer.Argument(help="Message id.", show_default=False)],
    vt: Annotated[
        str,
        typer.Option("--vt", metavar=DURATION, help="New lease: this long from now (30s, 5m)."),
    ],
    lease: LeaseOpt = None,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Extend a lease you hold (a heartbeat for long work). Exit 3 if it is not current."""
    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        checks.check_ids([msg_id])
        checks.check_lease(lease)
        vt_s = seconds_of(vt, "--vt", allow_zero=False)
    with session("extend", dsn, schema) as q:
        render.messages([q.extend(msg_id, vt=vt_s, lease=lease)], fmt)
