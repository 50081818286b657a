"""``leadpipe-routing what-if`` from the command line, the topics stood in for (what it reads, what it says)."""

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

import routing.commands
from leadpipe_common.testing.cli import invoke
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
        self.first_held: list[tuple[str, datetime | None]] = []
        self.read: list[datetime] = []

    async def read_history(self, settings, since, progress=lambda done, total: None) -> History:
        self.read.append(since)
        return History(self.history, 0, self.first_held)

    def __call__(self, *args: str):
        return invoke(cli, ["what-if", *args])


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
    assert refused.exit_code == 2 and "accounts.csv:3: owner: 'tom.berg' is no rep's id" in refused.said

    answered = what_if("--since", "2026-11-01", "--reps", str(reps), "--accounts", str(accounts))
    assert answered.exit_code == 0, answered.output
    assert f"accounts {accounts}" in answered.said
    assert "lena.fischer 1 0 +1" in answered.said and "tom.berg 0 1 -1" in answered.said
    assert "1 real assignments break the candidate data" in answered.said
    assert "tom.berg emea-enterprise not a rep in the candidate reps file" in answered.said


def test_file_names_rep_ids_and_teams_with_brackets_are_printed_as_they_are_not_read_as_markup(what_if, tmp_path):
    """rich read them as its markup: the candidate reps[draft].yaml was said to be reps.yaml (another file than the
    one used), a rep ana[emea] showed as ana, and a team [/b] ended the command in a MarkupError."""
    reps = tmp_path / "reps[draft].yaml"
    reps.write_text((SHIPPED / "reps.yaml").read_text())
    ana = Assignment(owner_id="ana[emea]", owner_name="Ana", team="[/b]", method="territory", reason="r")
    what_if.history = [PastLead(factories.scored("mql", country="DE"), MONDAY, ana, position=(0, 0))]
    answered = what_if("--since", "2026-11-01", "--reps", str(reps))
    assert answered.exit_code == 0, answered.output
    assert f"reps {reps}," in answered.said
    assert "[/b] (team) 0 1 -1" in answered.said and "ana[emea] 0 1 -1" in answered.said
    assert "ana[emea] [/b] not a rep in the candidate reps file" in answered.said


def test_a_since_older_than_the_topics_hold_is_answered_from_what_they_hold_with_a_warning_naming_when_that_begins(
        what_if):
    """The stage topics are kept 30 days: a --since 90 days back read from the first records held, and the table
    came out short while looking complete. A planning tool writing nothing still answers, exit 0, but says so."""
    lead = factories.scored("mql", country="DE")
    seen = Assignment(owner_id="amelie.durand", owner_name="Amélie Durand", team="emea-commercial",
                      method="territory", reason="r")
    what_if.history = [PastLead(lead, MONDAY, seen, position=(0, 0))]
    what_if.first_held = [("leads.scored", datetime(2026, 11, 2, 8, tzinfo=UTC)),
                          ("leads.routed", datetime(2026, 11, 3, 9, 30, tzinfo=UTC)),
                          ("leads.lifecycle", datetime(2026, 10, 1, tzinfo=UTC))]  # cut before --since: whole
    answered = what_if("--since", "2026-11-01")
    assert answered.exit_code == 0, answered.output
    assert ("warning: the topics no longer hold all they recorded since --since 2026-11-01T00:00:00+00:00 "
            "(retention, or a truncated log): they hold leads.routed only from 2026-11-03T09:30:00.000+00:00, "
            "leads.scored only from 2026-11-02T08:00:00.000+00:00.") in answered.said
    assert "a --since of 2026-11-03T09:30:00.000+00:00 or later reads a history they hold whole" in answered.said
    assert "leads.lifecycle" not in answered.said
    assert "amelie.durand 1 1 +0" in answered.said  # the table, from what is held

    whole = what_if("--since", "2026-11-04")
    assert whole.exit_code == 0 and "warning" not in whole.said


def test_a_topic_that_holds_nothing_now_since_its_records_were_deleted_is_warned_of_naming_no_moment(what_if):
    """A quiet leads.lifecycle past its retention holds no record at all: it was not told, and a table of answers
    that never came looked complete."""
    what_if.first_held = [("leads.lifecycle", None), ("leads.scored", datetime(2026, 11, 2, 8, tzinfo=UTC))]
    answered = what_if("--since", "2026-11-01")
    assert answered.exit_code == 0, answered.output
    assert ("warning: the topics no longer hold all they recorded since --since 2026-11-01T00:00:00+00:00 "
            "(retention, or a truncated log): they hold leads.lifecycle nothing since --since in a partition that "
            "lost every record it had, leads.scored only from 2026-11-02T08:00:00.000+00:00.") in answered.said
    assert "no --since is known to read a history they hold whole" in answered.said
    assert "or later reads a history" not in answered.said

    later = what_if("--since", "2026-11-04")
    assert later.exit_code == 0 and "they hold leads.lifecycle nothing since --since" in later.said


