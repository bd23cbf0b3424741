"""Secrets: a password in --dsn, PGQ_DSN or DATABASE_URL never appears in any output, error,
--debug traceback or --help; --dsn with a password draws a warning.

Wrong and right passwords need a server that checks them, so those cases run on a private
server (helpers_server) whose pg_hba.conf asks this test's role for a password. The same
role-with-password runs against the shared server too (PGQ_TEST_DSN or embedded), where
the password must stay hidden on success and on errors after login.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import psycopg
import pytest
from conftest import Cli, CliResult, PgServer
from helpers_server import RestartableServer
from psycopg import conninfo, sql

WARNING = "--dsn carries a password"
# Hard cases for masking: URI-reserved characters, a space and a quote.
PASSWORD = f"S3cr@t/:{secrets.token_hex(6)} 'x"


def _uri(dsn: str, password: str) -> str:
    info = conninfo.conninfo_to_dict(dsn)
    host = str(info.get("host", "localhost"))
    return (f"postgresql://{quote(str(info['user']), safe='')}:{quote(password, safe='')}"
            f"@/{info['dbname']}?host={quote(host, safe='')}&port={info.get('port', 5432)}")


def _forms(dsn: str, password: str) -> dict[str, str]:
    """The same DSN with the password as URI userinfo, as a query parameter, as key=value."""
    info = conninfo.conninfo_to_dict(dsn)
    uri = _uri(dsn, password)
    host = quote(str(info.get("host", "localhost")), safe="")
    query = (f"postgresql:///{info['dbname']}?host={host}&port={info.get('port', 5432)}"
             f"&user={info['user']}&password={quote(password, safe='')}")
    keyvalue = conninfo.make_conninfo(dsn, password=password)
    return {"uri": uri, "query": query, "keyvalue": keyvalue}


def _assert_hidden(result: CliResult, *passwords: str) -> None:
    for text in (result.stdout, result.stderr):
        for password in passwords:
            for shape in {password, quote(password, safe=""), quote(password)}:
                assert shape not in text, f"password leaked: {text!r}"


def _run(dsn: str, source: str, *args: str, debug: bool = False) -> CliResult:
    """Run pgq with the DSN given through --dsn, PGQ_DSN or DATABASE_URL."""
    env = {"PGQ_DSN": ""}
    pre = ["--debug"] if debug else []
    if source == "--dsn":
        return Cli("")(*pre, *args, "--dsn", dsn, env=env)
    env[source] = dsn
    return Cli("")(*pre, *args, env=env)


def _role(admin_dsn: str, dbname: str, password: str) -> Iterator[str]:
    name = f"pgqt_{uuid.uuid4().hex[:10]}_secret"
    with psycopg.connect(admin_dsn, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
            sql.Identifier(name), sql.Literal(password)))
    try:
        with psycopg.connect(conninfo.make_conninfo(admin_dsn, dbname=dbname),
                             autocommit=True) as db:
            db.execute(sql.SQL("GRANT USAGE ON SCHEMA pgq TO {0}; "
                               "GRANT SELECT, INSERT ON ALL TABLES IN SCHEMA pgq TO {0}; "
                               "GRANT USAGE ON ALL SEQUENCES IN SCHEMA pgq TO {0}")
                       .format(sql.Identifier(name)))
        yield name
    finally:
        # Its grants live in that database: DROP OWNED there revokes them, then the role goes.
        with psycopg.connect(conninfo.make_conninfo(admin_dsn, dbname=dbname),
                             autocommit=True) as db:
            db.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(name)))
        with psycopg.connect(admin_dsn, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(name)))


# ------------------------------------------------------- a server that checks passwords


@pytest.fixture(scope="module")
def checked() -> Iterator[dict[str, str]]:
    """A private server where this module's role must give its password."""
    with RestartableServer() as server:
        dsn = server.migrated_database()
        dbname = str(conninfo.conninfo_to_dict(dsn)["dbname"])
        roles = _role(server.admin_dsn, dbname, PASSWORD)
        role = next(roles)
        try:
            server.require_password(role)
            yield {"dsn": conninfo.make_conninfo(dsn, user=role), "role": role}
        finally:
            # Drop the role while the server still runs.
            for _ in roles:
                pass


SOURCES = ["--dsn", "PGQ_DSN", "DATABASE_URL"]


