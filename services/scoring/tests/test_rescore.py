"""``leadpipe-scoring rescore``'s re-score of a page of open leads, and its reading of the leads the lifecycle
closed: no broker, no Postgres."""

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace

import pytest

from leadpipe_common import topics
from leadpipe_common.envelope import decode
from leadpipe_common.events import (
    Attribution, Contact, Enrichment, LeadEnriched, LeadMerged, LeadStageChanged, Sourced,
)
from leadpipe_common.testing import factories
from scoring.domain import RescoreSummary, parse_rules
from scoring.rescore import closed_in, rescore_page

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
#: Marketing raised the bar to 50: a demo request alone (40) is below it, one from an enterprise (70) is not.
RULES = parse_rules({
    "version": "higher-bar", "grades": {"A": 80, "B": 60, "C": 35}, "thresholds": {"mql": 50, "nurture": 10},
    "fit": [{"rule": "Enterprise", "field": "employee_count", "gte": 1000, "points": 30}],
    "intent": [{"rule": "Demo", "field": "offer", "equals": "demo", "points": 40}],
    "disqualify": [],
})


def kept(decision: str, *, employees: int | None = None, reasons: list | None = None) -> SimpleNamespace:
    """An open lead's row as ``ScoringStore.open_leads`` reads it: a demo request scoring made ``decision``."""
    lead = LeadEnriched(
        lead_id=uuid.uuid4(), captured_at=NOW, enriched_at=NOW, contact=Contact(email="jo@example.com"),
        attribution=Attribution(offer="demo", utm_source="ads"),
        enrichment=Enrichment(email_domain="example.com", is_free_mail=Sourced(value=False, source="t"),
                              is_disposable=Sourced(value=False, source="t"),
                              employee_count=None if employees is None else Sourced(value=employees, source="t")))
    return SimpleNamespace(lead_id=lead.lead_id, decision=decision, score=40, reasons=reasons or [],
                           lead=lead.model_dump(mode="json"), scored_at=NOW)


def test_leads_closed_since_they_were_scored_are_left_out_of_the_moves_and_counted_apart():
    """Two MQLs the higher bar leaves below it, one of which sales has won since; two nurture leads it lifts,
    one of which was merged into another lead before scoring heard of the merge."""
    won, held = kept("mql"), kept("mql")
    merged_away, lifted = kept("nurture", employees=5000), kept("nurture", employees=5000)
    page = [won, held, merged_away, lifted]
    summary = RescoreSummary(RULES.version)

    rows, messages = rescore_page(page, {r.lead_id: [] for r in page}, {won.lead_id, merged_away.lead_id}, RULES,
                                  NOW, summary)

    assert summary.moves == {("below_bar", "C", "ads"): 1, ("to_mql", "B", "ads"): 1}
    assert (summary.leads, summary.closed) == (2, 2)
    assert [row["lead_id"] for row in rows] == [held.lead_id, lifted.lead_id]  # a closed lead is left as it is
    assert {decode(m.headers, m.key, m.value).data.lead_id for m in messages} == {lifted.lead_id}


