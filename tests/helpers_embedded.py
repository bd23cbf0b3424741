"""Running the installed `pgq` as a new user would: a fresh HOME, a chosen environment.

The embedded server pgq may start lives under that HOME (`~/.local/share/pgq/pgdata`), so a
test can tell whether one was started: its data directory exists, or a postgres process
names it. `FreshHome` stops any server found there and deletes the HOME on exit.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from pgq_cli.core import embedded

# Environment a fresh HOME starts from: nothing of pgq's, libpq's or XDG's, PATH as given.
KEPT_ENV = ("LANG", "LC_ALL", "TZ")


def postgres_processes_under(path: Path) -> list[int]:
    """Pids of processes whose command line names `path` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if "postgres" in cmdline and str(path) in cmdline:
            found.append(int(entry.name))
    return found


class FreshHome:
    """A new, short HOME (the server's socket lives under it: 108-byte limit)."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="pgqh"))
        self.data_dir = self.home / ".local" / "share" / "pgq" / "pgdata"

    def env(self, path: str = "/usr/bin:/bin", **extra: str) -> dict[str, str]:
        base = {name: os.environ[name] for name in KEPT_ENV if name in os.environ}
        return {**base, "PATH": path, "HOME": str(self.home), **extra}

    def run(self, pgq: str, *args: str, env: dict[str, str], stdin: str | None = None
            ) -> subprocess.CompletedProcess[str]:
        return subprocess.run([pgq, *args], input=stdin, env=env, capture_output=True,
                              text=True, timeout=120, cwd=self.home)

    def __enter__(self) -> FreshHome:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        embedded.stop(self.data_dir)
        shutil.rmtree(self.home, ignore_errors=True)
