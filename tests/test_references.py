"""No comment, doc or help text names a file that is not in the repository.

The repo must stand alone: a reader who follows a reference to a `.md`, `.py` or `.sql`
file has to find it here. This scans every tracked text file (py, md, sql, toml, sh) for
path-like references and resolves each one against the repository's own files.
"""

from __future__ import annotations

import fnmatch
import posixpath
import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCANNED_SUFFIXES = (".py", ".md", ".sql", ".toml", ".sh")

# A path-like word ending in .md, .py or .sql: optional ./ or ../, directories, a name
# (which may hold * as a glob). Not preceded by a word character, a slash, a dot, a colon
# or ~, so nothing inside a URL (https://host/x.md) or a home path (~/x.py) matches.
REFERENCE = re.compile(
    r"(?<![\w/.:~-])((?:\.{1,2}/)*(?:[\w.*-]+/)*[\w*-]+\.(?:md|py|sql))(?![\w/-])"
)

# Names that look like files but are not references to a file of this repository.
ALLOWED = {
    # Python modules, not files: psycopg's SQL composition module, and the package name
    # under which the sql/ folder ships in the wheel (pyproject.toml maps it).
    "psycopg.sql": "a module of psycopg",
    "pgq_cli.sql": "the package the top-level sql/ folder ships as",
    # The naming rule of migrations, spelled as an example name (the migrator's docstring
    # and the README describe the pattern with it).
    "NNNN_what_it_does.sql": "the migration file naming pattern",
    "sql/NNNN_what_it_does.sql": "the migration file naming pattern",
}

WHEEL_SQL = "pgq_cli/sql/"

# In a glob, NNNN stands for a migration's four-digit number.
MIGRATION_NUMBER = "[0-9][0-9][0-9][0-9]"


def repository_files() -> list[str]:
    """Tracked files, plus new ones not yet committed (but never git-ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.splitlines()
    return [name for name in listed if (REPO / name).is_file()]


def resolves(reference: str, referring_file: str, files: list[str]) -> bool:
    """Whether `reference`, written in `referring_file`, names a file of the repository.

    A bare name must be some file's name; a path must exist relative to the referring
    file, to the repository root, or as the tail of a path (`core/queue.py` inside
    docs about `pgq_cli/`). `*` and NNNN are globs and must match at least one file.
    """
    if reference in ALLOWED:
        return True
    pattern = reference.replace("NNNN", MIGRATION_NUMBER)
    if "/" not in pattern:
        names = [posixpath.basename(name) for name in files]
        return bool(fnmatch.filter(names, pattern))
    candidates = {
        posixpath.normpath(posixpath.join(posixpath.dirname(referring_file), pattern)),
        posixpath.normpath(pattern),
    }
    if pattern.startswith(WHEEL_SQL):
        # pyproject.toml ships the top-level sql/ folder in the wheel as pgq_cli/sql.
        candidates.add("sql/" + pattern.removeprefix(WHEEL_SQL))
    for candidate in candidates:
        if fnmatch.filter(files, candidate):
            return True
    tail = posixpath.normpath(pattern)
    return any(fnmatch.fnmatch(name, f"*/{tail}") for name in files)


def dangling_references(text: str, referring_file: str, files: list[str]) -> list[str]:
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for match in REFERENCE.finditer(line):
            if not resolves(match.group(1), referring_file, files):
                found.append(f"{referring_file}:{number}: {match.group(1)}")
    return found


def test_no_reference_names_a_file_that_is_not_in_the_repository() -> None:
    files = repository_files()
    scanned = [name for name in files if name.endswith(SCANNED_SUFFIXES)]
    assert len(scanned) > 20, scanned  # the scan really read the tree
    dangling = []
    for name in scanned:
        dangling += dangling_references((REPO / name).read_text(encoding="utf-8"), name, files)
    assert dangling == [], "\n".join(dangling)


# Built by concatenation so that this file does not itself hold the dangling names.
MISSING_DOC = "DESIGN" + ".md"
MISSING_TEST = "tests/test_claim_plan" + ".py"


@pytest.mark.parametrize(
    "text",
    [
        f"see {MISSING_DOC}, section 2",
        f"# {MISSING_TEST} forces that plan",
        "run `bench/no_such_script" + ".py` first",
        "migrations live in `sql/9999_" + "*.sql`",  # a glob that matches nothing
    ],
)
def test_the_scan_reports_a_missing_file(text: str) -> None:
    files = repository_files()
    assert len(dangling_references(text, "README.md", files)) == 1


@pytest.mark.parametrize(
    "text",
    [
        "see [the design](docs/design.md) and bench/README.md",
        "the forced-plan test in tests/test_concurrency.py",
        "`core/queries.py` holds the claim",  # a path inside pgq_cli/
        "numbered files `sql/NNNN_*.sql`",
        "https://example.org/elsewhere/NOTES.md is a link, not a file here",
    ],
)
def test_the_scan_accepts_files_that_exist(text: str) -> None:
    files = repository_files()
    assert dangling_references(text, "README.md", files) == []
