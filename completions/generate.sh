#!/bin/sh
# Regenerate the shell completion scripts from the installed `pgq` (Typer generates them).
# tests/test_completions.py fails when these files drift from what pgq generates.
set -eu
cd "$(dirname "$0")"
PGQ="${PGQ:-pgq}"  # e.g. PGQ=$PWD/.venv/bin/pgq
_PGQ_COMPLETE=source_bash "$PGQ" > pgq.bash
_PGQ_COMPLETE=source_zsh "$PGQ" > pgq.zsh
_PGQ_COMPLETE=source_fish "$PGQ" > pgq.fish
