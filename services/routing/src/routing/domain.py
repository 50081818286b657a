"""Routing rules: who gets an MQL.

Order: the owner of an existing account with the lead's company domain
(account-based routing); otherwise territory (country -> region) and segment
(employee band) pick a team, and a smooth weighted round-robin picks one of
the team's active reps; a team with nobody active holds the lead in its queue.

Pure: reps, accounts and territories come in as ``RoutingData``; the rotation
state comes in and the next state goes out, so the caller persists it in the
same transaction as the assignment.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from leadpipe_common.events import Assignment, LeadScored


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Rep(_Strict):
    id: str
    name: str
    email: str | None = None
    team: str
    weight: int = Field(1, ge=1, le=100)
    active: bool = True
    timezone: str = "UTC"


class Account(_Strict):
    domain: str
    name: str
    owner: str


class Segment(_Strict):
    name: str
    min_employees: int = Field(ge=0)


class TeamRule(_Strict):
    team: str
    region: str | None = None
    segment: str | None = None


class Territories(_Strict):
    regions: dict[str, list[str]]
    segments: list[Segment]
    unknown_size_segment: str
    teams: list[TeamRule]
    default_team: str


class RoutingData(_Strict):
    reps: list[Rep]
    accounts: list[Account]
    territories: Territories

    @model_validator(mode="after")
    def _consistent(self) -> RoutingData:
        ids = [r.id for r in self.reps]
        dupes = {i for i in ids if ids.count(i) > 1}
        if dupes:
            raise ValueError(f"rep ids used twice: {sorted(dupes)}")
        unknown_owners = sorted({a.owner for a in self.accounts} - set(ids))
        if unknown_owners:
            raise ValueError(f"accounts name owners who are not reps: {unknown_owners}")
        t = self.territories
        segments = {s.name for s in t.segments} | {t.unknown_size_segment}
        for rule in t.teams:
            if rule.region is not None and rule.region not in t.regions:
                raise ValueError(f"team {rule.team}: unknown region {rule.region!r}")
            if rule.segment is not None and rule.segment not in segments:
                raise ValueError(f"team {rule.team}: unknown segment {rule.segment!r}")
        return self

    def rep(self, rep_id: str) -> Rep | None:
        return next((r for r in self.reps if r.id == rep_id), None)

    def account(self, domain: str | None) -> Account | None:
        return next((a for a in self.accounts if a.domain == domain), None) if domain else None

    def region_of(self, country: str | None) -> str | None:
        return next((region for region, cs in self.territories.regions.items() if country in cs), None)


class InvalidRoutingData(ValueError):
    pass


def parse_routing_data(raw: Mapping[str, Any]) -> RoutingData:
    try:
        return RoutingData.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise InvalidRoutingData(f"routing reference data is invalid: {problems}") from None


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


def choose_route(lead: LeadScored, data: RoutingData) -> Route:
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
    for rule in data.territories.teams:
        if (rule.region is None or rule.region == region) and (rule.segment is None or rule.segment == segment):
            return Route("team", rule.team, f"territory {region or 'unknown'} / {segment}")
    return Route("team", data.territories.default_team, f"no territory for {country or 'unknown country'}; default team")


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


def assign(route: Route, data: RoutingData, state: Mapping[str, int]) -> tuple[Assignment, dict[str, int] | None]:
    """The assignment for ``route``, and the team's next rotation state (None if the rotation did not turn)."""
    if route.kind == "account" and route.owner is not None:
        o = route.owner
        return Assignment(owner_id=o.id, owner_name=o.name, owner_email=o.email, team=o.team,
                          method="account", reason=route.reason), None
    active = [r for r in data.reps if r.team == route.team and r.active]
    if not active:
        return Assignment(owner_id=f"queue:{route.team}", owner_name=f"{route.team} queue", team=route.team,
                          method="queue", reason=f"{route.reason}; nobody active in {route.team}"), None
    rep, new_state = next_turn(active, state)
    return Assignment(owner_id=rep.id, owner_name=rep.name, owner_email=rep.email, team=route.team,
                      method="territory", reason=f"{route.reason}; weighted rotation in {route.team}"), new_state