def test_what_if_says_how_many_recycled_leads_would_stay_in_nurture_under_the_reasons_in_force(what_if):
    """Recycled after sales rejected it as spam, before the bundled reasons file kept such leads in nurture."""
    lead = factories.scored("mql", country="DE")
    seen = Assignment(owner_id="amelie.durand", owner_name="Amélie Durand", team="emea-commercial",
                      method="territory", reason="r")
    what_if.history = [PastLead(lead, MONDAY, seen, position=(0, 0), recycled_after="spam")]
    answered = what_if("--since", "2026-11-01")
    assert answered.exit_code == 0, answered.output
    assert ("1 routings would not happen: the lead would stay in nurture, recycled after a rejection whose reason "
            "does not recycle under reasons") in answered.said
    assert "amelie.durand 0 1 -1" in answered.said  # she got it; nobody would


def test_what_if_tries_a_candidate_reasons_file_on_every_recycle_in_the_history(what_if, tmp_path):
    """What if not-a-fit rejections kept a lead in nurture, and spam ones no longer did: the lead recycled after
    not-a-fit never goes back to sales, so neither does its later recycle after no-budget; the lead recycled after
    spam, which the reasons in force keep in nurture, is routed again."""
    shipped = (SHIPPED / "reasons.yaml").read_text()
    reasons = tmp_path / "reasons.yaml"
    reasons.write_text(shipped.replace("not-a-fit: Company or role outside our ideal customer profile",
                                       "not-a-fit: {text: Outside our ideal customer profile, recycle: false}")
                       .replace("spam: {text: Spam or a test submission, recycle: false}",
                                "spam: Spam or a test submission"))
    assert reasons.read_text() != shipped
    amelie = Assignment(owner_id="amelie.durand", owner_name="Amélie Durand", team="emea-commercial",
                        method="territory", reason="r")
    james = Assignment(owner_id="james.okafor", owner_name="James Okafor", team="emea-commercial",
                       method="territory", reason="r")
    twice, spam = factories.scored("mql", country="DE"), factories.scored("mql", country="DE")
    hour = timedelta(hours=1)
    what_if.history = [
        PastLead(twice, MONDAY, amelie, answered_at=MONDAY + hour / 2, position=(0, 0)),
        PastLead(twice, MONDAY + hour, james, answered_at=MONDAY + 2 * hour, position=(0, 1),
                 recycled_after="not-a-fit"),
        PastLead(twice, MONDAY + 3 * hour, amelie, position=(0, 2), recycled_after="no-budget"),
        PastLead(spam, MONDAY, james, position=(0, 3), recycled_after="spam"),
    ]

    in_force = what_if("--since", "2026-11-01")
    assert in_force.exit_code == 0, in_force.output
    assert "1 routings would not happen" in in_force.said and "emea-commercial (team) 3 4 -1" in in_force.said
    assert "not tried on past touches" not in in_force.said

    candidate = what_if("--since", "2026-11-01", "--reasons", str(reasons))
    assert candidate.exit_code == 0, candidate.output
    assert f"reasons {reasons})" in candidate.said
    assert ("2 routings would not happen: the lead would stay in nurture, recycled after a rejection whose reason "
            f"does not recycle under reasons {reasons}") in candidate.said
    assert "emea-commercial (team) 2 4 -2" in candidate.said
    # A touch the reasons of its day kept in nurture left no trace to route again: the report says so.
    assert ("a code these reasons let recycle is not tried on past touches that did not recycle a lead"
            in candidate.said)


def test_a_candidate_reasons_file_that_does_not_load_is_refused_naming_the_entry_before_any_topic_is_read(
        what_if, tmp_path):
    reasons = tmp_path / "reasons.yaml"
    reasons.write_text("rejected:\n  competitor: {text: Competitor, recycel: false}\n")
    refused = what_if("--since", "2026-11-01", "--reasons", str(reasons))
    assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit)
    assert f"{reasons}: rejected.competitor.recycel: unknown key (known: recycle, text)" in refused.said
    assert what_if.read == []


def test_a_candidate_file_that_is_not_utf8_is_refused_naming_its_option_not_the_setting_in_force(what_if, tmp_path):
    reps = tmp_path / "reps.yaml"
    reps.write_bytes((SHIPPED / "reps.yaml").read_bytes() + "# M\xfcller\n".encode("latin-1"))
    refused = what_if("--since", "2026-11-01", "--reps", str(reps))
    assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit)
    assert f"--reps: {reps} is not UTF-8" in refused.said
    assert what_if.read == []


def test_an_unreachable_broker_is_one_line_without_the_kafka_clients_own(caplog):
    """aiokafka's "Unable connect to ..." came bare on stderr ahead of what-if's own message, which says it."""
    closed = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "COLUMNS": "500"}
    result = CliRunner().invoke(cli, ["what-if", "--since", "2026-11-01"], env=closed)
    assert result.exit_code == 1
    assert "cannot read the topics at KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:1)" in result.output
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")] == []
    assert "Unable connect" not in result.output  # nor written by the command's own log handler
