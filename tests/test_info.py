"""`pgq info`: where pgq is connected, which setting chose it, versions; never a password."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote

import psycopg
import pytest
from conftest import Cli
from psycopg import conninfo

from pgq_cli import __version__
from pgq_cli.core import migrate

INFO_FIELDS = [
    "source", "libpq_settings", "embedded_dir", "host", "port", "database", "user",
    "server_version", "schema", "schema_version", "migrations_pending", "pgq_version",
]


def _server(dsn: str) -> dict[str, Any]:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        assert row is not None
        return {"host": conn.info.host, "port": conn.info.port, "database": conn.info.dbname,
                "user": conn.info.user, "server_version": str(row[0]).split()[0]}


def test_info_json_says_where_and_which_setting_won(cli: Cli, db_dsn: str) -> None:
    result = cli("info", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert list(info) == INFO_FIELDS
    assert {k: info[k] for k in ("host", "port", "database", "user", "server_version")} == (
        _server(db_dsn)
    )
    latest = migrate.available()[-1].version
    assert (info["source"], info["schema"], info["schema_version"]) == ("PGQ_DSN", "pgq", latest)
    assert (info["migrations_pending"], info["pgq_version"]) == (0, __version__)
    assert (info["libpq_settings"], info["embedded_dir"]) == ([], None)


def test_info_plain_is_key_tab_value(cli: Cli, db_dsn: str) -> None:
    result = cli("info", "--format", "plain")
    assert result.exit_code == 0, result.stderr
    pairs = dict(line.split("\t", 1) for line in result.stdout.splitlines())
    assert list(pairs) == INFO_FIELDS
    assert pairs["source"] == "PGQ_DSN"
    assert pairs["database"] == conninfo.conninfo_to_dict(db_dsn)["dbname"]
    assert pairs["embedded_dir"] == ""


@pytest.mark.parametrize(("how", "source"), [("flag", "--dsn"), ("DATABASE_URL", "DATABASE_URL")])
def test_info_names_the_setting_that_won(db_dsn: str, how: str, source: str) -> None:
    if how == "flag":
        result = Cli("")("info", "--json", "--dsn", db_dsn)
    else:
        result = Cli("")("info", "--json", env={"DATABASE_URL": db_dsn})
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["source"] == source


def test_info_on_a_database_without_the_schema(empty_db_dsn: str) -> None:
    result = Cli(empty_db_dsn)("info", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["schema_version"] == 0
    assert info["migrations_pending"] == len(migrate.available())


def test_info_never_shows_the_password(db_dsn: str) -> None:
    """The test server trusts its clients, so a DSN with any password connects."""
    password = "Pa55-w0rd-in-the-dsn"
    params = conninfo.conninfo_to_dict(db_dsn)
    with_password = conninfo.make_conninfo(db_dsn, password=password)
    uri = (f"postgresql://{params['user']}:{quote(password)}@/{params['dbname']}"
           f"?host={quote(str(params.get('host', '')), safe='')}&port={params.get('port', 5432)}")
    for dsn in (with_password, uri):
        for args in (("info",), ("info", "--json"), ("--debug", "info", "--format", "table")):
            result = Cli(dsn)(*args)
            assert result.exit_code == 0, result.stderr
            assert password not in result.stdout + result.stderr
            assert "Pa55" not in result.stdout + result.stderr
        flag = Cli("")("info", "--dsn", dsn)
        assert flag.exit_code == 0
        assert password not in flag.stdout + flag.stderr
        assert "--dsn carries a password" in flag.stderr


def test_info_when_the_server_is_unreachable_is_one_line() -> None:
    result = Cli("postgresql://nobody@127.0.0.1:1/nodb?connect_timeout=2")("info")
    assert result.exit_code == 69
    assert result.stdout == ""
    assert result.stderr.startswith("pgq: error: could not connect")


def test_short_v_is_version(cli: Cli) -> None:
    assert cli("-V").stdout == cli("--version").stdout == f"pgq {__version__}\n"


def test_info_and_embedded_have_help(cli: Cli) -> None:
    info = " ".join(cli("info", "--help").stdout.split())
    assert "pgq info" in info and "--dsn" in info and "PGQ_DSN" in info and "--json" in info
    group = cli("embedded", "--help")
    assert group.exit_code == 0
    for command in ("status", "stop", "path"):
        assert command in group.stdout
    root = " ".join(cli("--help").stdout.split())
    assert "--no-embedded" in root and "-V" in root and "info" in root
