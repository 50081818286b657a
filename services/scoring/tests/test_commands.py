"""``leadpipe-scoring rescore`` from the command line, the lifecycle and the database stood in for: what it
refuses before reading anything."""

from datetime import UTC, datetime, timedelta

import pytest
from aiokafka import TopicPartition

import scoring.commands
from leadpipe_common.testing.cli import invoke
from scoring.__main__ import cli
from scoring.app import load_rules
from scoring.domain import RescoreSummary, rules_digest
from scoring.settings import ScoringSettings
from scoring.rescore import refuse_cut


class Rescore:
    """The command, with the re-score only noting the moment it was asked for."""

    def __init__(self) -> None:
        self.at: list[object] = []
        #: The first offsets the lifecycle's partitions hold.
        self.starts: dict[object, int] = {}
        #: The rules version and digest of the newest score (None: none scored).
        self.scored: tuple[str, str | None] | None = None

    async def newest_rules(self, settings):
        return self.scored

    async def closed_leads(self, settings, progress=lambda done, total: None, *, force=False) -> set:
        if not force:
            refuse_cut(self.starts)
        return set()

    async def rescore(self, settings, rules, now, *, closed, dry_run, progress=lambda done: None) -> RescoreSummary:
        self.at.append(now)
        return RescoreSummary(rules.version)

    def __call__(self, *args: str):
        return invoke(cli, ["rescore", *args])


@pytest.fixture
def rescore(monkeypatch) -> Rescore:
    command = Rescore()
    monkeypatch.setattr(scoring.commands, "closed_leads", command.closed_leads)
    monkeypatch.setattr(scoring.commands, "rescore", command.rescore)
    monkeypatch.setattr(scoring.commands, "newest_rules", command.newest_rules)
    return command


def test_an_empty_at_is_refused_not_taken_for_now(rescore):
    """`rescore --at="$AT"` with the variable unset re-scored as of now: not the moment the dry run was for."""
    refused = rescore("--dry-run", "--at=")
    assert refused.exit_code == 2 and "--at" in refused.said and "''" in refused.said
    assert rescore.at == []


@pytest.mark.parametrize("days, said", [(-365, "more than a day before now"), (-2, "more than a day before now"),
                                        (2, "more than a day after now")])
def test_an_at_more_than_a_day_from_now_is_refused_saying_why(rescore, days, said):
    """A typo of 2025 for 2026 re-scored without a year's decay and stepped leads to MQL a year before now,
    before many were captured."""
    at = (datetime.now(UTC) + timedelta(days=days)).isoformat(timespec="minutes")
    refused = rescore("--dry-run", "--at", at)
    assert refused.exit_code == 2 and "--at" in refused.said and said in refused.said
    assert rescore.at == []


def test_an_at_within_a_day_of_now_is_scored_as_of_that_moment(rescore):
    """The real run may come hours after its dry run, at the same --at."""
    at = (datetime.now(UTC) - timedelta(hours=20)).replace(second=0, microsecond=0)
    done = rescore("--at", at.isoformat())
    assert done.exit_code == 0, done.said
    assert rescore.at == [at]


def test_a_real_run_ahead_of_now_is_refused_saying_why_and_its_dry_run_is_not(rescore):
    """A real re-score 20 hours ahead stamped its scores then: until then they were the newest, so the comparison
    of rules (at scoring's start, at the next re-score) read the re-score's version, not the running service's,
    and the leads it moved stepped in the future."""
    at = (datetime.now(UTC) + timedelta(hours=20)).replace(second=0, microsecond=0)
    refused = rescore("--at", at.isoformat())
    assert refused.exit_code == 2 and "--at" in refused.said and "after now" in refused.said
    assert "Traceback" not in refused.said and rescore.at == []
    assert rescore("--dry-run", "--at", at.isoformat()).exit_code == 0 and rescore.at == [at]


def test_a_rules_file_that_is_not_utf8_is_refused_naming_the_setting_and_the_file(rescore, tmp_path, monkeypatch):
    """It said only "'utf-8' codec can't decode byte 0xff in position 0": neither which file nor which setting."""
    rules = tmp_path / "rules.yaml"
    rules.write_bytes(b"\xff\xfeversion: x\n")
    monkeypatch.setenv("SCORING_RULES_FILE", str(rules))
    refused = rescore("--dry-run")
    assert refused.exit_code == 2 and isinstance(refused.exception, SystemExit)
    assert f"SCORING_RULES_FILE: {rules} is not UTF-8 (byte 0); save it as UTF-8" in refused.said
    assert rescore.at == []


