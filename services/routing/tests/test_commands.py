"""``leadpipe-routing what-if`` from the command line, the topics stood in for (what it reads, what it says)."""

import pytest
from typer.testing import CliRunner

import routing.commands
from routing.__main__ import cli
from routing.whatif import History


@pytest.fixture
def what_if(monkeypatch):
    read = []

    async def read_history(settings, since, progress=lambda done, total: None):
        read.append(since)
        return History([], 0)

    monkeypatch.setattr(routing.commands, "read_history", read_history)
    run = lambda *args: CliRunner().invoke(cli, ["what-if", *args], env={"COLUMNS": "500"})  # noqa: E731
    run.read = read
    return run


@pytest.mark.parametrize("since", ["1969-12-31", "1970-01-01T00:30+01:00"])
def test_a_since_before_1970_is_refused_naming_the_option_before_any_topic_is_read(what_if, since):
    """The broker client took a negative timestamp for a bare ValueError: what-if ended in a traceback."""
    refused = what_if("--since", since)
    assert refused.exit_code == 2 and "--since" in refused.output
    assert f"'{since}' is before 1970-01-01T00:00Z" in " ".join(refused.output.split())
    assert what_if.read == []
    assert what_if("--since", "1970-01-01").exit_code == 0 and len(what_if.read) == 1
