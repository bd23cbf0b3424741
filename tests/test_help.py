"""Every command's help, walked from the registered commands: examples that run, no
`<bool>`, nothing wider than 80 columns and prose that wraps as a greedy wrap would (no
ragged edge left by the docstrings' own line breaks).

The examples are run for real, each as its own shell line (pipes included), against a
fresh database, so none of them can stop working unnoticed.
"""

from __future__ import annotations

import itertools
import os
import shlex
import subprocess
from pathlib import Path
from typing import Any

import pytest
import typer.main
from typer.testing import CliRunner

from pgq_cli.cli import helptext, main

WIDTH = 80
# click's help formatter fills lines up to the terminal's width less 2.
TEXT_WIDTH = WIDTH - 2
# Too slow to run as a test (they fill and drain backlogs): parsed only.
PARSED_ONLY = {("bench",)}
# Exit codes an example may end with: 0, or 3 "nothing done that was required" (an id
# that is not there, a queue with nothing to claim).
EXAMPLE_EXIT_CODES = {0, 3}


def command_paths() -> list[tuple[str, ...]]:
    """The root, every command and every subcommand, as `pgq` registers them."""
    root = typer.main.get_command(main.app)
    ctx = typer.Context(root)
    paths: list[tuple[str, ...]] = [()]

    def walk(command: Any, path: tuple[str, ...]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, (*path, name))

    for name in root.list_commands(ctx):
        walk(root.get_command(ctx, name), (name,))
    return paths


PATHS = command_paths()


def test_the_walk_sees_every_command_module() -> None:
    registered = {name for names in main.COMMAND_MODULES.values() for name in names}
    assert {p[0] for p in PATHS if len(p) == 1} == registered
    assert {("queue", "config"), ("queue", "key"), ("embedded", "status")} <= set(PATHS)


def command_at(path: tuple[str, ...]) -> Any:
    root = typer.main.get_command(main.app)
    command, ctx = root, typer.Context(root)
    for name in path:
        command = command.get_command(ctx, name)
        ctx = typer.Context(command, parent=ctx, info_name=name)
    return command


def help_text(path: tuple[str, ...]) -> str:
    result = CliRunner().invoke(main.app, [*path, "--help"], env={"COLUMNS": str(WIDTH)})
    assert result.exit_code == 0, result.output
    return result.stdout


def ragged_breaks(text: str) -> list[tuple[str, str]]:
    """Pairs of lines where the next line's first word would have fitted on the line
    before it: a break a greedy wrap would not make. Checked in the description and in
    the continuation lines of an option's or command's help; the examples (one command
    per line) are not prose."""
    found = []
    lines = text.splitlines()
    in_sections = False
    for before, after in itertools.pairwise(lines):
        if after.strip() == helptext.EXAMPLES_HEADING:
            break
        if before.endswith(":") and not before.startswith(" "):
            in_sections = True  # Arguments:, Options:, Commands:
        if not before.strip() or not after.strip() or before.startswith("Usage:"):
            continue
        if in_sections and "  " not in before.strip():
            continue  # an option name too long for its column: its help starts below
        indent = len(after) - len(after.lstrip())
        continues = indent > 2 if in_sections else indent == 2
        first_word = after.split()[0]
        if continues and len(before.rstrip()) + 1 + len(first_word) <= TEXT_WIDTH:
            found.append((before, after))
    return found


def test_the_ragged_check_finds_hard_line_breaks() -> None:
    """What the docstrings looked like before their paragraphs were joined."""
    hard_breaks = (
        "Usage: pgq send [OPTIONS]\n\n"
        "  A producer that retries after exit 69 (the connection went away, e.g. in a\n"
        "  failover)\n"
        "  cannot know whether the first try committed.\n"
    )
    assert ragged_breaks(hard_breaks) == [
        ("  failover)", "  cannot know whether the first try committed.")
    ]
    assert ragged_breaks(help_text(("send",))) == []


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "pgq")
def test_help_at_80_columns(path: tuple[str, ...]) -> None:
    text = help_text(path)
    assert "<bool>" not in text
    too_wide = [line for line in text.splitlines() if len(line) > WIDTH]
    assert too_wide == []
    assert ragged_breaks(text) == []
    examples = helptext.examples(command_at(path))
    assert examples, f"pgq {' '.join(path)} --help has no examples"
    assert f"\n  {helptext.EXAMPLES_HEADING}\n" in text
    shown = {line.strip() for line in text.splitlines()}
    for example in examples:
        assert example in shown, f"example not whole on one line: {example}"
        assert example.startswith("pgq ") or " | pgq " in example, example


def parse_only(argv: list[str]) -> None:
    """Parse `pgq ARGV` as a run would, without running it: the command, its options and
    their types (a value the command checks itself, such as a duration, is not seen)."""
    command: Any = typer.main.get_command(main.app)
    ctx = command.make_context("pgq", list(argv))
    args = [*ctx._protected_args, *ctx.args]
    while args and hasattr(command, "resolve_command"):
        name, command, rest = command.resolve_command(ctx, args)
        ctx = command.make_context(name, rest, parent=ctx)
        args = [*getattr(ctx, "_protected_args", []), *ctx.args]


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "pgq")
def test_examples_run(path: tuple[str, ...], db_dsn: str, pgq_bin: str, tmp_path: Path) -> None:
    """Each example as a shell line, in order, against a fresh database: it exits 0 or 3
    (documented: nothing done), never 2 (usage) or anything else."""
    env = {
        **os.environ,
        "PGQ_DSN": db_dsn,
        "PATH": f"{Path(pgq_bin).parent}{os.pathsep}{os.environ['PATH']}",
    }
    for example in helptext.examples(command_at(path)):
        if path in PARSED_ONLY:
            parse_only(shlex.split(example)[1:])
            continue
        result = subprocess.run(
            ["bash", "-o", "pipefail", "-c", example], env=env, cwd=tmp_path,
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode in EXAMPLE_EXIT_CODES, (example, result.stderr)
        assert "Traceback" not in result.stderr, (example, result.stderr)


@pytest.mark.parametrize(
    "example", ["pgq bench --samples lots", "pgq bench --no-such-option", "pgq nothing"]
)
def test_parse_only_rejects_what_a_run_would(example: str) -> None:
    with pytest.raises(Exception) as raised:
        parse_only(shlex.split(example)[1:])
    assert callable(getattr(raised.value, "format_message", None)), raised.value
