#!/bin/sh
# Regenerate the shell completion scripts from the installed `pgq` and `pgq-cli` (Typer
# generates them; each registers its own name: pgq-cli's never replaces another `pgq`'s).
# tests/test_completions.py fails when these files drift from what they generate.
set -eu
cd "$(dirname "$0")"
PGQ="${PGQ:-pgq}"  # e.g. PGQ=$PWD/.venv/bin/pgq
PGQ_CLI="${PGQ_CLI:-$(dirname "$PGQ")/pgq-cli}"
[ -x "$PGQ_CLI" ] || PGQ_CLI=pgq-cli
for shell in bash zsh fish; do
    _PGQ_COMPLETE="${shell}_source" "$PGQ" > "pgq.$shell"
    _PGQ_CLI_COMPLETE="${shell}_source" "$PGQ_CLI" > "pgq-cli.$shell"
done
