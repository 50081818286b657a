"""Every leadpipe command line's help reads at any terminal width: a one-line summary per command, paragraphs the
terminal wraps."""

import importlib
from importlib.metadata import entry_points

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from leadpipe_common import admin
from leadpipe_common.cli_help import reflowed

#: Each ``leadpipe-*`` program and its commands (a lone command under its program's name).
PROGRAMS = {ep.name: importlib.import_module(ep.module).cli for ep in entry_points(group="console_scripts")
            if ep.name.startswith("leadpipe-")}


def commands() -> list:
    out = []
    for program, app in sorted(PROGRAMS.items()):
        built = get_command(app)
        for name, command in (getattr(built, "commands", None) or {program: built}).items():
            out.append(pytest.param(program, name, command.help or "", id=f"{program} {name}"))
    return out


@pytest.mark.parametrize(("program", "name", "text"), commands())
def test_every_command_starts_with_a_one_line_summary(program, name, text):
    """A group's list shows each command's first paragraph as it is: delivery's redrive and forget were a paragraph
    each, broken where their docstrings' lines ended."""
    summary = text.split("\n\n")[0]
    assert summary and "\n" not in summary and len(summary) <= 80, f"{program} {name}: {summary!r}"


def test_a_paragraph_is_wrapped_by_the_terminal_not_where_its_source_line_ended():
    help_text = CliRunner().invoke(admin.cli, ["--help"], terminal_width=200, env={"COLUMNS": "200"}).output
    assert "TOPIC_REPLICATION (3 on a production cluster) and TOPIC_RETENTION" in help_text


def test_reflowing_keeps_the_paragraphs():
    assert reflowed("  One line.\n\n  A paragraph\n  on two lines.\n") == "One line.\n\nA paragraph on two lines."
    assert reflowed(None) is None

