"""``leadpipe-scoring rescore`` from the command line, the lifecycle and the database stood in for: what it
refuses before reading anything."""

import pytest
from typer.testing import CliRunner

import scoring.commands
from scoring.__main__ import cli
from scoring.domain import RescoreSummary


class Rescore:
    """The command, with the re-score only noting the moment it was asked for."""

    def __init__(self) -> None:
        self.at: list[object] = []

    async def closed_leads(self, settings, progress=lambda done, total: None) -> set:
        return set()

    async def rescore(self, settings, rules, now, *, closed, dry_run, progress=lambda done: None) -> RescoreSummary:
        self.at.append(now)
        return RescoreSummary(rules.version)

    def __call__(self, *args: str):
        result = CliRunner().invoke(cli, ["rescore", *args], env={"COLUMNS": "500"})
        result.said = " ".join(result.output.replace("│", " ").split())
        return result


@pytest.fixture
def rescore(monkeypatch) -> Rescore:
    command = Rescore()
    monkeypatch.setattr(scoring.commands, "closed_leads", command.closed_leads)
    monkeypatch.setattr(scoring.commands, "rescore", command.rescore)
    return command


def test_an_empty_at_is_refused_not_taken_for_now(rescore):
    """`rescore --at="$AT"` with the variable unset re-scored as of now: not the moment the dry run was for."""
    refused = rescore("--dry-run", "--at=")
    assert refused.exit_code == 2 and "--at" in refused.said and "''" in refused.said
    assert rescore.at == []
