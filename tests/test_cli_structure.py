"""The CLI's floor plan: one module per command group, registered explicitly in help order,
and every table, frame and report rendered by `pgq_cli/cli/output.py`. No database needed.
"""

from __future__ import annotations

import ast
import io
import re
from pathlib import Path

import pytest
import typer
import typer.main
from rich.console import Console
from typer.testing import CliRunner

from pgq_cli.cli import main, output
from pgq_cli.cli.app import create_app
from pgq_cli.cli.output import Format
from pgq_cli.core.queue import PriorityStats, QueueStats
from pgq_cli.ops.watch import Counters, Frame

PACKAGE = Path(main.__file__).resolve().parent.parent
CLI = PACKAGE / "cli"

# `pgq --help`: the everyday loop first, then operations.
HELP_ORDER = [
    "demo", "migrate", "send", "claim", "peek", "ack", "requeue", "extend", "work", "stats",
    "queues", "queue", "pause", "resume", "purge", "watch", "doctor", "bench", "info",
    "embedded",
]


def command_names(app: typer.Typer) -> list[str]:
    group = typer.main.get_group(app)  # a group even for one command, as when merged
    return group.list_commands(typer.Context(group))


def test_help_lists_the_commands_in_order() -> None:
    result = CliRunner().invoke(main.app, ["--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    commands_section = result.stdout.split("\nCommands:\n", 1)[1].split("\n\n", 1)[0]
    assert re.findall(r"^  (\S+) ", commands_section, re.MULTILINE) == HELP_ORDER


def test_main_registers_each_command_group_once_in_help_order() -> None:
    """Each command is declared in exactly one module; main names the modules in order,
    with the commands each one declares."""
    per_module = [command_names(main.command_group(module)) for module in main.COMMAND_MODULES]
    assert [name for names in per_module for name in names] == HELP_ORDER
    assert per_module == [list(names) for names in main.COMMAND_MODULES.values()]
    assert command_names(main.build_app()) == HELP_ORDER


def test_the_root_app_has_no_commands_until_main_adds_them() -> None:
    """Importing the command modules (main did) registered nothing on a root app."""
    assert command_names(create_app()) == []


def _module_level_typers(tree: ast.Module) -> set[str]:
    return {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and ast.unparse(node.value.func) == "typer.Typer"
        for target in node.targets
        if isinstance(target, ast.Name)
    }


@pytest.mark.parametrize(
    "path", sorted(p for p in CLI.glob("*.py") if p.name != "main.py"), ids=lambda p: p.name
)
def test_command_modules_register_only_on_their_own_typers(path: Path) -> None:
    """`@X.command()` and `X.add_typer()` only on a Typer made in the same module: no
    module adds commands to another's app by being imported."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    own = _module_level_typers(tree)
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and node.attr in ("command", "add_typer", "callback")
            and isinstance(node.value, ast.Name)
            and node.value.id not in ("typer",)
        ):
            assert node.value.id in own or path.name == "app.py", (
                f"{path.name}:{node.lineno}: {node.value.id}.{node.attr} is not this "
                "module's Typer"
            )


def _output_calls(path: Path) -> list[str]:
    """Imports of rich/tabulate and writes to stdout (print, sys.stdout.write) in a module."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names = [node.module or ""]
        elif isinstance(node, ast.Call):
            names = [ast.unparse(node.func)]
        else:
            continue
        for name in names:
            if name.split(".")[0] in ("rich", "tabulate") or name in (
                "print", "sys.stdout.write"
            ):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {name}")
    return found


def test_only_the_output_module_renders_or_writes_stdout() -> None:
    offenders = [
        hit
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != CLI / "output.py"
        for hit in _output_calls(path)
    ]
    assert offenders == []
    assert _output_calls(CLI / "output.py"), "the scan finds nothing: it checks nothing"


# ------------------------------------------------------------------------- watch frames


def frame(number: int, claim_rate: float | None, rows: tuple[PriorityStats, ...]) -> Frame:
    rates = claim_rate is not None
    return Frame(
        number=number, at=1.0, wall=1_700_000_000.25, stats=QueueStats(rows=rows),
        estimated=False, counters=Counters(1, 2, 3), seconds=1.5 if rates else None,
        claimed=8 if rates else None, sent=3 if rates else None, acked=2 if rates else None,
        claim_rate=claim_rate, send_rate=2.0 if rates else None,
        ack_rate=1.3 if rates else None,
    )


ROW = PriorityStats(
    queue="jobs", priority=9, ready=12, leased=3, expired=1, delayed=0, dead=2,
    oldest_ready_age=130.5, max_read_ct=4,
)


def test_watch_frames_on_a_terminal_redraw_in_place() -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with output.watch_frames(Format.rich, queue="jobs", console=console) as show:
        show(frame(1, None, (ROW,)))
        show(frame(2, 1234.5, (ROW,)))
    drawn = screen.getvalue()
    assert "frame 1" in drawn and "frame 2" in drawn
    assert "claims 1,234.5/s" in drawn and "(rates: all queues)" in drawn
    assert "oldest ready 2.2m" in drawn and "Ctrl-C to quit" in drawn
    # Redrawn in place: the cursor moves up over the previous frame (rich Live).
    assert "\x1b[1A" in drawn or "\x1b[2K" in drawn


def test_watch_text_frame_is_the_stats_columns() -> None:
    text = output.watch_text(frame(2, 0.0, (ROW,)))
    summary, header, row, blank, end = text.split("\n")
    assert summary.startswith("frame 2  2023-11-14T22:13:20.250+00:00  claims 0.0/s")
    assert header == "\t".join(output.STATS_HEADERS)
    assert row == "jobs\t9\t12\t3\t1\t0\t2\t130.5\t4\tno"
    assert (blank, end) == ("", "")


@pytest.mark.parametrize("queue", ["jobs", "q" * 60 + "-end"])
def test_watch_frames_at_80_columns_keep_queue_names_whole(queue: str) -> None:
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=False, width=80, color_system=None)
    row = PriorityStats(**{**ROW.__dict__, "queue": queue})
    with output.watch_frames(Format.rich, console=console) as show:
        show(frame(1, None, (row,)))
    lines = screen.getvalue().splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert any(queue in line.split() for line in lines), lines


def test_rich_tables_show_data_as_text_never_as_markup() -> None:
    """A payload or key holding `[red]` or `[/]` is data: shown as it is."""
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=False, width=120, color_system=None)
    payload = '{"a":"[red]x[/red]","b":"[/]"}'
    console.print(output.fitted(console, ("msg_id", "payload"), [[1, payload]]), crop=False)
    assert payload in screen.getvalue()
