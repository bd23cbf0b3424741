"""The `pgq` command line: builds the application from its command groups, and `main`.

Each command-group module declares its commands on a Typer of its own (`commands`) and
registers nothing by being imported; `build_app` adds them here, in the order `pgq --help`
lists them: the everyday loop first, then operations.
"""

from __future__ import annotations

import typer

from . import bench, demo, messages, ops, pause, queues, schema, stats
from .app import create_app

COMMAND_GROUPS: tuple[typer.Typer, ...] = (
    demo.commands,  # demo
    schema.commands,  # migrate
    messages.commands,  # send, claim, peek, ack, requeue, extend
    stats.commands,  # stats
    queues.commands,  # queues, queue config
    pause.commands,  # pause, resume
    ops.commands,  # purge, watch, doctor
    bench.commands,  # bench
)


def build_app() -> typer.Typer:
    """The root application with every command group added, in help order."""
    app = create_app()
    for group in COMMAND_GROUPS:
        # Without a name, Typer merges the group's commands into the root command.
        app.add_typer(group)
    return app


app = build_app()


def main() -> None:
    """Console-script entry point (`pgq`, `pgq-cli`)."""
    app(prog_name="pgq")


if __name__ == "__main__":
    main()
