"""How a command's help reads: prose that reflows to the terminal, and its examples.

A command's docstring is prose paragraphs (wrapped at 100 columns in the source), then an
`Examples:` paragraph of one command per line:

    Send messages; print their msg ids.

    A producer that retries after exit 69 ...

    Examples:
      pgq send -q emails '{"to": "a@example.com"}'

Typer's rich help keeps the line breaks of every paragraph but the first, so at 80
columns the source's breaks and the terminal's both show (a ragged edge); its option
panels squeeze the help into a narrow column and cut long option names with an ellipsis;
and it shows `<bool>` where a flag's value would go, though a flag takes none. `tidy`
switches every command to click's plain layout (an option list, help at most 78 columns
wide on any terminal), joins each prose paragraph into one line, which click wraps, and
moves the examples to the epilog, printed under the options line by line. Tests read the
examples with `examples` and parse each one, so none of them can stop working unnoticed.
"""

from __future__ import annotations

import inspect
from typing import Any

EXAMPLES_HEADING = "Examples:"


def split_help(text: str) -> tuple[str, list[str]]:
    """A docstring's prose, each paragraph on one line, and its example commands."""
    prose: list[str] = []
    examples: list[str] = []
    for paragraph in inspect.cleandoc(text).split("\n\n"):
        lines = paragraph.strip().splitlines()
        if lines and lines[0].strip() == EXAMPLES_HEADING:
            examples.extend(line.strip() for line in lines[1:] if line.strip())
        elif lines:
            prose.append(" ".join(line.strip() for line in lines))
    return "\n\n".join(prose), examples


def examples(command: Any) -> list[str]:
    """The example commands of a click command (after `tidy`, or before)."""
    epilog = getattr(command, "epilog", None) or ""
    if epilog.startswith(_EPILOG_START):
        return [line.strip() for line in epilog.splitlines()[2:]]
    return split_help(getattr(command, "help", None) or "")[1]


# `\b` on a line of its own: click prints the paragraph's lines as they are.
_EPILOG_START = f"\b\n{EXAMPLES_HEADING}"


def tidy(command: Any) -> None:
    """Plain help (click's layout: nothing cut at 80 columns), reflowed prose, the whole
    first paragraph as the summary `pgq --help` lists, and the examples in the epilog, for
    `command` and its subcommands. Cheap: string work on a few paragraphs, on every run."""
    command.rich_markup_mode = None
    if command.help and not (command.epilog or "").startswith(_EPILOG_START):
        prose, found = split_help(command.help)
        command.help = prose
        # Click would cut a summary it makes itself at 45 characters.
        command.short_help = command.short_help or prose.split("\n\n")[0]
        if found:
            command.epilog = "\n".join([_EPILOG_START, *(f"  {line}" for line in found)])
    for subcommand in getattr(command, "commands", {}).values():
        tidy(subcommand)
