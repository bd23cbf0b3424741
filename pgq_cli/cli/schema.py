"""`pgq migrate`: create or upgrade the schema, list migrations, print the pending SQL or
least-privilege grants without connecting.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ..core import checks
from ..core.durations import parse_milliseconds
from ..ops.grants import DEFAULT_ROLE_PREFIX, grant_sql
from . import output as render
from .boundary import boundary, status
from .connection import session
from .options import MILLISECONDS, DsnOpt, FormatOpt, HeaderOpt, JsonOpt, SchemaOpt
from .output import Format

MIGRATE_LOCK_TIMEOUT_MS = 3_000

# Registered by `main.build_app`, in the order `pgq --help` lists them.
commands = typer.Typer()


@commands.command()
def migrate(
    list_: Annotated[
        bool, typer.Option("--list", help="Show applied and pending migrations.")
    ] = False,
    print_sql: Annotated[
        bool, typer.Option("--sql", help="Print the pending SQL without connecting.")
    ] = False,
    since: Annotated[
        int, typer.Option("--since", help="With --sql: the version already applied.")
    ] = 0,
    print_grants: Annotated[
        bool,
        typer.Option(
            "--print-grants",
            help="Print SQL creating least-privilege producer/consumer/monitor roles "
            "(PUBLIC revoked) for --schema, without connecting.",
        ),
    ] = False,
    role_prefix: Annotated[
        str, typer.Option("--role-prefix", help="With --print-grants: roles are PREFIX_producer...")
    ] = DEFAULT_ROLE_PREFIX,
    lock_timeout: Annotated[
        str,
        typer.Option(
            "--lock-timeout",
            metavar=MILLISECONDS,
            help="lock_timeout: a bare number is milliseconds (3000), or 500ms, 3s, 1m; "
            "exit 75 when hit.",
        ),
    ] = str(MIGRATE_LOCK_TIMEOUT_MS),
    dsn: DsnOpt = "",
    schema: SchemaOpt = checks.DEFAULT_SCHEMA,
    json_out: JsonOpt = False,
    header: HeaderOpt = False,
    fmt: FormatOpt = Format.auto,
) -> None:
    """Create or upgrade the pgq schema. Safe to run again; concurrent runs take turns."""
    render.plain_header(header)
    from ..core import migrate as migrator  # psycopg: loaded when it runs, not for help

    fmt = render.resolve_format(fmt, json_out)
    with boundary():
        lock_timeout_ms = parse_milliseconds(lock_timeout, "--lock-timeout")
    if print_grants:
        with boundary():
            render.text(grant_sql(schema, role_prefix))
        return
    if print_sql:
        with boundary():
            render.text(migrator.pending_sql(schema, since))
        return
    with session("migrate", dsn, schema, lock_timeout_ms=lock_timeout_ms) as q:
        if list_:
            render.migrations(migrator.status(q.conn, schema), fmt)
            return
        applied = migrator.migrate(q.conn, schema)
        if fmt is Format.json:
            render.one(
                {
                    "schema": schema,
                    "applied": [{"version": m.version, "name": m.name} for m in applied],
                    "schema_version": migrator.schema_version(q.conn, schema),
                },
                fmt,
            )
    if applied:
        for m in applied:
            status(f"pgq: applied {m.filename}")
    else:
        status(f"pgq: schema {schema!r} is up to date")
