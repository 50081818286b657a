"""The API's answer models (``reporting.answers``) describe what the reports build, key by key: the rows the domain
shapes and a timeline of every step reporting records. (The routes send what the reports build as it is:
test_dashboard.py; what the SQL builds around the rows: test_store.py.)"""

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import BaseModel

from leadpipe_common.events import (
    FUNNEL, Attribution, LeadAssigned, LeadHandedOver, LeadMerged, LeadQueued, LeadReengaged, LeadSlaBreached,
    LeadStageChanged, LeadTouchRecorded, LeadWonAmountCorrected, Touch,
)
from reporting import answers
from reporting.domain import (
    AttributionTally, LeadCredit, attribution_rows, breakdown_row, funnel_stages, in_order_moved, project, sla_row,
    spam_rows, timeline_answer, won_revenue,
)
from reporting.reports import Filters

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
LEAD, SURVIVOR = uuid.UUID(int=1), uuid.UUID(int=2)
ADS = Attribution(utm_source="google", utm_campaign="brand", offer="demo")
COHORT = Filters(since=T0, until=T0 + timedelta(days=7), source="google").describe()


def read_back(model: type[BaseModel], body: Any) -> Any:
    """``body`` read by ``model`` and written again: ``body`` itself only when the model has every key of it (a key it
    does not describe is dropped) and reads each value as it is written (a value of another shape is refused)."""
    return model.model_validate(body).model_dump(mode="json", by_alias=True, exclude_unset=True)


REACHED = dict(zip(FUNNEL, (120, 110, 40, 38, 30, 12, 5), strict=True))


@pytest.mark.parametrize("model, body", [
    (answers.Funnel, {"filters": COHORT, "stages": funnel_stages(REACHED),
                      "exits": {"nurture": 60, "disqualified": 10, "rejected": 4, "lost": 7}}),
    (answers.Breakdown, {"filters": COHORT, "dimension": "source",
                         "rows": [breakdown_row("google", REACHED), breakdown_row("(none)", {})], "omitted": 0}),
    (answers.AttributionReport, {"filters": COHORT, "dimension": "campaign", "model": "first", **attribution_rows(
        [{"value": "brand", "captured": 3, "won": 1}, {"value": "(none)", "captured": 1, "won": 0}],
        [{"value": "brand", "currency": "EUR", "revenue": Decimal("1200")}]), "omitted": 2}),
    (answers.Sla, {"filters": COHORT, "compliance": 0.5, "teams": [sla_row({"team": "emea"}, 1, 1, 1, 0)],
                   "reps": [sla_row({"team": "emea", "owner_id": "ana"}, 1, 1, 1, 0)]}),
    (answers.Spam, {"filters": COHORT, **spam_rows([{"form_id": "demo", "utm_source": "(none)", "quarantined": 4,
                                                     "released": 1}]), "omitted": 0}),
], ids=["funnel", "breakdown", "attribution", "sla", "spam"])
def test_each_report_as_the_domain_shapes_its_rows_is_described_by_its_model_key_by_key(model, body):
    assert read_back(model, body) == body


def test_fractional_credit_under_the_linear_model_is_described_as_a_number_with_its_revenue_in_cents():
    tally = AttributionTally("linear")
    tally.add(LeadCredit([(T0, "google"), (T0 + timedelta(days=1), "bing"), (T0 + timedelta(days=2), "bing")],
                         won_at=T0 + timedelta(days=3), amount=Decimal("100"), currency="EUR"))
    rows = tally.rows()
    body = {"filters": COHORT, "dimension": "source", "model": "linear", "rows": rows, "won_revenue": won_revenue(rows),
            "omitted": 0}
    assert read_back(answers.AttributionReport, body) == body
    assert [(r["captured"], r["won_revenue"]) for r in rows] == [(0.6667, {"EUR": "66.67"}), (0.3333, {"EUR": "33.33"})]


def recorded(minutes: int, event: Any) -> tuple[uuid.UUID, datetime, Any]:
    return uuid.uuid4(), T0 + timedelta(minutes=minutes), event


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


