"""What delivery's handler tests and store tests share: a lead's events as routing sends them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from leadpipe_common.events import (
    Assignment, Attribution, LeadReengaged, LeadRouted, LeadStageChanged, Touch,
)
from leadpipe_common.testing import factories

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@dataclass(frozen=True)
class RaisedLead:
    """A lead routed as a B, then touched (a demo request) and raised to A, as routing sends its events."""

    #: Its first lead.routed, at B.
    first: LeadRouted
    #: The re-engagement's lead.routed (same holder, same hand-off) and lead.reengaged, held at A since.
    told: LeadRouted
    reengaged: LeadReengaged
    #: Sales' steps, each at the grade routing holds it at.
    accepted: LeadStageChanged
    won: LeadStageChanged
    rejected: LeadStageChanged
    #: After the rejection, a touch scored A recycles it: a new routing, to another rep, its hand-off the next.
    recycled: LeadRouted


@pytest.fixture
def raised_from_b_to_a() -> RaisedLead:
    lead = factories.scored("mql")
    first = LeadRouted(**dict(lead) | {"score": lead.score.model_copy(update={"grade": "B"})}, routed_at=NOW,
                       handoff_seq=1, held_grade="B", assignment=Assignment(
                           owner_id="ana", owner_name="Ana", team="emea", method="territory", reason="r"))
    touch = Touch(touch_id=uuid.uuid4(), at=NOW, attribution=Attribution(form_id="demo-request"))
    told = first.model_copy(update={"score": first.score.model_copy(update={"grade": "A"}), "touch": touch,
                                    "held_grade": "A"})
    reengaged = LeadReengaged(lead_id=lead.lead_id, touch=touch, owner_id="ana", team="emea", at=NOW,
                              reason="asked for a demo", attribution=lead.attribution, score=90, grade="A",
                              held_grade="A")
    accepted = LeadStageChanged(lead_id=lead.lead_id, from_stage="routed", to_stage="accepted", at=NOW, by="ana",
                                reason="r", attribution=lead.attribution, owner_id="ana", team="emea", grade="A")
    later = NOW + timedelta(days=7)
    recycling = Touch(touch_id=uuid.uuid4(), at=later, attribution=Attribution(form_id="pricing"))
    return RaisedLead(
        first=first, told=told, reengaged=reengaged, accepted=accepted,
        won=accepted.model_copy(update={"from_stage": "accepted", "to_stage": "won", "amount": Decimal("900.00"),
                                        "currency": "EUR"}),
        rejected=accepted.model_copy(update={"from_stage": "accepted", "to_stage": "rejected",
                                             "reason_code": "no-budget"}),
        recycled=told.model_copy(update={"touch": recycling, "routed_at": later, "handoff_seq": 2,
                                         "assignment": told.assignment.model_copy(update={"owner_id": "ben"})}))
