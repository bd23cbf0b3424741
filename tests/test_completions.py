"""The committed completion scripts match what pgq and pgq-cli generate, and they really
complete: bash runs each script, as a shell would on Tab."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

COMPLETIONS = Path(__file__).resolve().parent.parent / "completions"
SHELLS = ("bash", "zsh", "fish")
# Each program, and the variable that asks it for completion.
PROGRAMS = {"pgq": "_PGQ_COMPLETE", "pgq-cli": "_PGQ_CLI_COMPLETE"}


def _program(pgq_bin: str, name: str) -> str:
    path = Path(pgq_bin).parent / name
    assert path.exists(), f"{name} console script not installed"
    return str(path)


def _run(program: str, env: dict[str, str]) -> str:
    result = subprocess.run(
        [program], env={**os.environ, **env}, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


@pytest.mark.parametrize("name", sorted(PROGRAMS))
@pytest.mark.parametrize("shell", SHELLS)
def test_committed_script_matches_generated(shell: str, name: str, pgq_bin: str) -> None:
    program = _program(pgq_bin, name)
    generated = _run(program, {PROGRAMS[name]: f"{shell}_source"})
    committed = (COMPLETIONS / f"{name}.{shell}").read_text()
    assert generated == committed, (
        f"completions/{name}.{shell} is stale: run `PGQ={pgq_bin} completions/generate.sh`"
    )
    # Typer's own spelling of the instruction gives the same script.
    assert _run(program, {PROGRAMS[name]: f"source_{shell}"}) == generated


@pytest.mark.parametrize("shell", SHELLS)
def test_pgq_cli_registers_only_its_own_name(shell: str) -> None:
    """Sourcing pgq-cli's script must not replace the completion of another `pgq`
    (PgQueuer installs one)."""
    script = (COMPLETIONS / f"pgq-cli.{shell}").read_text()
    assert "_PGQ_CLI_COMPLETE" in script and "_PGQ_COMPLETE=" not in script
    registered = {
        "bash": "complete -o default -F _pgq_cli_completion pgq-cli",
        "zsh": "compdef _pgq_cli_completion pgq-cli",
        "fish": "complete --command pgq-cli ",
    }[shell]
    assert registered in script
    assert " pgq\n" not in script and " pgq " not in script.replace("pgq-cli", "")


def test_pgq_cli_completes_in_clicks_spelling(pgq_bin: str) -> None:
    """The instruction as click documents it (`bash_complete`), with COMP_WORDS as the
    bash script passes them."""
    out = _run(
        _program(pgq_bin, "pgq-cli"),
        {"_PGQ_CLI_COMPLETE": "bash_complete", "COMP_WORDS": "pgq-cli st", "COMP_CWORD": "1"},
    )
    assert out.split() == ["stats"]


def _bash_complete(pgq_bin: str, name: str, *words: str) -> list[str]:
    """Source completions/NAME.bash in a real bash, set the words as the shell would on
    Tab, call the completion function and return what it offers."""
    bash = shutil.which("bash")
    assert bash is not None
    script = COMPLETIONS / f"{name}.bash"
    env = {**os.environ, "PATH": f"{Path(pgq_bin).parent}{os.pathsep}{os.environ['PATH']}"}
    words_literal = " ".join(f"'{w}'" for w in words)
    function = "_" + name.replace("-", "_") + "_completion"
    program = (
        f"source '{script}'; "
        f'[ "$(complete -p {name})" = "complete -o default -F {function} {name}" ] || exit 9; '
        f"COMP_WORDS=({words_literal}); COMP_CWORD={len(words) - 1}; {function} {name}; "
        'printf "%s\\n" "${COMPREPLY[@]}"'
    )
    result = subprocess.run(
        [bash, "-c", program], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, (result.returncode, result.stderr)
    return result.stdout.split()


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_bash_script_completes_commands_and_options(pgq_bin: str, name: str) -> None:
    assert "claim" in _bash_complete(pgq_bin, name, name, "cl")
    assert "send" not in _bash_complete(pgq_bin, name, name, "cl")
    assert {"--qty", "--vt", "--fail-if-empty"} <= set(
        _bash_complete(pgq_bin, name, name, "claim", "--")
    )
    assert _bash_complete(pgq_bin, name, name, "queue", "con") == ["config"]


@pytest.mark.parametrize("name", sorted(PROGRAMS))
def test_bash_script_completes_state_values(pgq_bin: str, name: str) -> None:
    assert _bash_complete(pgq_bin, name, name, "peek", "--state", "") == [
        "ready", "leased", "expired", "delayed", "dead", "all",
    ]
    assert _bash_complete(pgq_bin, name, name, "peek", "--state", "de") == ["delayed", "dead"]
    # purge takes one state at a time (repeatable): no "all".
    assert _bash_complete(pgq_bin, name, name, "purge", "--state", "") == [
        "ready", "leased", "expired", "delayed", "dead",
    ]