def every_step() -> list[tuple[uuid.UUID, datetime, Any]]:
    """A lead's life through every kind of step reporting records."""
    touch = Touch(touch_id=uuid.UUID(int=9), at=at(20), attribution=Attribution(utm_source="bing", form_id="demo"))

    def stage(minutes: int, frm: str | None, to: str, **kw: Any) -> tuple[uuid.UUID, datetime, Any]:
        return recorded(minutes, LeadStageChanged(lead_id=LEAD, from_stage=frm, to_stage=to, at=at(minutes), by="t",
                                                  reason="r", attribution=ADS, **kw))

    return [
        stage(0, None, "captured"), stage(1, "captured", "mql", grade="A"),
        recorded(2, LeadQueued(lead_id=LEAD, team="emea", at=at(2), reason="nobody free", grade="A",
                               attribution=ADS)),
        recorded(3, LeadAssigned(lead_id=LEAD, owner_id="ana", owner_name="Ana", team="emea", at=at(3),
                                 queued_at=at(2), due_at=at(18), reason="back at work", grade="A", attribution=ADS)),
        recorded(18, LeadSlaBreached(lead_id=LEAD, owner_id="ana", team="emea", grade="A", due_at=at(18),
                                     breached_at=at(18), breach=1, action="reassigned", next_owner_id="ben",
                                     next_owner_name="Ben", next_team="dach", next_due_at=at(33), attribution=ADS)),
        recorded(19, LeadHandedOver(lead_id=LEAD, from_owner_id="ben", from_team="dach", from_due_at=at(33),
                                    owner_id="cy", owner_name="Cy", team="dach", stage="routed", at=at(19),
                                    by="sales-ops", reason="ben left", due_at=at(40), grade="A", attribution=ADS)),
        recorded(20, LeadTouchRecorded(lead_id=LEAD, attribution=ADS, touch=touch)),
        recorded(21, LeadReengaged(lead_id=LEAD, touch=touch, owner_id="cy", team="dach", at=at(21),
                                   reason="came back", attribution=ADS, score=80, grade="A")),
        stage(30, "routed", "rejected", owner_id="cy", team="dach", reason_code="not-a-fit"),
        stage(30, "rejected", "nurture", reason_code="not-a-fit"),
        stage(40, "nurture", "won", owner_id="cy", team="dach", amount=Decimal("900"), currency="EUR"),
        recorded(50, LeadWonAmountCorrected(
            lead_id=LEAD, amount=Decimal("90"), currency="EUR", previous_amount=Decimal("900"),
            previous_currency="EUR", correction=1, at=at(50), by="cy", reason="typo", owner_id="cy", team="dach",
            grade="A", attribution=ADS)),
        recorded(60, LeadMerged(lead_id=SURVIVOR, survivor_id=LEAD, at=at(60), by="cy", reason="same person",
                                attribution=ADS)),
    ]


def test_a_timeline_of_every_kind_of_step_is_described_by_its_model_key_by_key():
    """Each key a step's event gives it is one the model names: none left to ``extra``, where anything may be."""
    steps = sorted((s for s in project(every_step()).steps if s["lead_id"] == LEAD), key=lambda s: s["at"])
    body = timeline_answer(LEAD, {"source": "google", "medium": None, "campaign": "brand", "content": None,
                                  "form": None, "offer": "demo"}, in_order_moved(steps))
    assert read_back(answers.Timeline, body) == body
    assert all(not step.model_extra for step in answers.Timeline.model_validate(body).steps)
    assert {s["to_stage"] for s in body["steps"]} >= {"queued", "assigned", "sla_breached", "handed_over", "touched",
                                                      "reengaged", "won_amount_corrected", "merged", "won"}


def test_a_timeline_of_a_lead_reporting_keeps_no_row_of_has_no_attribution_and_is_described_so():
    """A later touch of a lead whose other events reporting never saw: its steps, and an empty first touch."""
    [touched] = [s for s in project(every_step()).steps if s["to_stage"] == "touched"]
    body = timeline_answer(LEAD, {}, [touched])
    assert read_back(answers.Timeline, body) == body