def test_sources_with_brackets_are_printed_as_they_are_not_read_as_markup(rescore, monkeypatch):
    """utm_source is free text from anonymous posts, printed through rich: a source news[letter] showed as news,
    and a source [/b] ended the report in a MarkupError, after a real run had written its moves."""
    async def moved(settings, rules, now, *, closed, dry_run, progress=lambda done: None) -> RescoreSummary:
        return RescoreSummary(rules.version, leads=2, moves={("to_mql", "A", "news[letter]"): 1,
                                                             ("to_mql", "B", "[/b]"): 1})

    monkeypatch.setattr(scoring.commands, "rescore", moved)
    done = rescore("--dry-run")
    assert done.exit_code == 0, done.output
    assert "to_mql A news[letter] 1" in done.said and "to_mql B [/b] 1" in done.said


def test_a_lifecycle_that_lost_its_first_events_is_refused_before_anything_is_scored(rescore):
    """A lead the lost events had closed (won, lost, disqualified) was taken for open, re-scored, and recycled to
    sales if it now reached the bar."""
    rescore.starts = {TopicPartition("leads.lifecycle", 0): 0, TopicPartition("leads.lifecycle", 1): 1_200}
    refused = rescore()
    assert refused.exit_code == 1 and rescore.at == []
    assert "leads.lifecycle partition 1 from offset 1,200" in refused.said and "--force" in refused.said
    forced = rescore("--force", "--dry-run")
    assert forced.exit_code == 0 and len(rescore.at) == 1


def test_a_rescore_under_rules_of_another_version_than_the_newest_score_goes_ahead_saying_to_restart_scoring(rescore):
    """A rules file edited and re-scored without a restart: the re-score stamped the new version while the running
    service scored every later touch under the old one, without a word. Refused, it would also stop the order a
    re-score is meant to come in (restart, then re-score), before a lead is scored under the new rules."""
    rescore.scored = ("2026-11-30.1", "0123456789abcdef")
    done = rescore("--dry-run")
    assert done.exit_code == 0 and len(rescore.at) == 1
    assert "2026-12-06.2" in done.said and "2026-11-30.1" in done.said and "restart" in done.said


def test_a_rescore_under_rules_changed_without_a_new_version_is_refused(rescore):
    """Its events' ids derive from the version: a second re-score under one version was taken for the first."""
    rules = load_rules(ScoringSettings().rules_file)
    rescore.scored = (rules.version, "0123456789abcdef")
    refused = rescore("--dry-run")
    assert refused.exit_code == 1 and rescore.at == [] and "bump version" in refused.said


def test_a_rescore_under_the_rules_of_the_newest_score_goes_ahead(rescore):
    rules = load_rules(ScoringSettings().rules_file)
    rescore.scored = (rules.version, rules_digest(rules))
    done = rescore("--dry-run")
    assert done.exit_code == 0 and len(rescore.at) == 1 and "--force" not in done.said


def test_a_rescore_the_database_stops_part_way_prints_what_it_did_before_the_error(rescore, monkeypatch):
    """Pages committed before a restart of Postgres had recycled leads to sales, and the command said only "cannot
    use the database": run again, it reported only the rest, and no one saw what the first run did."""
    from scoring.rescore import Interrupted

    async def stopped(settings, rules, now, *, closed, dry_run, progress=lambda done: None) -> RescoreSummary:
        done = RescoreSummary(rules.version, leads=500, moves={("to_mql", "A", "webinar"): 7})
        raise Interrupted(done) from ConnectionRefusedError("connection refused")

    monkeypatch.setattr(scoring.commands, "rescore", stopped)
    result = rescore()
    assert result.exit_code == 1
    assert "re-scored 500 open leads" in result.said and "to_mql A webinar 7" in result.said
    assert "stopped part way, after 500 leads" in result.stderr and "run the same re-score again" in result.stderr
    assert "cannot use the database at DATABASE_URL: connection refused" in result.stderr


def test_a_real_run_that_moved_leads_says_the_running_service_sends_their_events(rescore, monkeypatch):
    """The re-score writes to scoring's outbox; with the service stopped nothing went out, and nothing said so."""
    async def moved(settings, rules, now, *, closed, dry_run, progress=lambda done: None) -> RescoreSummary:
        return RescoreSummary(rules.version, leads=3, moves={("to_mql", "A", "ads"): 2, ("below_bar", "C", "ads"): 1})

    monkeypatch.setattr(scoring.commands, "rescore", moved)
    assert "the 2 moved leads' events are in scoring's outbox" in rescore().said
    assert "outbox" not in rescore("--dry-run").said