@pytest.mark.parametrize("form", ["uri", "query", "keyvalue"])
@pytest.mark.parametrize("source", SOURCES)
def test_right_password_works_and_is_never_shown(checked: dict[str, str], source: str,
                                                 form: str) -> None:
    dsn = _forms(checked["dsn"], PASSWORD)[form]
    result = _run(dsn, source, "stats", "--json")
    assert result.exit_code == 0, result.stderr
    _assert_hidden(result, PASSWORD)
    assert (WARNING in result.stderr) == (source == "--dsn")


@pytest.mark.parametrize("debug", [False, True])
@pytest.mark.parametrize("form", ["uri", "query", "keyvalue"])
@pytest.mark.parametrize("source", SOURCES)
def test_wrong_password_exits_78_and_shows_neither_password(
    checked: dict[str, str], source: str, form: str, debug: bool
) -> None:
    wrong = f"Wr0ng@{secrets.token_hex(6)}"
    result = _run(_forms(checked["dsn"], wrong)[form], source, "stats", debug=debug)
    assert result.exit_code == 78, result.stderr
    assert result.stdout == ""
    _assert_hidden(result, wrong, PASSWORD)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("pgq: error: ") and "password" in last
    if not debug:
        assert len(result.stderr.strip().splitlines()) == (2 if source == "--dsn" else 1)
    else:
        assert "Traceback" in result.stderr  # the traceback is there, and masked


def test_installed_pgq_hides_the_password_in_a_debug_traceback(
    checked: dict[str, str], pgq_bin: str
) -> None:
    wrong = f"Wr0ng{secrets.token_hex(6)}"
    dsn = _forms(checked["dsn"], wrong)["uri"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGQ_")}
    done = subprocess.run([pgq_bin, "--debug", "send", '{"a": 1}', "--dsn", dsn], env=env,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 78
    assert "Traceback" in done.stderr
    assert wrong not in done.stdout + done.stderr


# ------------------------------------------------------------ the shared server, as well


@pytest.fixture
def shared_role(pg_server: PgServer, db_dsn: str) -> Iterator[str]:
    dbname = str(conninfo.conninfo_to_dict(db_dsn)["dbname"])
    for role in _role(pg_server.admin_dsn, dbname, PASSWORD):
        yield conninfo.make_conninfo(db_dsn, user=role)


@pytest.mark.parametrize("source", SOURCES)
def test_password_hidden_on_the_shared_server_on_success_and_on_errors(
    shared_role: str, source: str
) -> None:
    dsn = _forms(shared_role, PASSWORD)["uri"]
    results = [
        _run(dsn, source, "send", '{"a": 1}'),
        _run(dsn, source, "peek", "--json"),
        _run(dsn, source, "ack", "1", debug=True),  # no DELETE: 77, with a traceback
        _run(dsn, source, "stats", "--schema", "nope", debug=True),  # no schema: 78
        _run(dsn, source, "ack", dsn),  # the DSN pasted where an id goes: usage error
    ]
    assert [r.exit_code for r in results] == [0, 0, 77, 78, 2], [r.stderr for r in results]
    for result in results:
        _assert_hidden(result, PASSWORD)


def test_help_never_shows_the_password(shared_role: str) -> None:
    dsn = _forms(shared_role, PASSWORD)["uri"]
    for args in (["--help"], ["send", "--help"], ["claim", "--help"], ["migrate", "--help"]):
        for env in ({"PGQ_DSN": dsn}, {"DATABASE_URL": dsn}):
            result = Cli("")(*args, env=env)
            assert result.exit_code == 0
            _assert_hidden(result, PASSWORD)


@pytest.mark.parametrize("dsn", [
    "postgresql://u:{pw}@127.0.0.1:notaport/db",
    "postgresql://u:{pw}%ZZ@127.0.0.1/db",
    "postgresql://u:{pw}@[::1/db",
    "postgresql://u:{pw}@127.0.0.1/db?bogus=1",
    "postgresql://u:{pw}@127.0.0.1/db?sslmode={pw}",
    "host=127.0.0.1 password='{pw}",
    "host=127.0.0.1 password={pw} bogus=1",
    "host=127.0.0.1 password={pw} port={pw}",
])
@pytest.mark.parametrize("source", SOURCES)
def test_malformed_dsns_never_echo_the_password(dsn: str, source: str) -> None:
    """libpq and psycopg quote the DSN or its values in their errors: all masked."""
    password = f"Pw{secrets.token_hex(6)}"
    result = _run(dsn.format(pw=password), source, "stats", debug=True)
    assert result.exit_code == 78, result.stderr
    assert result.stdout == ""
    assert password not in result.stderr
