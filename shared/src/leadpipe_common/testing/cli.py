"""Running a service's command line in a test, as a person at a wide terminal would."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from typer.testing import CliRunner


def invoke(cli: Any, args: Sequence[str]) -> Any:
    """``cli`` run with ``args``; the result's ``said`` holds its output as one line of words, however the
    terminal wrapped it and whatever the tables' borders, for a test to look for a phrase in."""
    result = CliRunner().invoke(cli, list(args), env={"COLUMNS": "500"})
    result.said = " ".join(result.output.replace("│", " ").split())
    return result
