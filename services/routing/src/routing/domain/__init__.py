"""Routing rules: who gets an MQL, by when they must accept it, and what sales may say back.

Order: the owner of an existing account with the lead's company domain
(account-based routing); otherwise territory (country -> region) and segment
(employee band) pick a team, and a smooth weighted round-robin picks one of
the team's active reps; a team with nobody active holds the lead in its queue.

The hand-off SLA gives the holder a deadline per grade, counted in their own
working hours and time zone. A missed deadline passes the lead to the team's
next rep in the rotation (a normal turn: the breaching rep's turn is spent and
never given back), and after ``max_reassignments`` to the team's queue.

Dispositions move a routed lead through accepted -> contacted -> qualified ->
won | lost, or rejected (back to nurture). A closed lead stays closed; the
same report twice is a harmless repeat. Sales may merge a lead into another
(one person): it closes as merged.

Pure: reps, accounts, territories, the SLA policy and the reason codes come
in as ``RoutingData``; rotation state and a lead's hand-off come in and their
next versions go out, so the caller persists them in one transaction; the
time is always an argument.

The package's modules: ``reference`` (the data's schema), ``routes`` (route
choice and the rotation), ``clock`` (working time), ``dispositions`` (the
state machine), ``breaches`` (missed deadlines). Their public names are
re-exported here.
"""

from routing.domain.breaches import Breach, breach
from routing.domain.clock import acceptance_due, add_working_time
from routing.domain.dispositions import (
    ALLOWED_AFTER, CLOSED, Applied, Handoff, HandoffStatus, Merged, Refused, Repeated, Step, apply_disposition,
    merge_into, remembered,
)
from routing.domain.reference import (
    Account, InvalidRoutingData, Reasons, Rep, RoutingData, Segment, SlaPolicy, TeamRule, Territories, WorkingHours,
    parse_routing_data,
)
from routing.domain.routes import Route, assign, choose_route, next_turn, queue_of, segment_of

__all__ = [
    "ALLOWED_AFTER", "CLOSED", "Account", "Applied", "Breach", "Handoff", "HandoffStatus", "InvalidRoutingData",
    "Merged", "merge_into",
    "Reasons", "Refused", "Rep", "Repeated", "Route", "RoutingData", "Segment", "SlaPolicy", "Step", "TeamRule",
    "Territories", "WorkingHours", "acceptance_due", "add_working_time", "apply_disposition", "assign", "breach",
    "choose_route", "next_turn", "parse_routing_data", "queue_of", "remembered", "segment_of",
]
