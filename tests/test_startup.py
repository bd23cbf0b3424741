"""What a `pgq` process loads: help and --version load no psycopg, a one-shot command no
pydantic, rich or bench machinery, so that a later import cannot quietly undo the fast
start (`bench/cli_startup.py` measures it). Each case runs the real entry point in a
fresh interpreter and reads `sys.modules` as the process ends.

Also: the pydantic-free coercion of option values (`pgq_cli/cli/coercion.py`) gives exactly what
Typer's own would, or leaves the value to it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import pytest
import typer
import typer.main
from hypothesis import example, given
from hypothesis import strategies as st
from typer._coercion import build_runtime_param

from pgq_cli.cli import coercion, main

# Runs `pgq ARGS...` as the console script does, then writes the loaded modules to a file.
PROBE = """
import json, sys
modules_file, args = sys.argv[1], json.loads(sys.argv[2])
sys.argv = ["pgq", *args]
from pgq_cli.cli.main import main
try:
    main()
finally:
    with open(modules_file, "w") as out:
        json.dump(sorted(sys.modules), out)
"""

# Loaded by nothing that only parses arguments and prints help or the version.
NEVER_FOR_HELP = (
    "psycopg",
    "psycopg_binary",
    "prometheus_client",
    "pydantic",
    "rich.progress",
    "pgq_cli.bench.runner",
    "pgq_cli.bench.schema",
)
# Loaded by no one-shot command on its plain, piped path (`pgq claim`, `pgq send`).
# (importlib.metadata is not here: psycopg itself imports it.)
NEVER_FOR_ONE_SHOT = (
    "pydantic", "rich", "tabulate", "prometheus_client", "pgq_cli.bench.runner", "pgq_cli.ops"
)

ALL_COMMANDS = [[name] for names in main.COMMAND_MODULES.values() for name in names] + [
    ["queue", "config"]
]


def loaded_modules(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None
) -> tuple[set[str], subprocess.CompletedProcess[str]]:
    modules_file = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(modules_file), json.dumps(list(args))],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "100", **(env or {})},
        timeout=120,
        check=False,
    )
    assert modules_file.exists(), done.stderr
    return set(json.loads(modules_file.read_text())), done


def offenders(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The loaded modules that are, or are inside, a forbidden package."""
    return sorted(
        name for name in modules for bad in forbidden if name == bad or name.startswith(bad + ".")
    )


def test_version_loads_no_psycopg(tmp_path: Path) -> None:
    modules, done = loaded_modules(tmp_path, "--version")
    assert (done.returncode, done.stdout.startswith("pgq ")) == (0, True), done.stderr
    assert offenders(modules, NEVER_FOR_HELP) == []
    assert "pgq_cli.cli.messages" not in modules  # no command module either


def test_help_loads_no_psycopg(tmp_path: Path) -> None:
    modules, done = loaded_modules(tmp_path, "--help")
    assert done.returncode == 0, done.stderr
    assert "claim" in done.stdout
    assert offenders(modules, (*NEVER_FOR_HELP, "rich")) == []


@pytest.mark.parametrize("command", ALL_COMMANDS, ids=" ".join)
def test_command_help_loads_no_psycopg(tmp_path: Path, command: list[str]) -> None:
    modules, done = loaded_modules(tmp_path, *command, "--help")
    assert done.returncode == 0, done.stderr
    assert "Usage: pgq " + " ".join(command) in done.stdout
    assert offenders(modules, NEVER_FOR_HELP) == []
    # Help is click's plain layout (pgq_cli/cli/helptext.py): rich is not needed for it.
    assert offenders(modules, ("rich",)) == []


def test_a_usage_error_loads_no_psycopg(tmp_path: Path) -> None:
    """`--qty abc` is refused by Typer's own coercion (pydantic), before any connection."""
    modules, done = loaded_modules(tmp_path, "claim", "--qty", "abc")
    assert done.returncode == 2
    assert "Invalid value for '--qty'" in done.stderr
    assert offenders(modules, ("psycopg",)) == []


def test_one_shot_claim_loads_only_what_it_uses(tmp_path: Path, db_dsn: str) -> None:
    modules, done = loaded_modules(tmp_path, "claim", "-q", "empty", env={"PGQ_DSN": db_dsn})
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert offenders(modules, NEVER_FOR_ONE_SHOT) == []
    # The probe sees what a command does load: the help checks fail on a stray import.
    assert "psycopg" in offenders(modules, NEVER_FOR_HELP)


