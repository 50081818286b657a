"""``leadpipe-routing what-if`` from the command line, the topics stood in for (what it reads, what it says)."""

from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

import routing.commands
from leadpipe_common.events import Assignment
from leadpipe_common.testing import factories
from routing.__main__ import cli
from routing.domain import PastLead
from routing.whatif import History

SHIPPED = Path(routing.commands.__file__).parent / "data"
MONDAY = datetime(2026, 11, 23, 10, tzinfo=UTC)  # 11:00 in Berlin and Stockholm


class WhatIf:
    """The command, its history of past MQLs given by the test: ``read`` holds every --since it was read for."""

    def __init__(self) -> None:
        self.history: list[PastLead] = []
        self.read: list[datetime] = []

    async def read_history(self, settings, since, progress=lambda done, total: None) -> History:
        self.read.append(since)
        return History(self.history, 0)

    def __call__(self, *args: str):
        result = CliRunner().invoke(cli, ["what-if", *args], env={"COLUMNS": "500"})
        # One line of words, however the terminal wrapped it and whatever the tables' borders.
        result.said = " ".join(result.output.replace("│", " ").split())
        return result


@pytest.fixture
def what_if(monkeypatch) -> WhatIf:
    command = WhatIf()
    monkeypatch.setattr(routing.commands, "read_history", command.read_history)
    return command


@pytest.mark.parametrize("since", ["1969-12-31", "1970-01-01T00:30+01:00"])
def test_a_since_before_1970_is_refused_naming_the_option_before_any_topic_is_read(what_if, since):
    """The broker client took a negative timestamp for a bare ValueError: what-if ended in a traceback."""
    refused = what_if("--since", since)
    assert refused.exit_code == 2 and "--since" in refused.said
    assert f"'{since}' is before 1970-01-01T00:00Z" in refused.said
    assert what_if.read == []
    assert what_if("--since", "1970-01-01").exit_code == 0 and len(what_if.read) == 1


def test_what_if_an_account_owner_leaves_is_answered_with_candidate_reps_and_accounts(what_if, tmp_path):
    """Tom owns SAP: reps without him were refused against the live accounts (which name him), so the question
    could not be asked."""
    reps = tmp_path / "reps.yaml"
    reps.write_text("".join(line for line in (SHIPPED / "reps.yaml").read_text().splitlines(keepends=True)
                            if "id: tom.berg" not in line))
    accounts = tmp_path / "accounts.csv"
    accounts.write_text((SHIPPED / "accounts.csv").read_text().replace("SAP SE,tom.berg", "SAP SE,lena.fischer"))
    sap = factories.scored("mql", email="jo@sap.com", country="DE", employees=100_000)
    tom = Assignment(owner_id="tom.berg", owner_name="Tom Berg", team="emea-enterprise", method="account",
                     reason="owner of account SAP SE (sap.com)")
    what_if.history = [PastLead(sap, MONDAY, tom, position=(0, 0))]

    refused = what_if("--since", "2026-11-01", "--reps", str(reps))
    assert refused.exit_code == 2 and "accounts name owners who are not reps: ['tom.berg']" in refused.said

    answered = what_if("--since", "2026-11-01", "--reps", str(reps), "--accounts", str(accounts))
    assert answered.exit_code == 0, answered.output
    assert f"accounts {accounts}" in answered.said
    assert "lena.fischer 1 0 +1" in answered.said and "tom.berg 0 1 -1" in answered.said
    assert "1 real assignments break the candidate data" in answered.said
    assert "tom.berg emea-enterprise not a rep in the candidate reps file" in answered.said


def test_what_if_says_how_many_recycled_leads_would_stay_in_nurture_under_the_reasons_in_force(what_if):
    """Recycled after sales rejected it as spam, before the bundled reasons file kept such leads in nurture."""
    lead = factories.scored("mql", country="DE")
    seen = Assignment(owner_id="amelie.durand", owner_name="Amélie Durand", team="emea-commercial",
                      method="territory", reason="r")
    what_if.history = [PastLead(lead, MONDAY, seen, position=(0, 0), recycled_after="spam")]
    answered = what_if("--since", "2026-11-01")
    assert answered.exit_code == 0, answered.output
    assert ("1 routings would not happen: the lead would stay in nurture, recycled after a rejection whose reason "
            "does not recycle now") in answered.said
    assert "amelie.durand 0 1 -1" in answered.said  # she got it; nobody would
