"""What reporting's API answers integrators and BI tools, as models: the schemas of its OpenAPI document, which
clients generate their types from.

The reports build their answers as they always did (``reporting.reports``), and the routes send them as built: these
models describe them, they do not serialise them, so not a key or a value's spelling changes (times stay as the
reports write them, in UTC with a ``Z`` (``moments.written``), a whole count of a fractional figure stays whole, a
null stays a null), and a
report of many rows is not validated again on its way out. Every key described is always there, but for a timeline's
(``TimelineStep``, ``TimelineAttribution``).
"""

from __future__ import annotations

import uuid
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, create_model

from leadpipe_common.events import FUNNEL
from leadpipe_common.moments import Written

from reporting.domain import NONE_LABEL, VELOCITY

#: A share of leads, to four decimals; null where it would divide by none.
Rate = float | None
#: A value of a first-touch attribute as the reports group by it: "(none)" for the leads that gave none.
Value = Annotated[str, Field(description=f"The attribute's value; `{NONE_LABEL}`: the leads that gave none.")]
#: Won revenue per currency, never mixed.
Omitted = Annotated[int, Field(description="The rows past `limit` left out (0: none): ask for a larger `limit`, or "
                                           "narrow the filters.")]
Revenue = Annotated[dict[str, str], Field(description=(
    "Won revenue per currency (ISO 4217, in code order): a decimal with two places (`{\"EUR\": \"1200.00\"}`); each "
    "deal at its amount in force, the win's or its latest correction's; empty when nothing was won."))]


class Cohort(BaseModel):
    """The filters the report was read with: the leads captured in [since, until), of one source."""

    since: Written | None = Field(description="Leads captured at or after it (the spam report: submissions that arrived "
                                           "then), as read from `since` (a bare date: its start, UTC); null: from "
                                           "the first.")
    until: Written | None = Field(description="Leads captured before it (spam: submissions that arrived before it), as "
                                           "read from `until` (a bare date: the next day's start, UTC, so the day is "
                                           "in); null: up to now.")
    source: str | None = Field(description=f"Only leads whose first touch had this utm_source (spam: submissions "
                                           f"with it; `{NONE_LABEL}`: those that gave none); null: every source.")


#: Every report's cohort, as read.
Filters = Annotated[Cohort, Field(description="The filters the report was read with.")]


class FunnelStage(BaseModel):
    stage: str = Field(description=f"A funnel stage, in order: {', '.join(f'`{s}`' for s in FUNNEL)}.")
    count: int = Field(description="The leads that reached it, or any later stage (a lead won without a recorded "
                                   "`qualified` was qualified).")
    conversion: Rate = Field(description="`count` ÷ the stage before's, to four decimals; null for `captured`, "
                                         "and where the stage before has none.")


class FunnelExits(BaseModel):
    """The leads out of the funnel now, each where its latest step left it."""

    nurture: int = Field(description="In nurture (scored below MQL, or nurtured since), not sent there by sales.")
    disqualified: int = Field(description="Disqualified.")
    rejected: int = Field(description="Rejected by sales: sent back to nurture, and counted here, not there.")
    lost: int = Field(description="Lost by sales.")


class Funnel(BaseModel):
    """How many leads of the cohort reached each funnel stage, and how many are out of the funnel now."""

    filters: Filters
    stages: list[FunnelStage] = Field(description="Every funnel stage, in order.")
    exits: FunnelExits = Field(description="A lead recycled into the funnel since, or won, is in none; "
                                           "`contacted` is a step on the way to qualified, not an exit.")


BreakdownRow = create_model(
    "BreakdownRow", __doc__="The funnel of the leads of one value.",
    value=(Value, ...),
    **{stage: (int, Field(description=f"The leads that reached `{stage}`, or any later stage.")) for stage in FUNNEL},
    **{f"{a}_to_{b}": (Rate, Field(description=f"`{b}` ÷ `{a}`, to four decimals; null where `{a}` has none."))
       for a, b in pairwise(FUNNEL)},
    close_rate=(Rate, Field(description="`won` ÷ `captured`, to four decimals; null where `captured` has none.")))


class Breakdown(BaseModel):
    """The funnel per value of one first-touch attribute."""

    filters: Filters
    dimension: Literal["source", "medium", "campaign", "content", "form", "offer"] = Field(
        description="The attribute asked for: utm_source, utm_medium, utm_campaign, utm_content, the form's id or "
                    "the offer.")
    rows: list[BreakdownRow] = Field(description="A row per value, the most captured first, at most `limit`.")
    omitted: Omitted


