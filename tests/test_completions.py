"""The committed completion scripts match what pgq generates, and they really complete."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

COMPLETIONS = Path(__file__).resolve().parent.parent / "completions"
SCRIPTS = {"bash": "pgq.bash", "zsh": "pgq.zsh", "fish": "pgq.fish"}


def _run_pgq(pgq_bin: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [pgq_bin], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("shell", sorted(SCRIPTS))
def test_committed_script_matches_generated(shell: str, pgq_bin: str) -> None:
    generated = _run_pgq(pgq_bin, {"_PGQ_COMPLETE": f"source_{shell}"})
    committed = (COMPLETIONS / SCRIPTS[shell]).read_text()
    assert generated == committed, (
        f"completions/{SCRIPTS[shell]} is stale: run `PGQ={pgq_bin} completions/generate.sh`"
    )


def test_bash_script_completes_commands_and_options(pgq_bin: str) -> None:
    bash = shutil.which("bash")
    assert bash is not None
    script = COMPLETIONS / "pgq.bash"
    env = {**os.environ, "PATH": f"{Path(pgq_bin).parent}{os.pathsep}{os.environ['PATH']}"}

    def complete(*words: str) -> list[str]:
        words_literal = " ".join(f"'{w}'" for w in words)
        program = (
            f"source '{script}'; COMP_WORDS=({words_literal}); "
            f"COMP_CWORD={len(words) - 1}; _pgq_completion pgq; "
            'printf "%s\\n" "${COMPREPLY[@]}"'
        )
        result = subprocess.run(
            [bash, "-c", program], env=env, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stderr
        return result.stdout.split()

    assert "claim" in complete("pgq", "cl")
    assert "send" not in complete("pgq", "cl")
    assert {"--qty", "--vt", "--fail-if-empty"} <= set(complete("pgq", "claim", "--"))