def test_nurture_leads_a_new_knockout_or_a_raised_nurture_bar_leaves_out_are_closed_and_mqls_only_counted():
    """A competitor rule added and the nurture bar raised: the MQL it knocked out was counted "below the MQL
    bar", the nurture leads it knocked out or left under the bar were counted nowhere and stayed open."""
    rules = RULES.model_copy(update={
        "version": "competitors", "thresholds": RULES.thresholds.model_copy(update={"nurture": 45}),
        "disqualify": parse_rules({"version": "x", "grades": {"A": 80, "B": 60, "C": 35},
                                   "thresholds": {"mql": 50, "nurture": 10}, "disqualify": [
                                       {"rule": "Competitor", "field": "employee_count", "gte": 9000}]}).disqualify})
    rival_mql, rival_nurture = kept("mql", employees=9000), kept("nurture", employees=9000)
    rival_mql.score = 70  # the same score, a new decision: changed
    under_bar, lifted = kept("nurture"), kept("nurture", employees=5000)
    page = [rival_mql, rival_nurture, under_bar, lifted]
    summary = RescoreSummary(rules.version)

    rows, messages = rescore_page(page, {r.lead_id: [] for r in page}, set(), rules, NOW, summary)

    assert {m: summary.count(m) for m in ("mql_knocked_out", "knocked_out", "below_nurture", "to_mql", "below_bar")
            } == {"mql_knocked_out": 1, "knocked_out": 1, "below_nurture": 1, "to_mql": 1, "below_bar": 0}
    assert summary.knockouts == {("mql_knocked_out", "Competitor"): 1, ("knocked_out", "Competitor"): 1}
    assert summary.changed_scores == 4
    assert {row["lead_id"]: row["decision"] for row in rows} == {
        rival_mql.lead_id: "mql", rival_nurture.lead_id: "disqualified", under_bar.lead_id: "disqualified",
        lifted.lead_id: "mql"}
    steps = {e.data.lead_id: (e.data.from_stage, e.data.to_stage)
             for e in (decode(m.headers, m.key, m.value) for m in messages) if e.data.type == "lead.stage_changed"}
    assert steps == {rival_nurture.lead_id: ("nurture", "disqualified"), under_bar.lead_id: ("nurture", "disqualified"),
                     lifted.lead_id: ("nurture", "mql")}
    # Run again (the same rules version), a lead's events keep their ids: consumers keep them once.
    _, repeated = rescore_page(page, {r.lead_id: [] for r in page}, set(), rules, NOW, RescoreSummary(rules.version))
    def ids(ms):  # noqa: ANN001, ANN202
        return [decode(m.headers, m.key, m.value).id for m in ms]

    assert ids(repeated) == ids(messages) and len(set(ids(messages))) == 6
    # A nurture lead whose stored score named the knockout already (a later touch brought it, and a touch never
    # disqualifies) stays as the live path left it.
    touched = kept("nurture", employees=9000, reasons=[{"rule": "Competitor", "category": "disqualify"}])
    touched.score = 70  # as the live path stored it (Enterprise 30, Demo 40): the same under the same rules
    unchanged = RescoreSummary(rules.version)
    rows, _ = rescore_page([touched], {touched.lead_id: []}, set(), rules, NOW, unchanged)
    assert [row["decision"] for row in rows] == ["nurture"]
    # Its score says "disqualified" and its row stays nurture: the dry run counted it changed on every run.
    assert (unchanged.leads, unchanged.changed_scores) == (1, 0)


def test_a_nurture_lead_a_touch_knocked_out_is_disqualified_by_a_new_rule_its_stored_score_did_not_name():
    """Any knockout in the stored score kept the lead open, whatever the new rules added: a competitor domain
    added after a touch had brought another knockout left the lead in nurture, counted under no move."""
    rules = RULES.model_copy(update={
        "version": "competitors",
        "disqualify": parse_rules({"version": "x", "grades": {"A": 80, "B": 60, "C": 35},
                                   "thresholds": {"mql": 50, "nurture": 10}, "disqualify": [
                                       {"rule": "Competitor", "field": "email_domain", "equals": "example.com"},
                                       {"rule": "Giants", "field": "employee_count", "gte": 9000}]}).disqualify})
    touched = kept("nurture", employees=9000, reasons=[{"rule": "Giants", "category": "disqualify"}])
    touched.score = 70  # Enterprise 30, Demo 40: the same points under the new rules
    summary = RescoreSummary(rules.version)
    rows, messages = rescore_page([touched], {touched.lead_id: []}, set(), rules, NOW, summary)
    assert [row["decision"] for row in rows] == ["disqualified"] and summary.count("knocked_out") == 1
    assert summary.changed_scores == 1  # its points are the same, its stage is not
    assert summary.knockouts == {("knocked_out", "Competitor"): 1, ("knocked_out", "Giants"): 1}
    assert len(messages) == 2  # its new score and its step out


