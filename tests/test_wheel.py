"""The built wheel, installed into a fresh virtual environment, works on its own.

The test suite otherwise runs against an editable install, which reads modules and
migrations straight from the checkout and so hides a package or a `.sql` file that never
made it into the wheel. Here the wheel is built (`pip wheel . --no-deps`) from a copy of
the repository's files (no stale `build/` directory can leak in), installed with
`--no-deps` into a new venv, and `pgq` is run from that venv as a user would.

The new venv gets the dependencies (psycopg, typer, …) by a `.pth` line naming this test
environment's site-packages: fast and offline. A plain path line does not run the `.pth`
files in that directory, so the editable install's import hook stays out, and a test
checks that `pgq_cli` is imported from the wheel.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import UNREACHABLE_DSN

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
VERSION = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
MIGRATIONS = sorted(path.name for path in (REPO / "sql").glob("*.sql"))


@dataclass(frozen=True)
class Installed:
    wheel: Path
    venv: Path

    @property
    def pgq(self) -> str:
        return str(self.venv / "bin" / "pgq")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")


def _run(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None,
         timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


def _copy_repository_files(target: Path) -> None:
    listed = _run("git", "ls-files", "--cached", "--others", "--exclude-standard", cwd=REPO)
    assert listed.returncode == 0, listed.stderr
    for name in listed.stdout.splitlines():
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    root = tmp_path_factory.mktemp("wheel")
    source, dist, venv = root / "src", root / "dist", root / "venv"
    _copy_repository_files(source)

    built = _run(sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-w",
                 str(dist), timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = dist.glob("pgq_cli-*.whl")

    created = _run(sys.executable, "-m", "venv", str(venv))
    assert created.returncode == 0, created.stderr
    purelib = _run(str(venv / "bin" / "python"), "-c",
                   "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip()
    ours = {sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]}
    (Path(purelib) / "test_environment_dependencies.pth").write_text("\n".join(sorted(ours)))

    pip_install = _run(str(venv / "bin" / "python"), "-m", "pip", "install", "--no-deps",
                       "--no-index", str(wheel))
    assert pip_install.returncode == 0, pip_install.stdout + pip_install.stderr
    yield Installed(wheel, venv)


def _user_env(**extra: str) -> dict[str, str]:
    """The test's environment (PGQ_* already scrubbed by conftest) plus `extra`."""
    return {**os.environ, **extra}


def test_wheel_holds_every_module_and_every_migration(installed: Installed) -> None:
    names = set(zipfile.ZipFile(installed.wheel).namelist())
    modules = {
        path.relative_to(REPO).as_posix()
        for path in (REPO / "pgq_cli").rglob("*.py")
        if "__pycache__" not in path.parts
    }
    for subpackage in ("core", "ops", "bench", "cli"):
        assert f"pgq_cli/{subpackage}/__init__.py" in modules, subpackage
    assert modules - names == set(), "modules missing from the wheel"
    assert MIGRATIONS, "no migrations in sql/"
    assert {f"pgq_cli/sql/{name}" for name in MIGRATIONS} <= names, sorted(names)


def test_installed_package_is_the_wheel_not_the_checkout(installed: Installed) -> None:
    result = _run(installed.python, "-c", "import pgq_cli; print(pgq_cli.__file__)",
                  cwd=installed.venv)
    assert result.returncode == 0, result.stderr
    assert Path(result.stdout.strip()).is_relative_to(installed.venv), result.stdout


def test_installed_pgq_reports_its_version(installed: Installed) -> None:
    result = _run(installed.pgq, "--version", cwd=installed.venv, env=_user_env())
    assert (result.returncode, result.stdout, result.stderr) == (0, f"pgq {VERSION}\n", "")


def test_installed_pgq_prints_the_shipped_migrations_without_connecting(
    installed: Installed,
) -> None:
    # The DSN points nowhere: --sql must not connect.
    result = _run(installed.pgq, "migrate", "--sql", cwd=installed.venv,
                  env=_user_env(PGQ_DSN=UNREACHABLE_DSN))
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    for name in MIGRATIONS:
        assert f"-- {name}" in result.stdout, name
    assert "CREATE TABLE messages" in result.stdout
    assert result.stdout.rstrip().endswith("COMMIT;"), result.stdout[-200:]


def test_installed_pgq_runs_the_demo_on_an_empty_database(
    installed: Installed, empty_db_dsn: str
) -> None:
    result = _run(installed.pgq, "demo", "--dsn", empty_db_dsn, cwd=installed.venv,
                  env=_user_env())
    assert result.returncode == 0, result.stdout + result.stderr
    # The demo migrated from the wheel's own sql files, then claimed in priority order.
    assert "0001_create_messages.sql" in result.stdout
    assert "refused: lease is not current" in result.stdout
    assert "Traceback" not in result.stderr