class AttributionRow(BaseModel):
    """What the touches of one value earned under the model."""

    value: Value
    captured: float = Field(description="The leads credited to the value (`first`: captured from it); fractional "
                                        "under `linear` (four decimals), a whole number when whole.")
    won: float = Field(description="Of those, the won leads' credit: a lead's touches after its win earn none.")
    close_rate: Rate = Field(description="`won` ÷ `captured`, to four decimals; null where `captured` is 0.")
    won_revenue: Revenue


class AttributionReport(BaseModel):
    """Closed-loop attribution: leads, wins and won revenue credited to each value, under a model."""

    filters: Filters
    dimension: Literal["source", "campaign", "offer"] = Field(description="The attribute the touches are credited "
                                                                          "by: utm_source, utm_campaign or the offer.")
    model: Literal["first", "last", "linear"] = Field(description="How a lead's credit is shared among its touches: "
                                                                  "all to the first, to the last before the win, or "
                                                                  "an equal share to each up to the win.")
    rows: list[AttributionRow] = Field(description="A row per value credited, the most won first, then the most "
                                                   "captured, at most `limit`.")
    won_revenue: Revenue = Field(description="The revenue won by the cohort, per currency: every value's, those "
                                             "`omitted` too.")
    omitted: Omitted


class VelocityRow(BaseModel):
    interval: str = Field(description="Its name: " + ", ".join(f"`{name}`" for name, _, _ in VELOCITY) + ".")
    from_: str = Field(alias="from", description="The stage it is timed from: the first time the lead reached it.")
    to: str = Field(description="The stage it is timed to: the first time the lead reached it, no earlier than "
                                "any funnel stage before it.")
    leads: int = Field(description="The leads that reached both.")
    p50_seconds: float | None = Field(description="The median, in seconds (to the millisecond); null: no lead.")
    p90_seconds: float | None = Field(description="The 90th percentile, in seconds; null: no lead.")


class Velocity(BaseModel):
    """How long leads of the cohort took between stages, in their first cycle."""

    filters: Filters
    rows: list[VelocityRow] = Field(description="Each interval, in the order a lead passes them.")


class SlaTeam(BaseModel):
    """The hand-offs to one team's holders, and how they were answered."""

    team: str = Field(description="The team of the holders.")
    handoffs: int = Field(description="Its hand-offs: `met` + `missed` + `open` + `handed_over`.")
    met: int = Field(description="Accepted or rejected by the deadline.")
    missed: int = Field(description="Breached, answered late, or ended unanswered after the deadline (handed over, "
                                    "or the lead merged away).")
    open: int = Field(description="Neither yet: the deadline is to come, or passed with no breach recorded yet.")
    handed_over: int = Field(description="Ended before the deadline, unanswered, by a manager's hand-over, or "
                                          "routing's when a re-engaged lead's holder is no longer active: neither met "
                                          "nor missed.")
    compliance: Rate = Field(description="`met` ÷ (`met` + `missed`), to four decimals; null where neither.")


class SlaRep(SlaTeam):
    """The hand-offs to one holder, and how they were answered."""

    owner_id: str = Field(description="The holder: a rep's id in reps.yaml.")


class Sla(BaseModel):
    """Hand-off SLA compliance of the cohort's leads, per team and per holder."""

    filters: Filters
    compliance: Rate = Field(description="Every team's `met` ÷ (`met` + `missed`), to four decimals; null where "
                                         "neither.")
    teams: list[SlaTeam] = Field(description="A row per team, by name.")
    reps: list[SlaRep] = Field(description="A row per holder of a team, by team, then holder.")


class RejectionRow(BaseModel):
    source: Value
    reason_code: str = Field(description=f"The reason code sales gave (reasons.yaml); `{NONE_LABEL}`: none.")
    rejections: int = Field(description="How many rejections: a recycled lead rejected again counts again.")
    leads: int = Field(description="Of how many leads.")


class Rejections(BaseModel):
    """Every rejection by sales of the cohort's leads (merged ones too), by the lead's source and reason code."""

    filters: Filters
    rows: list[RejectionRow] = Field(description="A row per source and reason code, the most rejections first, at "
                                                 "most `limit`.")
    omitted: Omitted


class SpamRow(BaseModel):
    form_id: str = Field(description=f"The form it was posted to; `{NONE_LABEL}`: none.")
    source: str = Field(description=f"Its utm_source; `{NONE_LABEL}`: none.")
    quarantined: int = Field(description="Submissions taken for bots'.")
    released: int = Field(description="Of those, released by an admin as false positives: each a lead, or a touch "
                                      "of its person's open lead.")
    spam: int = Field(description="The spam kept out: `quarantined` − `released`.")


