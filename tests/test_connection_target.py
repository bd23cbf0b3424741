"""Where pgq connects: no surprise server.

Any libpq setting counts as configuration, so the embedded server starts only when nothing
at all is configured, and `--no-embedded`/`PGQ_NO_EMBEDDED=1` turn that fallback off. The
end-to-end tests run the installed `pgq` with a fresh HOME and check that no embedded data
directory was created and no postgres process names that HOME.
"""

from __future__ import annotations

import json
from pathlib import Path

import psycopg
import pytest
from conftest import Cli
from helpers_embedded import FreshHome, postgres_processes_under
from psycopg import conninfo

from pgq_cli.core import connect
from pgq_cli.core.errors import ConfigError
from pgq_cli.core.exitcodes import ExitCode

LIBPQ_SETTINGS = ["PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE",
                  "PGSERVICEFILE"]


@pytest.mark.parametrize("name", LIBPQ_SETTINGS)
def test_each_libpq_setting_alone_is_configuration(name: str, tmp_path: Path) -> None:
    env = {name: "x", "PGQ_EMBEDDED_DIR": str(tmp_path / "pg")}
    target = connect.resolve(None, env)
    assert (target.source, target.dsn, target.embedded_dir) == ("libpq", "", None)
    assert target.libpq_settings == (name,)


def test_precedence_dsn_then_pgq_dsn_then_database_url_then_libpq() -> None:
    env = {"PGQ_DSN": "dbname=a", "DATABASE_URL": "dbname=b", "PGUSER": "u"}
    assert connect.resolve("dbname=c", env).source == "--dsn"
    assert connect.resolve(None, env).source == "PGQ_DSN"
    assert connect.resolve(None, {**env, "PGQ_DSN": ""}).source == "DATABASE_URL"
    libpq = connect.resolve(None, {"PGUSER": "u", "PGDATABASE": "d", "PGHOST": ""})
    assert (libpq.source, libpq.libpq_settings) == ("libpq", ("PGDATABASE", "PGUSER"))


def test_nothing_configured_is_the_embedded_server(tmp_path: Path) -> None:
    target = connect.resolve(None, {"PGQ_EMBEDDED_DIR": str(tmp_path / "pg")})
    assert (target.source, target.embedded_dir) == ("embedded", tmp_path / "pg")
    off = {"PGQ_EMBEDDED_DIR": str(tmp_path / "pg"), "PGQ_NO_EMBEDDED": "0"}
    assert connect.resolve(None, off).source == "embedded"


@pytest.mark.parametrize("value", ["1", "true", "YES", "on"])
def test_pgq_no_embedded_refuses_the_fallback(value: str) -> None:
    with pytest.raises(ConfigError) as refused:
        connect.resolve(None, {"PGQ_NO_EMBEDDED": value})
    assert refused.value.exit_code == ExitCode.CONFIG
    assert "embedded server is switched off" in refused.value.message


def test_the_switch_only_matters_when_nothing_is_configured() -> None:
    env = {"PGQ_NO_EMBEDDED": "1", "PGDATABASE": "d"}
    assert connect.resolve(None, env).source == "libpq"
    assert connect.resolve("dbname=x", {}, allow_embedded=False).source == "--dsn"
    with pytest.raises(ConfigError):
        connect.resolve(None, {}, allow_embedded=False)


def test_pgq_no_embedded_with_a_value_that_is_neither_on_nor_off() -> None:
    with pytest.raises(ConfigError, match="PGQ_NO_EMBEDDED='maybe'"):
        connect.resolve(None, {"PGQ_NO_EMBEDDED": "maybe"})


# ----------------------------------------------------------------------------- installed pgq


def _no_embedded_server(home: FreshHome) -> None:
    assert not home.data_dir.exists(), "an embedded server was set up"
    assert not (home.home / ".local").exists()
    assert postgres_processes_under(home.home) == []


def test_only_pgdatabase_and_pguser_use_libpq_never_the_embedded_server(
    pgq_bin: str, db_dsn: str
) -> None:
    """As psql users often have it: libpq's own defaults pick the server (its socket)."""
    params = conninfo.conninfo_to_dict(db_dsn)
    with FreshHome() as home:
        env = home.env(PGDATABASE=str(params["dbname"]), PGUSER=str(params["user"]))
        result = home.run(pgq_bin, "info", "--json", env=env)
        _no_embedded_server(home)
        assert "embedded" not in result.stderr
        if result.returncode == 0:
            info = json.loads(result.stdout)
            assert info["source"] == "libpq"
            assert info["libpq_settings"] == ["PGDATABASE", "PGUSER"]
            assert info["database"] == params["dbname"]
        else:
            # No server on libpq's default socket here, or another server without this
            # database: libpq's own error, as one line with a documented code.
            assert result.returncode in (ExitCode.UNAVAILABLE, ExitCode.CONFIG), result.stderr
            assert result.stderr.startswith("pgq: error: ")
            assert len(result.stderr.splitlines()) == 1


def test_libpq_environment_alone_reaches_the_server(pgq_bin: str, db_dsn: str) -> None:
    params = conninfo.conninfo_to_dict(db_dsn)
    libpq_env = {
        "PGHOST": str(params.get("host", "")),
        "PGPORT": str(params.get("port", "5432")),
        "PGUSER": str(params["user"]),
        "PGDATABASE": str(params["dbname"]),
    }
    with FreshHome() as home:
        env = home.env(**libpq_env)
        sent = home.run(pgq_bin, "send", '{"via":"libpq"}', env=env)
        assert sent.returncode == 0, sent.stderr
        migrated = home.run(pgq_bin, "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        assert "up to date" in migrated.stderr
        _no_embedded_server(home)
    with psycopg.connect(db_dsn) as conn:
        row = conn.execute(
            "SELECT payload FROM pgq.messages WHERE msg_id = %s", (int(sent.stdout),)
        ).fetchone()
    assert row == ({"via": "libpq"},)


@pytest.mark.parametrize("switch", ["flag", "env"])
def test_switched_off_with_nothing_configured_exits_78_with_one_line(
    pgq_bin: str, switch: str
) -> None:
    with FreshHome() as home:
        if switch == "flag":
            result = home.run(pgq_bin, "--no-embedded", "migrate", env=home.env())
        else:
            result = home.run(pgq_bin, "migrate", env=home.env(PGQ_NO_EMBEDDED="1"))
        assert result.returncode == ExitCode.CONFIG
        assert result.stdout == ""
        assert result.stderr.startswith("pgq: error: no database configured")
        assert len(result.stderr.splitlines()) == 1
        _no_embedded_server(home)


def test_no_embedded_flag_leaves_a_configured_dsn_alone(cli: Cli) -> None:
    result = cli("--no-embedded", "send", "{}")
    assert result.exit_code == 0, result.stderr
    assert int(result.stdout) > 0


def test_an_unreachable_server_names_the_setting_that_chose_it(pgq_bin: str) -> None:
    with FreshHome() as home:
        libpq = home.run(pgq_bin, "info", env=home.env(PGPORT="1", PGUSER="nobody"))
        assert libpq.returncode == ExitCode.UNAVAILABLE
        assert libpq.stderr.endswith("— check libpq's PGPORT/PGUSER and that the server is up\n")
        dsn = home.run(pgq_bin, "info", env=home.env(PGQ_DSN="postgresql://x@127.0.0.1:1/d"))
        assert dsn.returncode == ExitCode.UNAVAILABLE
        assert dsn.stderr.endswith("— check PGQ_DSN and that the server is up\n")
        _no_embedded_server(home)
