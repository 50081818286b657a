"""Help text of leadpipe's command lines as a terminal of any width shows it.

Guarantees: a command's help is its docstring (or ``help=``) with each
paragraph on one line, so that the terminal wraps it: typer's rich help keeps
every line break of a paragraph where the source happened to wrap it, which
broke lines mid-sentence on a terminal narrower than the source, and showed a
first paragraph of several lines as such in a group's list of commands. That
list shows a command's first paragraph: every command starts with a one-line
summary (the test suite checks each command of each leadpipe command line).
A group built with ``Group`` reflows its commands, a lone command is built
with ``Command``.
"""

from __future__ import annotations

import inspect
from typing import Any

from typer.core import TyperCommand, TyperGroup


def reflowed(text: str | None) -> str | None:
    """``text`` with each paragraph (lines between blank lines) on one line."""
    if not text:
        return text
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(text).split("\n\n"))


class Command(TyperCommand):
    """A command whose help is reflowed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflowed(self.help)


class Group(TyperGroup):
    """A group whose help and every command's help are reflowed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.help = reflowed(self.help)
        for command in self.commands.values():
            command.help = reflowed(command.help)