class Spam(BaseModel):
    """Submissions kept out as bots' (by when they arrived), and how many were released as false positives."""

    filters: Filters
    quarantined: int = Field(description="Every row's `quarantined`, those `omitted` too.")
    released: int = Field(description="Every row's `released`, those `omitted` too.")
    spam: int = Field(description="Every row's `spam`, those `omitted` too.")
    false_positive_rate: Rate = Field(description="`released` ÷ `quarantined`, to four decimals; null where none.")
    rows: list[SpamRow] = Field(description="A row per form and source, the most spam first, at most `limit`.")
    omitted: Omitted


class TimelineAttribution(BaseModel):
    """The lead's first touch. Empty (no key) when reporting holds no row of the lead, only steps of it (a later
    touch, a merge)."""

    source: str | None = Field(None, description="utm_source.")
    medium: str | None = Field(None, description="utm_medium.")
    campaign: str | None = Field(None, description="utm_campaign.")
    content: str | None = Field(None, description="utm_content.")
    form: str | None = Field(None, description="The id of the form it was posted to.")
    offer: str | None = Field(None, description="What it asked for.")


def _detail(description: str) -> Any:
    """A key of the step's own event: present on the steps whose event carries it."""
    return Field(None, description=f"{description} Present on the steps whose event carries it.")


class TimelineStep(BaseModel):
    """One lifecycle event of the lead: who did what, when and why, with the keys of its event that say more (a
    step recorded by an earlier version may carry keys of that version's event besides)."""

    model_config = ConfigDict(extra="allow")

    event_id: uuid.UUID = Field(description="The event's id (CloudEvent `id`); a merge's two steps, the merged "
                                            "lead's and the survivor's, have ids of their own.")
    type: str = Field(description="The event's type (`lead.stage_changed`, `lead.sla_breached`, ...).")
    at: Written = Field(description="When it happened, by its own time (a sales tool dates its own answers).")
    from_stage: str | None = Field(description="The stage the lead left; null for a step that moves no stage.")
    to_stage: str = Field(description="The stage it reached, or what happened: `queued`, `assigned`, "
                                      "`handed_over`, `touched`, `reengaged`, `sla_breached`, "
                                      "`won_amount_corrected`, `merged`.")
    by: str = Field(description="Who did it: a service, or a rep.")
    reason: str = Field(description="Why, in words.")
    owner_id: str | None = _detail("The holder (a breach's: who missed the deadline).")
    team: str | None = _detail("The holder's team.")
    grade: str | None = _detail("The lead's grade.")
    due_at: Written | None = _detail("The holder's acceptance deadline.")
    reason_code: str | None = _detail("A rejection's or a lost deal's reason code.")
    amount: str | None = _detail("A won deal's amount (or its correction's), a decimal with two places.")
    currency: str | None = _detail("A won deal's currency (or its correction's).")
    previous_amount: str | None = _detail("A correction's: the amount it corrected.")
    previous_currency: str | None = _detail("A correction's: the currency it corrected.")
    correction: int | None = _detail("A correction's number among the lead's (the highest is in force).")
    breach: int | None = _detail("A breach's number among the lead's.")
    action: str | None = _detail("What a breach did: `reassigned` or `escalated`.")
    next_owner_id: str | None = _detail("Who a breach handed the lead to.")
    next_team: str | None = _detail("Their team.")
    next_due_at: Written | None = _detail("Their deadline.")
    queued_at: Written | None = _detail("An assignment's: when the lead came to the queue.")
    from_owner_id: str | None = _detail("A hand-over's: the holder it was taken from.")
    stage: str | None = _detail("A hand-over's: the lead's stage, which it keeps.")
    touch_id: uuid.UUID | None = _detail("A touch's id.")
    form_id: str | None = _detail("A touch's form.")
    offer: str | None = _detail("A touch's offer.")
    utm_source: str | None = _detail("A touch's utm_source.")
    utm_medium: str | None = _detail("A touch's utm_medium.")
    utm_campaign: str | None = _detail("A touch's utm_campaign.")
    merged: uuid.UUID | None = _detail("A merge's: the lead merged away.")
    survivor: uuid.UUID | None = _detail("A merge's: the lead it was merged into.")


class Timeline(BaseModel):
    """One lead's history, oldest first."""

    lead_id: uuid.UUID = Field(description="The lead.")
    attribution: TimelineAttribution = Field(description="Its first touch: what the reports attribute it to.")
    steps: list[TimelineStep] = Field(description="Every lifecycle event of the lead, oldest first; within one "
                                                  "moment, in the order the lead moved.")