def test_the_leads_the_lifecycle_closes_for_good_are_read_from_its_records():
    """Won, lost, disqualified, merged away: closed. Accepted, rejected (a touch may recycle it), recycled: open."""
    def step(to: str, **kw: object):  # noqa: ANN202
        lead_id = uuid.uuid4()
        return lead_id, LeadStageChanged(lead_id=lead_id, from_stage="accepted", to_stage=to, at=NOW, by="t",
                                         reason="r", attribution=Attribution(), **kw)

    won, lost, disqualified = (step("won", amount=Decimal("900.00"), currency="EUR"), step("lost", reason_code="x"),
                               step("disqualified"))
    open_ = [step("accepted"), step("rejected", reason_code="x"), step("mql")]
    duplicate = uuid.uuid4()
    merge = LeadMerged(lead_id=duplicate, survivor_id=uuid.uuid4(), at=NOW, by="anna", reason="same person",
                       attribution=Attribution())
    messages = [factories.message(topics.LIFECYCLE, event) for _, event in (won, lost, disqualified, *open_)]
    messages.append(factories.message(topics.LIFECYCLE, merge))
    records = [factories.consumed(m, offset) for offset, m in enumerate(messages)]
    garbled = factories.consumed(factories.message(topics.LIFECYCLE, step("won", amount=Decimal(1),
                                                                          currency="EUR")[1]), len(records))
    garbled.value = b"not json"  # dead-lettered by the live consumers; passed over here

    assert closed_in([*records, garbled]) == {won[0], lost[0], disqualified[0], duplicate}


def test_the_report_gives_the_closed_leads_a_line_of_their_own(capsys):
    from scoring.commands import _report

    summary = RescoreSummary(RULES.version, closed=3)
    summary.add("below_bar", "C", "ads", score_changed=True)
    _report(summary, True, NOW)
    out = capsys.readouterr().out.splitlines()
    assert "would leave MQLs below the MQL bar (kept: only sales sends back or closes; some may be with sales by " \
           "now): 1" in out
    assert "left out as closed since scored (won, lost or merged away): 3" in out


def test_the_report_names_each_move_and_the_rule_that_knocks_leads_out(capsys):
    """An MQL a competitor rule knocked out was printed as "would move below the MQL bar", and nurture leads it
    knocked out, or a raised nurture bar left under it, not at all."""
    from scoring.commands import _report

    summary = RescoreSummary(RULES.version)
    summary.add("mql_knocked_out", "A", "ads", score_changed=True, knockouts=["Competitor [acme]"])
    summary.add("knocked_out", "D", "ads", score_changed=True, knockouts=["Competitor [acme]"])
    summary.add("below_nurture", "D", "ads", score_changed=True)
    _report(summary, True, NOW)
    out = capsys.readouterr().out.splitlines()
    assert "would disqualify nurture leads a disqualify rule now holds for (closed): 1" in out
    assert "would disqualify nurture leads under the nurture bar now (closed): 1" in out
    assert ("would leave MQLs a disqualify rule now holds for, not disqualified (kept: only sales sends back or "
            "closes; some may be with sales by now): 1") in out
    assert "would leave MQLs below the MQL bar (kept: only sales sends back or closes; some may be with sales by " \
           "now): 0" in out
    assert out.count("  Competitor [acme]: 1") == 2
    assert not any("counted under each" in line for line in out)  # one rule per lead: the lines add up


def test_the_report_says_a_lead_several_disqualify_rules_hold_for_is_counted_under_each(capsys):
    """Two rules hold for one lead: its move's line says 1 and each rule's 1, which reads as a miscount unless
    said."""
    from scoring.commands import _report

    summary = RescoreSummary(RULES.version)
    summary.add("knocked_out", "D", "ads", score_changed=True, knockouts=["Competitor", "Disposable"])
    _report(summary, True, NOW)
    out = capsys.readouterr().out.splitlines()
    assert "would disqualify nurture leads a disqualify rule now holds for (closed): 1" in out
    assert {"  Competitor: 1", "  Disposable: 1",
            "  (a lead several of these rules hold for is counted under each)"} <= set(out)


def test_an_unreachable_broker_is_one_line_without_the_kafka_clients_own(caplog, monkeypatch):
    """aiokafka's "Unable connect to ..." came bare on stderr ahead of rescore's own message, which says it."""
    from typer.testing import CliRunner

    import scoring.commands
    from scoring.__main__ import cli

    async def none_scored(settings):
        return None

    monkeypatch.setattr(scoring.commands, "newest_rules", none_scored)  # the rules are compared first, in Postgres

    closed = {"KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:1", "COLUMNS": "500"}
    result = CliRunner().invoke(cli, ["rescore", "--dry-run"], env=closed)
    assert result.exit_code == 1
    assert f"cannot read {topics.LIFECYCLE} at KAFKA_BOOTSTRAP_SERVERS (127.0.0.1:1)" in result.output
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")] == []
    assert "Unable connect" not in result.output  # nor written by the command's own log handler


