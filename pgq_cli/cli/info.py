"""`pgq info` (where pgq is connected and why) and `pgq embedded status|stop|path`.

Thin: resolve the target, call one core function, render. Only `pgq info` connects (and so
may start the embedded server, as any command would); the `embedded` commands read the data
directory and never start anything.
"""

from __future__ import annotations

import typer

from ..core.checks import DEFAULT_SCHEMA, check_schema
from ..core.exitcodes import ExitCode
from . import output as render
from .boundary import boundary, say, status
from .connection import open_target
from .options import DsnOpt, FormatOpt, JsonOpt, SchemaOpt
from .output import Format

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()


@commands.command()
def info(
    dsn: DsnOpt = "",
    schema: SchemaOpt = DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Where pgq is connected and which setting chose it; server, schema and pgq versions.

    source is the setting that won: --dsn, PGQ_DSN, DATABASE_URL, libpq (with the libpq
    variables that are set) or embedded. Never shows a password.
    """
    from ..core import connect
    from ..core import info as core_info

    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        check_schema(schema)
        target = open_target(dsn)
        with connect.connect(target, "pgq info") as conn:
            found = core_info.describe(conn, target, schema)
    render.record(found.to_json(), fmt)


embedded_app = typer.Typer(
    name="embedded",
    help="The embedded PostgreSQL pgq starts when nothing is configured: status, stop, path. "
    "Its data directory is PGQ_EMBEDDED_DIR or the user data directory.",
    no_args_is_help=True,
)
commands.add_typer(embedded_app)


@embedded_app.command("status")
def embedded_status(json_out: JsonOpt = False, fmt: FormatOpt = Format.auto) -> None:
    """Is the embedded server running: pid, data directory, port, socket directory, DSN.

    Exit 0 when it is running, 3 when it is not (the record is printed either way).
    """
    from ..core import embedded  # psycopg: loaded only when the command runs

    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        found = embedded.status(embedded.data_dir())
    render.record(found.to_json(), fmt)
    if not found.running:
        say(f"pgq: the embedded PostgreSQL in {found.data_dir} is not running")
        raise typer.Exit(int(ExitCode.NOTHING_DONE))


@embedded_app.command("stop")
def embedded_stop() -> None:
    """Stop the embedded server (a fast, clean shutdown). Exit 0 if it was not running."""
    from ..core import embedded  # psycopg: loaded only when the command runs

    with boundary():
        directory = embedded.data_dir()
        stopped = embedded.stop(directory)
    if stopped is None:
        status(f"pgq: the embedded PostgreSQL in {directory} is not running")
    else:
        status(f"pgq: stopped the embedded PostgreSQL (pid {stopped.pid}) in {directory}")


@embedded_app.command("path")
def embedded_path(json_out: JsonOpt = False, fmt: FormatOpt = Format.auto) -> None:
    """Print the embedded server's data directory (whether or not it exists)."""
    from ..core import embedded  # psycopg: loaded only when the command runs

    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        directory = str(embedded.data_dir())
        if fmt is Format.json:
            render.one({"data_dir": directory}, fmt)
        else:  # the bare path in every other format: `cd "$(pgq embedded path)"`
            render.text(f"{directory}\n")
