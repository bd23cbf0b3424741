"""The embedded PostgreSQL: `pgq embedded status|stop|path` on a real server in a fresh
HOME, and starting it as root under cron's PATH (/usr/bin:/bin, where useradd is missing).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
import uuid
from pathlib import Path

import psycopg
import pytest
from helpers_embedded import FreshHome, postgres_processes_under

from pgq_cli.core import embedded, migrate
from pgq_cli.core.errors import ConfigError
from pgq_cli.core.exitcodes import ExitCode

CRON_PATH = "/usr/bin:/bin"
as_root = pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root runs the server as "
    "another system user"
)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_embedded_path_status_stop_on_a_real_server(pgq_bin: str) -> None:
    with FreshHome() as home:
        env = home.env()
        path = home.run(pgq_bin, "embedded", "path", env=env)
        assert (path.returncode, path.stdout) == (0, f"{home.data_dir}\n")
        assert not home.data_dir.exists()  # path never creates anything

        before = home.run(pgq_bin, "embedded", "status", env=env)
        assert before.returncode == ExitCode.NOTHING_DONE
        assert "running\tno\n" in before.stdout
        assert "is not running" in before.stderr
        assert not home.data_dir.exists()  # nor does status

        started = home.run(pgq_bin, "migrate", env=env)
        assert started.returncode == 0, started.stderr
        assert "embedded PostgreSQL" in started.stderr

        running = home.run(pgq_bin, "embedded", "status", "--json", env=env)
        assert running.returncode == 0, running.stderr
        status = json.loads(running.stdout)
        assert status["running"] is True and status["state"] == "ready"
        assert status["data_dir"] == str(home.data_dir)
        assert _alive(status["pid"])
        assert status["pid"] in postgres_processes_under(home.home)
        assert status["socket_dir"] and isinstance(status["port"], int)
        with psycopg.connect(status["dsn"]) as conn:  # the DSN it prints reaches the server
            applied = conn.execute("SELECT count(*) FROM pgq.pgq_migrations").fetchone()
            assert applied == (len(migrate.available()),)  # every migration file
        plain = home.run(pgq_bin, "embedded", "status", env=env)
        assert f"pid\t{status['pid']}\n" in plain.stdout and "running\tyes\n" in plain.stdout

        stopped = home.run(pgq_bin, "embedded", "stop", env=env)
        assert stopped.returncode == 0, stopped.stderr
        assert f"stopped the embedded PostgreSQL (pid {status['pid']})" in stopped.stderr
        assert not _alive(status["pid"])
        assert postgres_processes_under(home.home) == []
        assert not (home.data_dir / "postmaster.pid").exists()

        again = home.run(pgq_bin, "embedded", "stop", env=env)
        assert (again.returncode, again.stdout) == (0, "")
        assert "is not running" in again.stderr
        after = home.run(pgq_bin, "embedded", "status", "--json", env=env)
        assert after.returncode == ExitCode.NOTHING_DONE
        assert json.loads(after.stdout)["running"] is False

        # The data survives a stop: the next command starts the same server again.
        restarted = home.run(pgq_bin, "migrate", env=env)
        assert restarted.returncode == 0, restarted.stderr
        assert "up to date" in restarted.stderr


def test_embedded_commands_follow_pgq_embedded_dir(pgq_bin: str) -> None:
    with FreshHome() as home:
        elsewhere = home.home / "elsewhere"
        env = home.env(PGQ_EMBEDDED_DIR=str(elsewhere))
        assert home.run(pgq_bin, "embedded", "path", env=env).stdout == f"{elsewhere}\n"
        status = home.run(pgq_bin, "embedded", "status", "--json", env=env)
        assert json.loads(status.stdout)["data_dir"] == str(elsewhere)


def test_a_stale_pid_file_is_not_a_running_server(tmp_path: Path) -> None:
    """After a crash postmaster.pid stays behind: status and stop must not trust it."""
    probe = subprocess.Popen(["true"])  # its pid is certainly gone once it is reaped
    probe.wait()
    (tmp_path / "postmaster.pid").write_text(f"{probe.pid}\n{tmp_path}\n0\n5432\n/tmp\n\n\nready\n")
    found = embedded.status(tmp_path)
    assert (found.running, found.pid, found.port, found.dsn) == (False, probe.pid, 5432, None)
    assert embedded.stop(tmp_path) is None


def test_root_under_crons_path_starts_the_embedded_server(pgq_bin: str) -> None:
    """cron runs jobs with PATH=/usr/bin:/bin: the zero-configuration path must work there."""
    with FreshHome() as home:
        env = home.env(path=CRON_PATH)
        migrated = home.run(pgq_bin, "migrate", env=env)
        assert migrated.returncode == 0, migrated.stderr
        sent = home.run(pgq_bin, "send", "-p", "7", '{"cron":true}', env=env)
        assert sent.returncode == 0, sent.stderr
        claimed = home.run(pgq_bin, "claim", "--json", env=env)
        assert json.loads(claimed.stdout)["payload"] == {"cron": True}


def test_a_failed_start_names_its_cause_in_one_line(pgq_bin: str) -> None:
    with FreshHome() as home:
        blocker = home.home / "a-file"
        blocker.write_text("not a directory")
        env = home.env(PGQ_EMBEDDED_DIR=str(blocker / "pgdata"))
        result = home.run(pgq_bin, "migrate", env=env)
        assert result.returncode == ExitCode.UNAVAILABLE
        error = result.stderr.splitlines()[-1]
        assert error.startswith("pgq: error: could not start the embedded PostgreSQL")
        assert "FileExistsError" in error or "NotADirectoryError" in error, error
        assert "see its log" not in error  # there is no log to see


@as_root
def test_root_creates_the_missing_system_user_with_useradd_from_sbin() -> None:
    """cron's PATH lacks /usr/sbin; useradd is found there all the same."""
    if shutil.which("useradd", path="/usr/sbin:/sbin") is None:
        pytest.skip("no useradd in /usr/sbin or /sbin on this system")
    name = f"pgqt{uuid.uuid4().hex[:8]}"
    try:
        embedded.ensure_system_user(name, search_path=CRON_PATH)
        assert pwd.getpwnam(name).pw_name == name
        embedded.ensure_system_user(name, search_path=CRON_PATH)  # exists: a no-op
    finally:
        userdel = shutil.which("userdel", path="/usr/sbin:/sbin")
        assert userdel is not None
        subprocess.run([userdel, "-r", name], capture_output=True, check=False)


@as_root
def test_root_without_useradd_says_exactly_what_is_missing() -> None:
    name = f"pgqt{uuid.uuid4().hex[:8]}"
    with pytest.raises(ConfigError) as refused:
        embedded.ensure_system_user(name, search_path="/nonexistent", admin_dirs=())
    assert refused.value.exit_code == ExitCode.CONFIG
    assert f"system user {name!r}" in refused.value.message
    assert "useradd is not on PATH (/nonexistent)" in refused.value.message
    assert f"useradd -s /bin/bash {name}" in refused.value.hint
    with pytest.raises(KeyError):
        pwd.getpwnam(name)