def test_a_stored_lead_this_version_cannot_read_is_left_as_it_is_and_counted_not_the_end_of_the_run():
    """Its ValidationError ended the run half done, with a traceback, the pages before it committed."""
    broken, lifted = kept("nurture", employees=5000), kept("nurture", employees=5000)
    broken.lead = {**broken.lead, "contact": "not a contact"}
    summary = RescoreSummary(RULES.version)
    rows, messages = rescore_page([broken, lifted], {broken.lead_id: [], lifted.lead_id: []}, set(), RULES, NOW,
                                  summary)
    assert (summary.unreadable, summary.unreadable_leads, summary.leads) == (1, [broken.lead_id], 1)
    assert [row["lead_id"] for row in rows] == [lifted.lead_id] and len(messages) == 2


def test_a_lead_scored_after_the_rescores_moment_keeps_its_newer_score_and_is_counted_apart():
    """A real run repeating a dry run's --at hours later re-scored leads first scored since, as of before they
    were captured: one lifted to MQL stepped there before it existed, its newer touches counted undecayed."""
    lifted, since = kept("nurture", employees=5000), kept("nurture", employees=5000)
    since.scored_at = NOW.replace(hour=NOW.hour + 1)
    summary = RescoreSummary(RULES.version)
    rows, messages = rescore_page([lifted, since], {lifted.lead_id: [], since.lead_id: []}, set(), RULES, NOW,
                                  summary)
    assert (summary.leads, summary.newer) == (1, 1)
    assert [row["lead_id"] for row in rows] == [lifted.lead_id]
    assert {decode(m.headers, m.key, m.value).data.lead_id for m in messages} == {lifted.lead_id}


class Pages:
    """scoring's store and unit of work for ``rescore``: open leads a page at a time; the commit of page
    ``fails_at`` (1-based) raises as Postgres restarting would."""

    def __init__(self, pages: list[list[SimpleNamespace]], fails_at: int | None = None) -> None:
        self.pages, self.fails_at, self.commits, self.published = pages, fails_at, 0, []
        self.store = self

    def __call__(self):
        return self

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        pass

    async def open_leads(self, after, limit):
        return self.pages.pop(0) if self.pages else []

    async def touches(self, lead_ids):
        return {lead_id: [] for lead_id in lead_ids}

    async def save(self, rows) -> None:
        pass

    def publish(self, messages) -> None:
        self.published.append(messages)

    async def commit(self) -> None:
        self.commits += 1
        if self.commits == self.fails_at:
            raise ConnectionResetError("the server closed the connection")


async def rescored(monkeypatch, uow: Pages, dry_run: bool = False) -> RescoreSummary:
    from scoring import rescore as rescore_module

    class Engine:
        async def dispose(self) -> None:
            pass

    monkeypatch.setattr(rescore_module, "make_engine", lambda settings: Engine())
    monkeypatch.setattr(rescore_module, "_units_of_work", lambda engine: uow)
    return await rescore_module.rescore(object(), RULES, NOW, closed=set(), dry_run=dry_run)


async def test_a_rescore_stopped_at_a_pages_commit_reports_only_the_pages_committed_before(monkeypatch):
    from scoring.rescore import Interrupted

    uow = Pages([[kept("nurture", employees=5000)], [kept("nurture", employees=5000), kept("mql")]], fails_at=2)
    with pytest.raises(Interrupted) as stopped:
        await rescored(monkeypatch, uow)
    assert (stopped.value.summary.leads, stopped.value.summary.count("to_mql")) == (1, 1)
    assert isinstance(stopped.value.__cause__, ConnectionResetError)


async def test_a_rescore_that_fails_before_any_page_is_done_raises_the_error_alone(monkeypatch):
    with pytest.raises(ConnectionResetError):
        await rescored(monkeypatch, Pages([[kept("nurture", employees=5000)]], fails_at=1))


async def test_a_dry_run_commits_nothing_and_counts_every_page(monkeypatch):
    uow = Pages([[kept("nurture", employees=5000)], [kept("mql")]])
    summary = await rescored(monkeypatch, uow, dry_run=True)
    assert (summary.leads, uow.commits, uow.published) == (2, 0, [])
