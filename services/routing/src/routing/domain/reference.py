"""Routing's reference data, as marketing and sales edit it: reps, teams, accounts, territories, SLA, reason codes.

Pure: the files are read elsewhere (``routing.reference``); here they are
checked as a whole, so a rep on no team or an account owned by nobody stops
the service at start, each problem named with the file it is in and the
entry as a person finds it (``Problem``): a rep by their id and place in the
list, never by a 0-based index.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from types import UnionType
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from holidays import registry as holidays_registry

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, field_validator, model_validator

from leadpipe_common.domain_names import ascii_domain
from leadpipe_common.events import Grade
from leadpipe_common.problems import closest, field_problems

from routing.domain.holiday_calendars import subdivisions


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
_WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$|^24:00$")


class WorkingHours(_Strict):
    """The hours an SLA clock runs: ``start``-``end`` (``24:00`` allowed) on ``days``, in the rep's zone. An
    ``end`` before ``start`` (``22:00``-``06:00``) is a night shift, ending the next day; a shift belongs to the
    day it starts, so ``fri`` 22:00-06:00 covers Saturday until 06:00 (and Friday's holiday takes it off)."""

    days: list[Weekday] = Field(default_factory=lambda: ["mon", "tue", "wed", "thu", "fri"], min_length=1)
    start: str = "09:00"
    end: str = "17:00"

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, v: str) -> str:
        if not _CLOCK.match(v):
            raise ValueError(f"{v!r} is not a time of day like 09:00")
        return v

    @model_validator(mode="after")
    def _some_time(self) -> WorkingHours:
        if self.start == "24:00":
            raise ValueError("working hours start 24:00 is the end of a day: a shift from midnight starts at 00:00")
        if self.minutes(self.start) == self.minutes(self.end):
            raise ValueError(f"working hours start and end at the same time ({self.start}), so they are empty "
                             "(00:00-24:00 is around the clock)")
        return self

    @property
    def overnight(self) -> bool:
        """Whether a shift ends on the day after it starts: its end comes before its start (22:00-06:00)."""
        return self.minutes(self.end) < self.minutes(self.start)

    @property
    def length(self) -> timedelta:
        """How long a shift is by the clock on the wall (a clock change makes it an hour longer or shorter)."""
        span = self.minutes(self.end) - self.minutes(self.start)
        return timedelta(minutes=span + 24 * 60 if span < 0 else span)

    @staticmethod
    def minutes(clock: str) -> int:
        hours, mins = clock.split(":")
        return int(hours) * 60 + int(mins)


def _not_blank(text: str, what_to_do: str) -> str:
    """``text`` trimmed; refused when nothing is left, saying ``what_to_do``."""
    if not text.strip():
        raise ValueError(f"is blank: {what_to_do}")
    return text.strip()


#: What a rep's id may be: it is a path segment of ``/v1/reps/{rep_id}`` and an owner id on every event, where
#: ``queue:<team>`` names a team's queue (``queue_of``), so no ``/``, ``:`` or spaces.
_REP_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,99}")
#: The most leads a cap may be (Postgres counts them as an integer): a larger one means "no cap", which is
#: leaving it out.
MOST_CAPACITY = 100_000


