"""Where an MQL goes: the account's owner, else the territory and segment's team; and the weighted rotation.

Who of them can take it now is ``availability``'s question. Pure: the
rotation state comes in and its next version goes out, for the caller to
persist in the same transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from leadpipe_common.events import LeadRouted, LeadScored

from routing.domain.reference import Rep, RoutingData, Territories


@dataclass(frozen=True)
class Route:
    """Where a lead goes before the rotation: straight to an owner, or to a team."""

    kind: Literal["account", "team"]
    team: str
    reason: str
    owner: Rep | None = None


def segment_of(employees: int | None, territories: Territories) -> str:
    if employees is None:
        return territories.unknown_size_segment
    for seg in sorted(territories.segments, key=lambda s: -s.min_employees):
        if employees >= seg.min_employees:
            return seg.name
    return territories.unknown_size_segment


def choose_route(lead: LeadScored | LeadRouted, data: RoutingData) -> Route:
    """The route of a new lead, or of a routed one placed again (its holder missed the deadline)."""
    e = lead.enrichment
    domain = e.company_domain.value if e.company_domain else None
    account = data.account(domain)
    if account:
        owner = data.rep(account.owner)
        if owner and owner.active:
            return Route("account", owner.team, f"owner of account {account.name} ({account.domain})", owner)
    country = (e.country or e.company_country).value if (e.country or e.company_country) else None
    region = data.region_of(country)
    segment = segment_of(e.employee_count.value if e.employee_count else None, data.territories)
    # A reason names the rule that took the lead (or the default), never the lead's country or region, nor
    # whether it has one: it goes to every receiver, and on events without the contact (lead.queued,
    # lead.handed_over) to those a subscription's contact: withholds the phone and country from.
    # A rule's region tells no more than the team it gives; a rule for any region says "any", not the lead's.
    # The holder sees the country in the contact.
    for rule in data.territories.teams:
        if (rule.region is None or rule.region == region) and (rule.segment is None or rule.segment == segment):
            return Route("team", rule.team, f"territory {rule.region or 'any'} / {segment}")
    return Route("team", data.territories.default_team, "no territory for the lead's country, if any; default team")


def from_queue(route: Route, team: str, why: str) -> Route:
    """The route of a lead waiting in ``team``'s queue as it is handed out, ``route`` its route now
    (``choose_route``), ``why`` leading the reason: to its account owner when they are of ``team`` (as a new lead
    of the account goes to them), else to ``team``'s rotation."""
    if route.kind == "account" and route.team == team:
        return Route("account", team, f"{why}; {route.reason}", route.owner)
    # A lead waiting in a team's queue stays that team's, though its route now names another (the files changed
    # since it was queued): the watch of orphaned queues moves it when nobody may take it there.
    return Route("team", team, why)


def next_turn(reps: Sequence[Rep], state: Mapping[str, int]) -> tuple[Rep, dict[str, int]]:
    """Smooth weighted round-robin (as nginx does it).

    Every turn each rep gains its weight; the one with the most is chosen and
    pays back the total. Over any window a rep's share equals its weight's
    share and turns are spread out rather than bunched. Ties go to the earlier
    rep in the file.
    """
    if not reps:
        raise ValueError("no reps to rotate among")
    current = {r.id: state.get(r.id, 0) + r.weight for r in reps}
    chosen = max(reps, key=lambda r: current[r.id])  # max keeps the first of equals
    current[chosen.id] -= sum(r.weight for r in reps)
    return chosen, current


def queue_of(team: str) -> str:
    """The owner id of a team's queue: a lead nobody holds yet, waiting for a rep of ``team``."""
    return f"queue:{team}"
