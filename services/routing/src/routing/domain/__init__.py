"""Routing rules: who gets an MQL, by when they must accept it, and what sales may say back.

Order: the owner of an existing account with the lead's company domain
(account-based routing); otherwise territory (country -> region) and segment
(employee band) pick a team, and a smooth weighted round-robin picks one of
the team's reps who can take a lead now (on shift, not on holiday or out of
office, under their cap). When nobody can, the team's policy makes the lead
wait in its queue (handed out when a rep can take it) or overflow to another
team.

The hand-off SLA gives the holder a deadline per grade, counted in their own
working hours and time zone. A missed deadline places the lead again as a new
lead is placed (rotation, overflow), every rep who held it passed over (a
normal turn: the breaching rep's turn is spent and never given back), and
after ``max_reassignments`` escalates it to the queue of its team (or of the
first along its overflow with reps of its own: only those may take from it);
with nobody who has not held it able to take it now, it waits in its team's
queue for the first who can. A lead sales rejected is recycled by a touch that earns intent, to a new
holder. A manager may hand the open leads a rep holds (they left, or are away for long) to another rep, or back
through routing, each placed as a missed deadline places a lead (one sales accepted only with a rep who can take it
now: a queue is for leads waiting to be accepted); they keep their status. A touch of a lead whose holder is no
longer active hands it on through routing the same way; one whose holder is out of office stays with them, the
re-engagement saying until when.

Dispositions move a routed lead through accepted -> contacted -> qualified ->
won | lost, or rejected (back to nurture). A closed lead stays closed; the
same report twice is a harmless repeat; a won deal's holder may correct its
amount (won again, with another amount or currency), and the lead stays won.
A report is dated no earlier than it could have been given (an acceptance or
rejection: the hand-off it answers; anything else: the lead's first routing).
Sales may merge a lead into another (one person): it closes as merged, and a
report on it is refused naming the survivor (or the lead it was merged into
since), to report on instead. A won or lost lead is not merged away, nor is
a lead sales still works merged into a closed one (it could never be won): of
an open lead and a rejected one, the rejected one is merged away.

Pure: reps, accounts, territories, the SLA policy and the reason codes come
in as ``RoutingData``; rotation state and a lead's hand-off come in and their
next versions go out, so the caller persists them in one transaction; the
time is always an argument.

The package's modules: ``reference`` (the data's schema), ``routes`` (route
choice and the rotation), ``availability`` (who can take a lead now, and
what a team does when nobody can), ``clock`` (working time), ``dispositions`` (the
state machine), ``breaches`` (missed deadlines), ``handovers`` (a rep's leads handed to another), ``reengagements``
(whether the holder of a re-engaged lead can act on it), ``orphans`` (leads left in
the queue of a team the files no longer staff, and who may take from a queue), ``queues`` (what waits in a
team's queue, as a manager sees it), ``whatif`` (past leads routed again under candidate data). Their public names
are re-exported here.
"""

from routing.domain.availability import (
    Away, Placed, Presence, Waiting, away_until, capacity_bound, on_shift, place, public_holiday, unavailable,
)
from routing.domain.breaches import Breach, breach, escalated_to, held_by, may_wait, place_again
from routing.domain.clock import acceptance_due, add_working_days, add_working_time
from routing.domain.dispositions import (
    AHEAD_ALLOWED, ALLOWED_AFTER, CLOSED, Applied, Correction, Handoff, HandoffStatus, Merged, Refused, Repeated, Step,
    answerable_since, answered_at, apply_disposition, dated_ahead, dated_before, earns_intent, kept_back_by, merge_into,
    news_for_holder, recycled_by, rejected_as, remembered,
)
from routing.domain.handovers import Kept, hand_to, handover_refused, reroute
from routing.domain.orphans import escalation_team, orphaned, requeue, staffed, staffed_teams, teams_named
from routing.domain.queues import (
    KINDS, Kind, Queued, Tally, TeamQueue, queue_of_team, queues, takers, teams_waiting, waited_s,
)
from routing.domain.reengagements import Gone, OutOfOffice, absence, no_longer_active, told_why
from routing.domain.reference import (
    Account, InvalidRoutingData, Problem, Reasons, RejectionReason, Rep, RoutingData, Segment, SlaPolicy, TeamPolicy,
    TeamRule, Territories, WorkingHours, overflow_chain, parse_routing_data,
)
from routing.domain.routes import Route, choose_route, from_queue, next_turn, queue_of, segment_of
from routing.domain.whatif import PastLead, Violation, WhatIf, what_if

__all__ = [
    "AHEAD_ALLOWED", "ALLOWED_AFTER", "CLOSED", "KINDS", "Account", "Applied", "Away", "Breach", "Correction", "Gone", "Handoff",
    "HandoffStatus",
    "InvalidRoutingData", "Kept", "Kind", "Merged", "OutOfOffice", "PastLead", "Placed", "Presence", "Problem", "Queued", "Reasons", "Refused",
    "RejectionReason", "Rep", "Repeated", "Route",
    "RoutingData", "Segment", "SlaPolicy", "Step", "Tally", "TeamPolicy", "TeamQueue", "TeamRule", "Territories", "Violation", "Waiting", "WhatIf", "WorkingHours",
    "absence", "acceptance_due", "add_working_days", "add_working_time", "answerable_since", "answered_at", "apply_disposition", "away_until", "breach", "capacity_bound", "choose_route",
    "dated_ahead", "dated_before", "earns_intent", "escalated_to", "escalation_team", "from_queue", "hand_to", "handover_refused", "held_by", "kept_back_by", "may_wait", "merge_into",
    "news_for_holder", "next_turn", "no_longer_active", "on_shift", "orphaned", "overflow_chain", "parse_routing_data", "place",
    "place_again", "public_holiday", "queue_of", "queue_of_team", "queues", "recycled_by", "rejected_as", "remembered", "requeue", "reroute",
    "segment_of", "staffed", "staffed_teams", "takers", "teams_named", "teams_waiting", "told_why", "unavailable", "waited_s", "what_if",
]