class Rep(_Strict):
    id: str
    name: str
    email: str | None = None
    team: str
    # Strict: YAML reads weight: true as 1, which is no weight anyone meant.
    weight: StrictInt = Field(1, ge=1, le=100)
    active: bool = True
    timezone: str = "UTC"
    working_hours: WorkingHours | None = None
    #: Whose public holidays the rep is off on: a country code (``DE``), or country-subdivision (``US-CA``).
    holidays: str | None = None
    #: The most unaccepted leads the rep may hold at once; None: no cap.
    capacity: StrictInt | None = Field(None, ge=1, le=MOST_CAPACITY)

    @field_validator("id")
    @classmethod
    def _usable_id(cls, v: str) -> str:
        if not _REP_ID.fullmatch(v):
            raise ValueError(f"{v!r} is no rep id: 1 to 100 letters, digits and . _ @ + - (it is part of the "
                             "/v1/reps/{rep_id} paths and names the rep on every event; no spaces, / or :)")
        return v

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        return _not_blank(v, "give the rep's name (the sales tools show it with each lead)")

    @field_validator("holidays")
    @classmethod
    def _known_calendar(cls, v: str | None) -> str | None:
        if v is None:
            return v
        country, _, subdivision = v.partition("-")
        country = country.upper()
        known = subdivisions(country)
        if known is None:
            raise ValueError(f"no holiday calendar for {v!r} (use a country code like DE, or US-CA)")
        if not subdivision:
            return country
        # Matched whatever the case, kept as the package spells it: it knows DE's Augsburg, not AUGSBURG.
        spelt = next((s for s in known if s.upper() == subdivision.upper()), None)
        if spelt is None:
            raise ValueError(f"{country} has no subdivision {subdivision!r} (known: {', '.join(known)})")
        return f"{country}-{spelt}"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        # A folder of the zone database (US, Europe) is an IsADirectoryError, a name past the file system's
        # limit an OSError: neither said which file or rep, and a reload answered 500.
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name like Europe/Berlin)") from None
        return v


class Account(_Strict):
    domain: str
    name: str
    owner: str

    @field_validator("name")
    @classmethod
    def _named(cls, v: str) -> str:
        return _not_blank(v, "give the account's name (each routing's reason names it)")


class Segment(_Strict):
    name: str
    min_employees: StrictInt = Field(ge=0)


class TeamRule(_Strict):
    team: str
    region: str | None = None
    segment: str | None = None


#: ISO 3166-1 alpha-2, and XK (Kosovo): not ISO's, but what enrichment gives for a Kosovan phone number.
#: Read from the holidays package's registry, which names every country without importing its module:
#: list_supported_countries imports all 279 of them (+8 MB in every routing process, whose reps may name none).
_COUNTRY_CODES = frozenset(codes[1] for codes in holidays_registry.COUNTRIES.values())


