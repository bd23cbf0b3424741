"""`pgq work`: a shell consumer. Runs a command once per message, on `Queue.work`.

The library's loop claims, extends leases and acks; this module turns a message into a
process (payload on stdin, PGQ_* in its environment), its exit status into an outcome,
and signals into the loop's stop event. Exit codes: 0 every command succeeded, 3 some
message went back or died, 69 the reconnect timeout ran out, 130 Ctrl-C.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import IO, TYPE_CHECKING, Annotated, Any

import typer

from ..core import checks
from ..core.durations import parse_milliseconds
from ..core.errors import InvalidInput
from ..core.exitcodes import ExitCode
from .boundary import boundary, say, state
from .connection import session
from .options import (
    DEFAULT_RECONNECT_TIMEOUT,
    DEFAULT_STATEMENT_TIMEOUT,
    DURATION,
    DsnOpt,
    QueueOpt,
    ReconnectTimeoutOpt,
    SchemaOpt,
    StatementTimeoutOpt,
    seconds_of,
)

if TYPE_CHECKING:
    from ..core.queue import Message

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()

DEFAULT_GRACE = "30s"
# After SIGTERM to a command's process group, how long before SIGKILL.
KILL_AFTER_S = 2.0
# How often a waiting handler looks at its command, its timeout and the grace deadline.
POLL_S = 0.05


class CommandFailed(Exception):
    """The command exited non-zero or was killed: the library backs the message off."""


@dataclass
class Shutdown:
    """What the signal handlers tell the handler threads."""

    grace: float
    stop: threading.Event = field(default_factory=threading.Event)
    interrupted: bool = False  # Ctrl-C (exit 130), as opposed to SIGTERM
    kill_at: float | None = None  # running commands are killed at this monotonic time

    def signalled(self, signum: int, frame: FrameType | None) -> None:
        if self.stop.is_set():  # a second signal: do not wait out the grace period
            self.kill_at = time.monotonic()
        else:
            self.kill_at = time.monotonic() + self.grace
            self.stop.set()
        self.interrupted = self.interrupted or signum == signal.SIGINT


@dataclass
class Tally:
    succeeded: int = 0
    failed: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, ok: bool) -> None:
        with self.lock:
            if ok:
                self.succeeded += 1
            else:
                self.failed += 1


@dataclass
class CommandRunner:
    """The handler: one run of the command per message."""

    argv: list[str]
    queue: str
    timeout: float | None
    prefix_output: bool
    verbose: bool
    shutdown: Shutdown
    tally: Tally

    def __call__(self, message: Message) -> None:
        from ..core.worker import Retry, default_backoff  # the loop that calls this has it

        started = time.monotonic()
        env = {
            **os.environ,
            "PGQ_MSG_ID": str(message.msg_id),
            "PGQ_LEASE": str(message.lease),
            "PGQ_QUEUE": message.queue,
            "PGQ_PRIORITY": str(message.priority),
            "PGQ_READ_CT": str(message.read_ct),
        }
        output = _stderr_fd()
        prefix = f"[{message.msg_id}] " if self.prefix_output else ""
        copy_output = output is None or self.prefix_output
        # Its own session: Ctrl-C at the terminal reaches pgq, not the command, so it can
        # finish within --grace; and the whole group can be killed.
        process = subprocess.Popen(
            self.argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if copy_output else output,
            stderr=subprocess.STDOUT if copy_output else output,
            env=env,
            start_new_session=True,
        )
        copier = None
        if copy_output:
            assert process.stdout is not None
            copier = threading.Thread(
                target=_copy_prefixed, args=(process.stdout, prefix), daemon=True
            )
            copier.start()
        feeder = threading.Thread(
            target=_feed, args=(process, json.dumps(message.payload) + "\n"), daemon=True
        )
        feeder.start()
        outcome = self._wait(process, started)
        if copier is not None:
            copier.join(timeout=KILL_AFTER_S)
        elapsed = time.monotonic() - started
        if outcome == "ok":
            self.tally.count(True)
            self._log(message, f"exit 0 after {elapsed:.2f} s: acked")
            return
        self.tally.count(False)
        if outcome == "stopped":
            self._log(message, f"killed after --grace ({elapsed:.2f} s): given back")
            raise Retry(delay=0)
        self._log(
            message,
            f"{outcome} after {elapsed:.2f} s: given back, retry in "
            f"{default_backoff(message.read_ct):g} s (dead if its deliveries are used up)",
        )
        raise CommandFailed(outcome)

    def _wait(self, process: subprocess.Popen[bytes], started: float) -> str:
        """'ok', 'exit N', 'timed out (--timeout)' or 'stopped' (killed after --grace)."""
        while True:
            try:
                code = process.wait(timeout=POLL_S)
            except subprocess.TimeoutExpired:
                now = time.monotonic()
                if self.timeout is not None and now - started >= self.timeout:
                    _kill_group(process)
                    return "timed out (--timeout)"
                kill_at = self.shutdown.kill_at
                if kill_at is not None and now >= kill_at:
                    _kill_group(process)
                    return "stopped"
                continue
            if code == 0:
                return "ok"
            return f"exit {code}" if code > 0 else f"killed by signal {-code}"

    def _log(self, message: Message, what: str) -> None:
        if self.verbose:
            say(
                f"pgq work: msg {message.msg_id} (priority {message.priority}, "
                f"read_ct {message.read_ct}) {what}"
            )


def _stderr_fd() -> int | None:
    """pgq's stderr as a file descriptor the command can write to directly, if it is one."""
    try:
        sys.stderr.flush()
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):  # io.UnsupportedOperation is an OSError
        return None


