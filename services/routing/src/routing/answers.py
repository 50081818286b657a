"""What routing's API answers sales tools and integrators, as models: the schemas of its OpenAPI document, which
clients generate their types from.

The routes build their answers as they always did; these models describe them without changing a key or a value's
spelling (a null stays a null). Every key is always there. Times are written as every answer writes them
(``moments.written``: UTC with a ``Z``).
"""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import BaseModel, Field

from leadpipe_common.events import Disposition, Grade
from leadpipe_common.moments import Written

from routing.domain import HandoffStatus, WorkingHours



class ReportedDisposition(BaseModel):
    """A report sales made on the lead, as routing keeps it (without its time)."""

    outcome: Disposition = Field(description="What sales said became of the lead.")
    rep_id: str = Field(description="The rep who reported it.")
    reason_code: str | None = Field(description="A code of reasons.yaml: a rejection's, or a lost deal's.")
    reason: str | None = Field(description="What sales wrote.")
    amount: str | None = Field(description="A won deal's value, a decimal with two places (`12000.00`).")
    currency: str | None = Field(description="A won deal's currency (ISO 4217).")


class HandoffState(BaseModel):
    """A routed lead as routing tracks it after the hand-off to sales."""

    lead_id: uuid.UUID = Field(description="The lead.")
    status: HandoffStatus = Field(description="Where it stands with sales: `routed` (not yet accepted), the last "
                                              "disposition, `merged` (closed into `merged_into`) or `erased` (the "
                                              "person was erased: closed, and nobody's to work).")
    owner_id: str = Field(description="Who holds it: a rep's id in reps.yaml, or `queue:<team>` while it waits in "
                                      "its team's queue (any active rep of `team` may report on it then, and holds it).")
    team: str = Field(description="The holder's team.")
    grade: Grade | None = Field(description="The grade routing holds the lead at: the score's when routed, raised "
                                            "by a touch that scored better, never lowered.")
    due_at: Written | None = Field(description="When its holder must accept it by (the hand-off SLA); null: no "
                                            "deadline runs (accepted or closed, waiting in a team's queue, or no "
                                            "SLA for its grade).")
    reassignments: int = Field(description="How many missed acceptance deadlines sent it to another holder.")
    dispositions: list[ReportedDisposition] = Field(description="Every report recorded, in order: a won deal's "
                                                                "amount corrections follow its win.")
    merged_into: uuid.UUID | None = Field(description="Closed as merged: the lead that holds its person now (the "
                                                      "survivor, or the lead the survivor was merged into since); "
                                                      "report on it instead. Null otherwise.")
    handoff_seq: int = Field(description="The number of the hand-off to its holder now, among the lead's: ignore "
                                         "a `lead.routed` numbered below it that arrives later.")


#: The ids of the events an answer's call emitted (``ce_id``: the lifecycle step and what it caused), none for a
#: repeat.
Emitted = Annotated[list[uuid.UUID], Field(description="The ids of the events it emitted (CloudEvent `id`s); "
                                                       "none for a repeat.")]


class DispositionAnswer(HandoffState):
    """The lead after the report, and what the report did."""

    repeated: bool = Field(description="The same report was recorded before: nothing was recorded or emitted now.")
    corrected: bool = Field(description="A won deal's amount or currency corrected by its holder: the lead stays "
                                        "won, and `lead.won_amount_corrected` went on the lifecycle.")
    events: Emitted


class MergeAnswer(HandoffState):
    """The lead merged away (closed as `merged`) after the merge, and what the merge did."""

    survivor_id: uuid.UUID = Field(description="The lead it was merged into, as asked.")
    repeated: bool = Field(description="The same merge was recorded before: nothing was recorded or emitted now.")
    events: Emitted


class AwayState(BaseModel):
    """An out-of-office period of the rep not yet over."""

    starts_at: Written = Field(description="When it starts (inclusive).")
    ends_at: Written = Field(description="When it ends.")
    reason: str | None = Field(description="Shown to whoever reads the routing reason.")


class RepState(BaseModel):
    """A rep of the reps file: their settings there, and whether they can take a lead now."""

    id: str = Field(description="Their id in reps.yaml: what a disposition's `rep_id` names.")
    name: str = Field(description="Their name.")
    team: str = Field(description="Their team.")
    active: bool = Field(description="False: in the file but given no more leads.")
    timezone: str = Field(description="The IANA zone of their working hours.")
    working_hours: WorkingHours = Field(description="Their own, or the file's default.")
    holidays: str | None = Field(description="Whose public holidays they are off on (`DE`, `US-CA`); null: none.")
    capacity: int | None = Field(description="The most unaccepted leads they may hold at once; null: no cap.")
    held: int = Field(description="The unaccepted leads they hold now (what `capacity` caps).")
    available: bool = Field(description="They can take a new lead now.")
    unavailable_because: str | None = Field(description="Why not (`inactive`, `off shift`, a public holiday, out "
                                                        "of office, at capacity); null when available.")
    away: list[AwayState] = Field(description="Their out-of-office periods not yet over, set through this API.")


class RepsState(BaseModel):
    """Every rep of the reps file, as routing sees them now."""

    routing_data_version: str = Field(description="The routing files in force (a digest; changes on every reload).")
    at: Written = Field(description="The time their availability is judged at.")
    reps: list[RepState] = Field(description="Every rep of the reps file, in its order.")