class Territories(_Strict):
    #: Country codes, ISO 3166-1 alpha-2 (enrichment's), by region.
    regions: dict[str, list[str]]
    segments: list[Segment]
    unknown_size_segment: str
    teams: list[TeamRule]
    default_team: str

    @field_validator("segments")
    @classmethod
    def _distinct_sizes(cls, v: list[Segment]) -> list[Segment]:
        # A company's segment is the one with the largest min_employees it reaches: of two at one size, one never
        # is, and a team rule for it never fires; of two of one name, the rules name either.
        seen_name: set[str] = set()
        at_size: dict[int, str] = {}
        for segment in v:
            if segment.name in seen_name:
                raise ValueError(f"{segment.name!r} is listed twice: give each segment once")
            seen_name.add(segment.name)
            other = at_size.setdefault(segment.min_employees, segment.name)
            if other != segment.name:
                raise ValueError(f"{other!r} and {segment.name!r} both start at {segment.min_employees} employees: "
                                 "one of them would never be a company's segment")
        return v

    @field_validator("regions", mode="before")
    @classmethod
    def _no_booleans(cls, v: Any) -> Any:
        for region, codes in (v.items() if isinstance(v, dict) else ()):
            flag = next((c for c in codes if isinstance(c, bool)), None) if isinstance(codes, list) else None
            if flag is not None:
                raise ValueError(f"{region}: {str(flag).lower()} is no country code: quote it (YAML reads NO, yes, "
                                 'on and off unquoted as booleans; Norway is "NO")')
        return v

    @field_validator("regions")
    @classmethod
    def _country_codes(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        # A code enrichment never gives (de, UK, Germany) matches no lead: they went to the default team unseen.
        for region, codes in v.items():
            for code in codes:
                if code.strip().upper() not in _COUNTRY_CODES:
                    raise ValueError(f"{region}: {code!r} is not an ISO 3166-1 alpha-2 country code (like DE, GB, "
                                     "US)")
        v = {region: [code.strip().upper() for code in codes] for region, codes in v.items()}
        for region, codes in v.items():
            if not codes:  # no lead is ever of it: its team rules never fire
                raise ValueError(f"{region}: lists no country: no lead would be of it, and its rules never apply")
        # A lead's region is the first that lists its country: in any later one the country goes to none of its
        # rules.
        first_in: dict[str, str] = {}
        for region, codes in v.items():
            for code in codes:
                if first_in.setdefault(code, region) != region:
                    raise ValueError(f"{code} is listed in both {first_in[code]} and {region}: a country may be in "
                                     f"one region (its leads would all go to {first_in[code]})")
        return v


#: The longest an SLA may take on a rep's calendar (see ``RoutingData``): ten years.
_LONGEST_CALENDAR_DAYS = 3653
_DURATION = re.compile(r"^\s*(\d+)\s*(s|m|h|d)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours"}
#: The longest deadline per unit: a year (of working days, or of working time). Longer is surely a slip, and far
#: longer overflowed the clock's dates when a lead was routed, failing its batch again and again.
_LONGEST = {"d": 365, "h": 365 * 24, "m": 365 * 24 * 60, "s": 365 * 24 * 3600}


class SlaPolicy(_Strict):
    """Acceptance deadlines per grade, like ``15m``, ``1h`` or ``1d`` (one working day), up to a year (``365d``);
    a grade left out has none."""

    acceptance: dict[Grade, str] = Field(default_factory=dict)
    max_reassignments: StrictInt = Field(2, ge=0)

    @field_validator("acceptance")
    @classmethod
    def _durations(cls, v: dict[str, str]) -> dict[str, str]:
        for grade, text in v.items():
            match = _DURATION.match(text)
            amount = match.group(1).lstrip("0") if match else ""
            if not match or not amount:
                raise ValueError(f"grade {grade}: {text!r} is not a duration like 30s, 15m, 1h or 1d")
            if len(amount) > 9 or int(amount) > _LONGEST[match.group(2)]:  # no int() of a thousand digits
                raise ValueError(f"grade {grade}: {text!r} is longer than the longest deadline allowed, 365d "
                                 f"({_LONGEST['h']}h, {_LONGEST['m']}m or {_LONGEST['s']}s)")
        return v

    def acceptance_time(self, grade: str | None) -> timedelta | int | None:
        """Working time allowed to accept a lead of ``grade``: a duration, or (``d``) a number of the rep's
        working days, each as long as it really is (``clock.add_working_days``)."""
        text = self.acceptance.get(grade) if grade else None  # type: ignore[call-overload]
        if text is None:
            return None
        match = _DURATION.match(text)
        assert match is not None
        n, unit = int(match.group(1)), match.group(2)
        if unit == "d":
            return n
        return timedelta(**{_UNITS[unit]: n})


class RejectionReason(_Strict):
    """A rejection code: its text, and whether a touch may send a lead rejected for it back to sales. In the file
    ``code: text`` alone is one that may (most are); ``code: {text: ..., recycle: false}`` one that may not."""

    text: str
    #: False: the lead stays in nurture whatever its touches score. Sales rejected it as noise (spam, a
    #: competitor, a duplicate of an open deal), which its next download would only send them again.
    recycle: bool = True

    @model_validator(mode="before")
    @classmethod
    def _text_alone(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"text": v}
        if not isinstance(v, dict):
            # pydantic would say "a valid dictionary or instance of RejectionReason": true, but no help in YAML.
            raise ValueError("expected the code's text, or {text: ..., recycle: false}")
        return v


class Reasons(_Strict):
    """The codes sales may give for a rejection or a loss: marketing reads these by source."""

    rejected: dict[str, RejectionReason] = Field(default_factory=dict)
    lost: dict[str, str] = Field(default_factory=dict)

    def recycles(self, code: str) -> bool:
        """Whether a touch may route a lead sales rejected with ``code`` again. A code no longer in the file
        (a rename since) says nothing against it: it may, as every lead could before the option."""
        reason = self.rejected.get(code)
        return reason is None or reason.recycle


class TeamPolicy(_Strict):
    """What happens to a team's lead when none of its reps can take it now (off shift, holiday, away, full)."""

    when_nobody_available: Literal["wait", "overflow"] = "wait"
    #: With ``overflow``: the team that takes such leads (its own policy applies in turn).
    overflow_to: str | None = None

    @model_validator(mode="after")
    def _target(self) -> TeamPolicy:
        if self.when_nobody_available == "overflow" and not self.overflow_to:
            raise ValueError("when_nobody_available: overflow needs overflow_to (the team to send leads to)")
        if self.when_nobody_available == "wait" and self.overflow_to:
            # Checked for its team and then ignored: a policy that reads as overflowing, and never does.
            raise ValueError(f"overflow_to: {self.overflow_to} is used only with when_nobody_available: overflow "
                             "(this team waits): set that, or remove overflow_to")
        return self


class RoutingData(_Strict):
    reps: list[Rep]
    accounts: list[Account]
    territories: Territories
    working_hours: WorkingHours = Field(default_factory=WorkingHours)
    sla: SlaPolicy = Field(default_factory=SlaPolicy)
    reasons: Reasons = Field(default_factory=Reasons)
    #: Per team; a team left out waits for its own reps.
    teams: dict[str, TeamPolicy] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _rep_hours_over_the_files(cls, v: Any) -> Any:
        """A rep's ``working_hours`` given in part (``days`` alone) keeps the file's default for the rest, not the
        built-in 09:00-17:00: merged here, before either is checked, so that the hours a rep ends up with are. A key
        the default has that working hours do not is left to it, and said of it alone, not of every such rep."""
        default = v.get("working_hours") if isinstance(v, dict) else None
        if not isinstance(default, dict) or not isinstance(v.get("reps"), list):
            return v
        default = {key: value for key, value in default.items() if key in WorkingHours.model_fields}
        reps = [{**rep, "working_hours": {**default, **rep["working_hours"]}}
                if isinstance(rep, dict) and isinstance(rep.get("working_hours"), dict) else rep for rep in v["reps"]]
        return {**v, "reps": reps}

    @model_validator(mode="after")
    def _consistent(self) -> RoutingData:
        first_of: dict[str, int] = {}
        for n, rep in enumerate(self.reps):
            first = first_of.setdefault(rep.id, n)
            if first != n:
                raise _At(("reps", n, "id"), f"{rep.id!r} is the {ordinal(first + 1)} rep's id too: give each rep "
                                             "an id of their own")
        for n, account in enumerate(self.accounts):
            if account.owner not in first_of:
                raise _At(("accounts", n, "owner"), f"{account.owner!r} is no rep's id"
                                                    f"{_meant(account.owner, first_of)}")
        t = self.territories
        segments = {s.name for s in t.segments} | {t.unknown_size_segment}
        for n, rule in enumerate(t.teams):
            if rule.region is not None and rule.region not in t.regions:
                raise _At(("territories", "teams", n, "region"), f"{rule.region!r} is no region (the regions: "
                                                                 f"{', '.join(t.regions)})"
                                                                 f"{_meant(rule.region, t.regions)}")
            if rule.segment is not None and rule.segment not in segments:
                raise _At(("territories", "teams", n, "segment"), f"{rule.segment!r} is no segment (the segments: "
                                                                  f"{', '.join(sorted(segments))})"
                                                                  f"{_meant(rule.segment, segments)}")
        # The first rule that matches gets the lead: one after a rule of the same or a wider region and segment
        # never fires (emea before emea/enterprise sent every emea enterprise lead to the first rule's team).
        for n, rule in enumerate(t.teams):
            wider = next((i for i, e in enumerate(t.teams[:n])
                          if e.region in (None, rule.region) and e.segment in (None, rule.segment)), None)
            if wider is not None:
                raise _At(("territories", "teams", n), f"can never apply ({_rule(rule)}): the {ordinal(wider + 1)} "
                                                       f"({_rule(t.teams[wider])}) comes first and takes all its "
                                                       "leads; put the narrower rule first, or remove it")
        known = {r.team for r in self.reps} | {rule.team for rule in t.teams} | {t.default_team}
        for team, policy in self.teams.items():
            if team not in known:
                raise _At(("teams", team), f"{team!r} is no team of reps or territories")
            if policy.overflow_to == team:
                raise _At(("teams", team), "overflows to itself: name another team, or let it wait")
            if policy.overflow_to is not None and policy.overflow_to not in known:
                raise _At(("teams", team), f"overflows to {policy.overflow_to!r}, which is no team"
                                           f"{_meant(policy.overflow_to, known)}")
        # A team with no reps at all (a typo in a territory rule, say) would keep its leads in a queue that has
        # no deadline and nobody to hand them to: lost without a word. An inactive rep is never handed a lead, so a
        # team of inactive reps only is as empty.
        staffed = {r.team for r in self.reps if r.active}
        on_file = {r.team for r in self.reps}
        for team in sorted({rule.team for rule in t.teams} | {t.default_team}):
            chain = overflow_chain(team, self)
            if not staffed.intersection(chain):
                at = (("territories", "default_team") if team == t.default_team else
                      ("territories", "teams", next(n for n, rule in enumerate(t.teams) if rule.team == team)))
                idle = [c for c in chain if c in on_file]
                if idle:
                    raise _At(at, f"team {team} has no active reps (nor overflows to a team that has): the reps of "
                                  f"{', '.join(idle)} are all inactive, so its leads would wait for ever")
                raise _At(at, f"team {team} has no reps (nor overflows to a team that has): its leads would wait "
                              "for ever")
        # An active rep's team is one the files name beside the reps: a rep on another (a typo, apak for apac) is
        # in no rotation of the team meant, though the file reads as if they were. The check below lets pass an
        # account's owner (handed its leads, whatever their team) and every rep of their team, and with them the
        # typo; so a team of account owners of its own is named under teams:. An inactive rep is handed no lead:
        # one may stay on a team since removed (its open leads are the orphan watch's), and is held to this when
        # made active. After the check above: a typo in a rule leaves the rule's team with no reps, which it says
        # better.
        overflows = {p.overflow_to for p in self.teams.values()
                     if p.when_nobody_available == "overflow" and p.overflow_to}
        named = {rule.team for rule in t.teams} | {t.default_team} | set(self.teams) | overflows
        unnamed = next((n for n, r in enumerate(self.reps) if r.active and r.team not in named), None)
        if unnamed is not None:
            team = self.reps[unnamed].team
            raise _At(("reps", unnamed, "team"), f"{team!r} is no team the files name{_meant(team, named)}: no "
                                                 "territory rule, default_team, overflow_to or teams: entry names it "
                                                 f"(the teams: {', '.join(sorted(named))}); a team of account owners "
                                                 "of its own is named under teams:")
        # A rep on a team no lead is sent to (one named under teams: alone) is never handed one, though the file
        # reads as if they were in rotation; an account's owner is handed its leads, whatever their team.
        owners = {a.owner for a in self.accounts}
        routed = ({rule.team for rule in t.teams} | {t.default_team} | {r.team for r in self.reps if r.id in owners}
                  | overflows)
        stray = next((n for n, r in enumerate(self.reps) if r.active and r.team not in routed), None)
        if stray is not None:
            team = self.reps[stray].team
            raise _At(("reps", stray, "team"), f"{team!r} gets no leads: no territory rule, default_team, overflow_to "
                                               "or account sends it any, and the rep owns no account (misspelt? the "
                                               f"teams leads go to: {', '.join(sorted(routed))})")
        # Working time is counted a day at a time on the holder's calendar: an SLA of years of a rep's few
        # minutes a week would be searched for (and run past the calendar's end) at every lead routed to them.
        for rep in self.reps:
            hours = self.hours_of(rep)
            day = hours.length
            for grade in sorted(self.sla.acceptance, key=str):
                allowed = self.sla.acceptance_time(grade)
                working_days = allowed if isinstance(allowed, int) else -(-allowed // day) if allowed else 0
                if working_days * 7 / len(set(hours.days)) > _LONGEST_CALENDAR_DAYS:
                    raise _At(("sla", "acceptance", grade), f"{self.sla.acceptance[grade]} of {rep.id}'s working "
                                                            f"hours ({hours.start}-{hours.end} on "
                                                            f"{', '.join(hours.days)}) is more than ten years of "
                                                            "their working days")
        return self

    def policy_of(self, team: str) -> TeamPolicy:
        return self.teams.get(team) or _WAIT

    def rep(self, rep_id: str) -> Rep | None:
        return next((r for r in self.reps if r.id == rep_id), None)

    def hours_of(self, rep: Rep) -> WorkingHours:
        return rep.working_hours or self.working_hours

    def account(self, domain: str | None) -> Account | None:
        return self.accounts_by_domain.get(ascii_domain(domain)) if domain else None

    @functools.cached_property
    def accounts_by_domain(self) -> dict[str, Account]:
        """Each account under its domain's ASCII form (the files refuse one listed twice): enrichment passes a
        company domain on as the address or companies.csv spelt it, müller.de or xn--mller-kva.de, and accounts.csv
        may spell it either way. Computed once: reference data is replaced on a reload, never changed in place."""
        by_domain: dict[str, Account] = {}
        for a in self.accounts:
            by_domain.setdefault(ascii_domain(a.domain), a)
        return by_domain

    def region_of(self, country: str | None) -> str | None:
        return next((region for region, cs in self.territories.regions.items() if country in cs), None)


_WAIT = TeamPolicy()


def _rule(rule: TeamRule) -> str:
    return f"{rule.team}: {rule.region or 'any region'}, {rule.segment or 'any segment'}"


def overflow_chain(team: str, data: RoutingData) -> list[str]:
    """``team`` and the teams it overflows to, in order, each once."""
    chain = [team]
    while (policy := data.policy_of(chain[-1])).when_nobody_available == "overflow":
        nxt = policy.overflow_to
        if nxt is None or nxt in chain:
            break
        chain.append(nxt)
    return chain


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 21st."""
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def _meant(written: str, known: Collection[str]) -> str:
    """" (did you mean tom.berg?)" when a known name is close to ``written``, else ""."""
    close = closest(written, sorted(known))
    return f" (did you mean {close}?)" if close else ""


class _At(ValueError):
    """A problem the checks across the files find, at ``loc`` (a path into the data as pydantic's, field names,
    list indexes and mapping keys), so that it is said in the file and the entry it is in, as pydantic's are."""

    def __init__(self, loc: tuple[int | str, ...], reason: str) -> None:
        super().__init__(reason)
        self.loc = loc


@dataclass(frozen=True)
class Problem:
    """One thing wrong with the routing data, where a person finds it: ``file``, the file it is in (``reps``,
    ``accounts``, ``territories``, ``sla`` or ``reasons``, as ``RoutingFiles`` names them: the reps file holds
    ``working_hours`` and ``teams`` too; None for a problem of no one file); ``entry``, the index of the rep or
    account it is in, and ``label``, that entry as a person finds it (``rep "lena.fischer" (the 1st)``, ``the 3rd
    rep`` when it has no id); ``at``, the key in the entry or the file (``weight``, ``working_hours.start``,
    ``segment "smb" (the 3rd): min_employees``); and why. An account is named by its line where its file's lines
    are known."""

    file: str | None
    entry: int | None
    label: str
    at: str
    reason: str

    def __str__(self) -> str:
        return ": ".join(part for part in (self.file, self.label, self.at, self.reason) if part)


class InvalidRoutingData(ValueError):
    """The data refused, for each of its ``problems``."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(map(str, self.problems)))


def parse_routing_data(raw: Mapping[str, Any]) -> RoutingData:
    try:
        return RoutingData.model_validate(raw)
    except ValidationError as exc:
        raise InvalidRoutingData([_problem(e, raw) for e in exc.errors()]) from None


#: The file each part of the data comes from (``RoutingFiles``' names). Those in _WHOLE are the whole file: the
#: part's name is no key of it (territories.yaml holds regions:, not territories: regions:).
_FILE_OF = {"reps": "reps", "working_hours": "reps", "teams": "reps", "accounts": "accounts",
            "territories": "territories", "sla": "sla", "reasons": "reasons"}
_WHOLE = frozenset({"accounts", "territories", "sla", "reasons"})
#: How an entry of each list of the files is named: a noun, and the key that tells it from the others.
_ENTRIES = {("reps",): ("rep", "id"), ("accounts",): ("account", "domain"),
            ("territories", "segments"): ("segment", "name"), ("territories", "teams"): ("team rule", "team")}


def _problem(error: Mapping[str, Any], raw: Mapping[str, Any]) -> Problem:
    found = error.get("ctx", {}).get("error")
    if isinstance(found, _At):
        loc, reason = found.loc, str(found)
    else:
        loc = tuple(error["loc"])
        reason = field_problems([{**error, "msg": _reason(error)}])[0].reason
    file = _FILE_OF.get(str(loc[0])) if loc else None
    if file is None:
        return Problem(None, None, "", ".".join(map(str, loc)), reason)
    entry, label, said, keys, node = None, "", [], [], raw
    for depth, part in enumerate(loc):
        if isinstance(part, int) and isinstance(node, list):
            item = node[part] if 0 <= part < len(node) else None
            kind = _ENTRIES.get(tuple(str(p) for p in loc[:depth] if not isinstance(p, int)))
            if kind is None:  # a list of values, as a rep's days: by place
                keys[-1] += f" (the {ordinal(part + 1)})"
            else:  # an entry: by its name (the noun says which list) and place
                noun, key = kind
                name = item.get(key) if isinstance(item, dict) else None
                named = (f'{noun} "{name}" (the {ordinal(part + 1)})' if isinstance(name, str) and name.strip()
                         else f"the {ordinal(part + 1)} {noun}")
                del keys[-1:]  # the list's own key, which the noun says (none for accounts.csv's rows)
                if depth == 1:
                    entry, label = part, named
                else:
                    said += [".".join(keys)] if keys else []
                    said.append(named)
                keys = []
            node = item
            continue
        if depth > 0 or part not in _WHOLE:
            keys.append(str(part))
        node = node.get(part) if isinstance(node, Mapping) else None
    said += [".".join(keys)] if keys else []
    return Problem(file, entry, label, ": ".join(said), reason)


def _reason(error: Mapping[str, Any]) -> str:
    """pydantic's reason, or one that says what was written and what to write where pydantic's does not."""
    if error["type"] == "extra_forbidden":
        return f"unknown key (known: {', '.join(_keys_at(RoutingData, error['loc'][:-1]))})"
    if error["type"] == "int_type" and isinstance(error.get("input"), bool):
        return f"{str(error['input']).lower()} reads as yes or no, not a whole number: write a whole number, unquoted"
    value = error.get("input")
    if (error["type"] == "string_type" and error["loc"][-1:] in (("start",), ("end",)) and isinstance(value, int)
            and not isinstance(value, bool) and 0 <= value <= 24 * 60):
        # YAML 1.1 reads 17:00 unquoted as a number in base 60, 1020, and pydantic says only that it is no text.
        return (f"{value} is how YAML reads {value // 60}:{value % 60:02d} unquoted (a number in base 60): quote "
                f'it, "{value // 60:02d}:{value % 60:02d}"')
    return error["msg"]


def _keys_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """The keys the model at ``loc`` (a path of field names, list indexes and mapping keys) knows: a misspelt key
    is told with the ones meant (``begin`` beside ``start``)."""
    kind: Any = model
    for part in loc:
        kind = _model_in(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            kind = kind.model_fields[str(part)].annotation
        else:  # a list's index or a mapping's key: on to what it holds
            kind = get_args(kind)[-1]
    return sorted(_model_in(kind).model_fields)


def _model_in(kind: Any) -> Any:
    """``WorkingHours`` of ``WorkingHours | None``; anything else as it is."""
    if isinstance(kind, UnionType):
        return next((a for a in get_args(kind) if isinstance(a, type) and issubclass(a, BaseModel)), kind)
    return kind