def _feed(process: subprocess.Popen[bytes], text: str) -> None:
    """Write the payload to the command's stdin; a command that does not read it is fine."""
    assert process.stdin is not None
    try:
        process.stdin.write(text.encode())
        process.stdin.close()
    except (BrokenPipeError, OSError):
        pass


def _copy_prefixed(stream: IO[bytes], prefix: str) -> None:
    """Copy a command's output to stderr line by line, each line prefixed with its msg id."""
    for line in iter(stream.readline, b""):
        text = line.decode(errors="replace")
        sys.stderr.write(prefix + text + ("" if text.endswith("\n") else "\n"))
        sys.stderr.flush()
    stream.close()


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the command's process group, SIGKILL it if it is still there soon after."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=KILL_AFTER_S)
            return
        except subprocess.TimeoutExpired:
            continue


@contextmanager
def _signals_stop(shutdown: Shutdown) -> Iterator[None]:
    """SIGINT and SIGTERM stop the loop (see Shutdown) instead of killing pgq."""
    previous = {sig: signal.signal(sig, shutdown.signalled) for sig in (signal.SIGINT,
                                                                         signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _check_command(command: list[str]) -> list[str]:
    if not command:
        raise InvalidInput("no command given", hint="pgq work -q QUEUE -- CMD [ARGS...]")
    program = command[0]
    if os.sep in program:
        if not (os.path.isfile(program) and os.access(program, os.X_OK)):
            raise InvalidInput(f"{program!r} is not an executable file")
    elif shutil.which(program) is None:
        raise InvalidInput(f"command not found: {program!r}", hint="check PATH or give a path")
    return command


def _duration(text: str | None, option: str, *, allow_zero: bool = False) -> float | None:
    return None if text is None else seconds_of(text, option, allow_zero=allow_zero)


def _positive(value: int | None, option: str, upper: int) -> int | None:
    if value is not None and not 1 <= value <= upper:
        raise InvalidInput(f"{option} must be 1..{upper}, not {value}")
    return value


@commands.command(context_settings={"allow_interspersed_args": False})
def work(
    command: Annotated[
        list[str] | None,
        typer.Argument(
            help="The command to run per message, after `--`.", show_default=False
        ),
    ] = None,
    queue: QueueOpt = checks.DEFAULT_QUEUE,
    qty: Annotated[
        int, typer.Option("--qty", "-n", help="Claim up to this many messages at a time.")
    ] = 1,
    concurrency: Annotated[
        int, typer.Option("--concurrency", "-c", help="Run up to this many commands at once.")
    ] = 1,
    vt: Annotated[
        str,
        typer.Option("--vt", metavar=DURATION,
                     help="Lease length (30s, 5m, 2h or seconds); extended "
                     "while the command runs."),
    ] = "30s",
    timeout: Annotated[
        str | None,
        typer.Option("--timeout", metavar=DURATION,
                     help="Kill a command that runs longer; its message goes back.",
                     show_default=False),
    ] = None,
    wait: Annotated[
        str | None,
        typer.Option("--wait", metavar=DURATION,
                     help="Idle on LISTEN/NOTIFY up to this long between empty "
                     "claims (default 1s); with --until-empty: stop once nothing was "
                     "claimable for this long.", show_default=False),
    ] = None,
    until_empty: Annotated[
        bool, typer.Option("--until-empty", help="Stop when nothing is left to claim.")
    ] = False,
    max_messages: Annotated[
        int | None,
        typer.Option("--max-messages", help="Stop after this many messages.",
                     show_default=False),
    ] = None,
    max_runtime: Annotated[
        str | None,
        typer.Option("--max-runtime", metavar=DURATION,
                     help="Stop claiming after this long.",
                     show_default=False),
    ] = None,
    grace: Annotated[
        str,
        typer.Option("--grace", metavar=DURATION,
                     help="After SIGTERM or Ctrl-C, let running commands "
                     "finish this long, then kill them and give their messages back."),
    ] = DEFAULT_GRACE,
    reconnect_timeout: ReconnectTimeoutOpt = DEFAULT_RECONNECT_TIMEOUT,
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="One line per message on stderr.")
    ] = False,
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    statement_timeout: StatementTimeoutOpt = DEFAULT_STATEMENT_TIMEOUT,
) -> None:
    """Run CMD once per message: the payload (JSON) on its stdin; exit 0 acks it.

    CMD's environment holds PGQ_MSG_ID, PGQ_LEASE, PGQ_QUEUE, PGQ_PRIORITY, PGQ_READ_CT.
    Any other exit puts the message back with back-off (1 s, 2 s, 4 s, ... up to 5 min,
    by read_ct); the queue's max deliveries apply. The lease is extended while CMD runs.
    CMD's output goes to stderr, each line prefixed with the msg id when --concurrency
    is above 1.

    Exit: 0 every command succeeded; 3 some message went back or died; 69 the database
    stayed unreachable for --reconnect-timeout; 130 Ctrl-C. SIGTERM stops like the
    limits do (0 or 3).

    Example: pgq work -q emails --until-empty -- ./send-email.sh
    """
    # Loaded here, not at the top: `pgq work --help` loads no psycopg.
    from ..core import connect as connecting
    from ..core.worker import MAX_CONCURRENCY

    with boundary():
        checks.check_queue(queue)
        checks.check_qty(qty)
        _positive(concurrency, "--concurrency", MAX_CONCURRENCY)
        _positive(max_messages, "--max-messages", 2**31 - 1)
        vt_s = _duration(vt, "--vt")
        timeout_s = _duration(timeout, "--timeout")
        wait_s = _duration(wait, "--wait", allow_zero=True)
        if wait_s is not None:
            checks.check_wait(wait_s)
        max_runtime_s = _duration(max_runtime, "--max-runtime")
        grace_s = _duration(grace, "--grace", allow_zero=True)
        reconnect_s = _duration(reconnect_timeout, "--reconnect-timeout", allow_zero=True)
        statement_timeout_ms = parse_milliseconds(statement_timeout, "--statement-timeout")
        argv = _check_command(list(command or []))
    assert vt_s is not None and grace_s is not None
    shutdown = Shutdown(grace=grace_s)
    tally = Tally()
    runner = CommandRunner(argv, queue, timeout_s, concurrency > 1, verbose, shutdown, tally)
    if not state.debug:
        # A connection lost in the middle of a pipeline makes psycopg log a warning, which
        # Python would print on stderr; the loop reconnects, and errors are one line.
        logging.getLogger("psycopg").addHandler(logging.NullHandler())
    with session("work", dsn, schema, statement_timeout_ms=statement_timeout_ms) as q:
        # The same target the session resolved (and announced); each reconnect dials it.
        target = connecting.resolve(dsn)

        def reconnect() -> Any:
            return connecting.connect(
                target, "pgq work", statement_timeout_ms=statement_timeout_ms
            )

        with _signals_stop(shutdown):
            acked = q.work(
                runner,
                queue=queue,
                qty=qty,
                vt=vt_s,
                concurrency=concurrency,
                wait=wait_s,
                until_empty=until_empty,
                max_messages=max_messages,
                max_runtime=max_runtime_s,
                stop=shutdown.stop,
                connect=reconnect,
                reconnect_timeout=reconnect_s,
            )
    if verbose:
        say(f"pgq work: {tally.succeeded} succeeded ({acked} acked), {tally.failed} went back")
    if shutdown.interrupted:
        say("pgq: interrupted")
        raise typer.Exit(int(ExitCode.INTERRUPTED))
    if tally.failed or acked < tally.succeeded:
        raise typer.Exit(int(ExitCode.NOTHING_DONE))
