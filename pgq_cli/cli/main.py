"""The `pgq` command line: which module holds each command, and `main`.

Each command-group module declares its commands on a Typer of its own (`commands`) and
registers nothing by being imported. `COMMAND_MODULES` names them here, in the order
`pgq --help` lists them (the everyday loop first, then operations), and the root group
imports a module only when one of its commands is run, or listed by `pgq --help`.

Start-up rule, so that `pgq --version`, `pgq --help` and `pgq CMD --help` load no psycopg
and a one-shot command loads only what it uses (tests/test_startup.py checks every
command, so a stray import fails the suite):
- a new command goes into `COMMAND_MODULES` under its module; nothing imports the module;
- at its top a command module imports only typer, `options`, `output`, `boundary`,
  `connection` (which connects lazily) and modules that load no psycopg on import:
  `core.checks`, `core.errors`, `core.exitcodes`, `core.states`, `core.durations`,
  `core.purge`, `ops.thresholds`, `ops.prometheus`, `ops.estimate`, `ops.watch`,
  `ops.grants`, `bench` (its `__init__`). `core.queue`, `core.connect`, `core.migrate`,
  `core.translate`, `core.embedded`, `core.info`, `ops.doctor` and `bench.runner` are
  imported inside the function that uses them, and so is anything else heavy (rich,
  tabulate: `output` does that itself);
- an option of a type `coercion.py` has no coercer for would bring pydantic back on every
  run: add one there (a test lists every option without one).
"""

from __future__ import annotations

import copy
from importlib import import_module
from typing import Any

import typer
import typer.main

from . import coercion
from .app import PgqGroup, add_common_options, create_app

# Module (in this package) -> the commands it declares, in help order.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "demo": ("demo",),
    "schema": ("migrate",),
    "messages": ("send", "claim", "peek", "ack", "requeue", "extend"),
    "work": ("work",),
    "stats": ("stats",),
    "queues": ("queues", "queue"),
    "pause": ("pause", "resume"),
    "ops": ("purge", "watch", "doctor"),
    "bench": ("bench",),
    "info": ("info", "embedded"),
}
# Command -> its module.
MODULE_OF_COMMAND = {name: module for module, names in COMMAND_MODULES.items() for name in names}


def command_group(module_name: str) -> typer.Typer:
    """The Typer of one command module (imports the module)."""
    commands: typer.Typer = import_module(f"{__package__}.{module_name}").commands
    return commands


def convert_command(group: typer.Typer, name: str) -> Any:
    """Command `name` of a command module's Typer as a click command, or None.

    Typer converts every command of a Typer at once, reading each one's signature (a few
    ms each); a run needs one, so this converts a copy that holds only that one.
    """
    only = copy.copy(group)
    only.registered_commands = [
        info
        for info in group.registered_commands
        if (info.name or typer.main.get_command_name(getattr(info.callback, "__name__", "")))
        == name
    ]
    # A sub-Typer's name is known only once converted (`queue`): keep them when no
    # command has the name.
    only.registered_groups = [] if only.registered_commands else group.registered_groups
    return typer.main.get_group(only).commands.get(name)


class LazyCommands(PgqGroup):
    """The root group: imports a command's module, and converts it, on first use."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        # The root options (--debug, --version, and the completion options Typer adds
        # after making this group) are all there by now.
        coercion.install(self, ctx)
        rest: list[str] = super().parse_args(ctx, args)
        return rest

    def list_commands(self, ctx: Any) -> list[str]:
        return list(MODULE_OF_COMMAND)

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        module = MODULE_OF_COMMAND.get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            command = convert_command(command_group(module), cmd_name)
            if command is not None:
                add_common_options(command)
                self.commands[cmd_name] = command
                coercion.install_subcommand(command, cmd_name, ctx)
        return self.commands.get(cmd_name)


def build_app() -> typer.Typer:
    """The root application; its commands load on first use, listed in help order."""
    return create_app(LazyCommands)


app = build_app()


def main() -> None:
    """Console-script entry point (`pgq`, `pgq-cli`)."""
    app(prog_name="pgq")


if __name__ == "__main__":
    main()