def test_one_shot_send_loads_only_what_it_uses(tmp_path: Path, db_dsn: str) -> None:
    modules, done = loaded_modules(tmp_path, "send", "-q", "jobs", "{}", env={"PGQ_DSN": db_dsn})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().isdigit()
    assert offenders(modules, NEVER_FOR_ONE_SHOT) == []


# ------------------------------------------------------------------ coercion, no pydantic


class Colour(StrEnum):
    red = "red"
    green = "green"


def _options_command() -> Any:
    """A Typer command with one option of each type `pgq_cli/cli/coercion.py` handles."""
    app = typer.Typer()

    @app.command()
    def command(
        number: Annotated[int, typer.Option()] = 0,
        ratio: Annotated[float, typer.Option()] = 0.0,
        name: Annotated[str, typer.Option()] = "",
        flag: Annotated[bool, typer.Option()] = False,
        colour: Annotated[Colour, typer.Option(case_sensitive=False)] = Colour.red,
        numbers: Annotated[list[int] | None, typer.Option()] = None,
    ) -> None:
        pass

    return typer.main.get_command(app)


COMMAND = _options_command()
PARAMS = {param.name: param for param in COMMAND.params}


def coerced(param_name: str, value: Any, *, fast: bool) -> tuple[str, Any]:
    """("ok", value) or ("error", message) from the fast coercer or from Typer's own."""
    param = PARAMS[param_name]
    param._runtime_param = None
    ctx = typer.Context(COMMAND)
    runtime = coercion.plain_runtime_param(param.type_descriptor) if fast else None
    if fast:
        assert runtime is not None, f"{param_name}: no fast coercer"
    else:
        runtime = build_runtime_param(param.type_descriptor)
    try:
        return "ok", runtime.coerce(value, param=param, ctx=ctx)
    except typer.BadParameter as exc:
        return "error", exc.format_message()


def assert_same(param_name: str, value: Any) -> None:
    fast = coerced(param_name, value, fast=True)
    own = coerced(param_name, value, fast=False)
    assert fast == own
    assert type(fast[1]) is type(own[1])  # 1 is not 1.0, True is not 1
    if isinstance(fast[1], list):
        assert [type(v) for v in fast[1]] == [type(v) for v in own[1]]


NUMBER_TEXT = st.from_regex(r"\A[ +\-0-9._eEinfa]{0,12}\Z")


@given(NUMBER_TEXT | st.integers() | st.booleans())
@example("007")
@example("1_000")
@example(" 5")
@example("-0")
@example("9" * 30)
def test_int_coercion_matches_typer(value: Any) -> None:
    assert_same("number", value)


@given(NUMBER_TEXT | st.integers() | st.floats(allow_nan=False))
@example("1.50")
@example("1e3")
@example("inf")
@example(".5")
@example("0.1000000000000000055511151231257827")
def test_float_coercion_matches_typer(value: Any) -> None:
    assert_same("ratio", value)


@given(st.text(max_size=8) | st.booleans() | st.just(b"bytes"))
def test_str_bool_and_choice_coercion_match_typer(value: Any) -> None:
    for name in ("name", "flag", "colour"):
        assert_same(name, value)


@given(st.lists(NUMBER_TEXT, max_size=3).map(tuple))
@example(("1", "2"))
@example(("1", "x"))
def test_list_coercion_matches_typer(value: tuple[str, ...]) -> None:
    assert_same("numbers", value)


@pytest.mark.parametrize("value", ["GREEN", "Red", Colour.green, "blue", ""])
def test_choice_coercion_matches_typer(value: Any) -> None:
    assert_same("colour", value)


def test_every_pgq_option_gets_a_fast_coercer() -> None:
    """No option of any command falls to pydantic on its plain values (else start-up pays
    for pydantic again); a new option type needs a coercer in pgq_cli/cli/coercion.py."""
    app = main.build_app()
    root = typer.main.get_command(app)
    ctx = typer.Context(root)
    without = []
    for name in root.list_commands(ctx):
        command = root.get_command(ctx, name)
        for sub in [command, *getattr(command, "commands", {}).values()]:
            for param in sub.params:
                if coercion.plain_runtime_param(param.type_descriptor) is None:
                    without.append(f"{name} {param.name}")
    assert without == []
