"""Scoring rules: an explainable fit + intent score, a grade and the MQL decision.

Pure: the rules come in as a ``RuleSet`` (parsed from the editable YAML file
by ``parse_rules``), the lead as its latest enrichment and its touches, and
``now`` as an argument; nothing here reads files or the clock. Every point
awarded is listed as a reason, so "why is this an A?" has an answer.

Fit and knockouts judge who the person is now (the latest data). Intent is
what they did: each intent rule is tested against every touch of the lead and
its points decay with the touch's age (``half_life_days`` per rule; none: no
decay), so a demo request last week counts more than a white paper last year,
and a nurture lead that keeps coming back climbs to the MQL bar.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Annotated, Any, Literal

import pycountry
from pydantic import (
    AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr,
    ValidationError, ValidationInfo, field_validator, model_validator,
)

from leadpipe_common.domain_names import ascii_domain, domain_alone, is_domain
from leadpipe_common.events import (
    DEPARTMENTS, SENIORITIES, Attribution, Decision, Grade, LeadEnriched, Score, ScoreReason,
)
from leadpipe_common.problems import describe, did_you_mean

#: The facts a rule may test, derived from an enriched lead.
FACTS = (
    "industry", "employee_count", "country", "company_country", "seniority", "department",
    "is_free_mail", "is_disposable", "email_domain", "company_domain", "job_title",
    "form_id", "offer", "utm_source", "utm_medium", "utm_campaign", "utm_content",
    "has_message", "has_phone", "marketing_consent",
)
#: The facts a touch brings (what the person did then); the rest describe the person as known now.
TOUCH_FACTS = ("form_id", "offer", "utm_source", "utm_medium", "utm_campaign", "utm_content", "has_message")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: The facts that are yes or no, and those that are numbers; the others are text.
YES_NO_FACTS = frozenset({"is_free_mail", "is_disposable", "has_message", "has_phone", "marketing_consent"})
NUMBER_FACTS = frozenset({"employee_count"})
#: The facts every lead has, never unknown: the yes-or-no ones (false when there is none: no valid phone number, no
#: message, no consent) and the address's domain. present: false holds for no lead on them, present: true for all.
ALWAYS_KNOWN_FACTS = YES_NO_FACTS | {"email_domain"}
#: The number facts that are counts: whole, never below zero (enrichment refuses any other head count), so
#: ``in: [1000.5]``, ``lt: 0`` or ``gte: 10.5, lt: 10.9`` hold for no lead.
COUNT_FACTS = frozenset({"employee_count"})
#: The text facts that are countries: enrichment gives every one as an ISO 3166-1 alpha-2 code (DE, not Germany).
COUNTRY_FACTS = frozenset({"country", "company_country"})
#: ISO 3166-1 alpha-2, and XK (Kosovo): the codes enrichment gives (from the same pycountry, and XK from a
#: Kosovan phone number); any other two letters never match.
COUNTRY_CODES = frozenset({c.alpha_2 for c in pycountry.countries} | {"XK"})
#: Two letters often written for a country that is not their code: languages' and the EU's codes, and UK.
_NOT_COUNTRY_CODES = {"UK": "the United Kingdom is GB", "EN": "EN is English, a language: England is in GB",
                      "EL": "Greece is GR (EL is Greek, and the EU's code)", "SP": "Spain is ES"}
#: The text facts that are one of a closed set, the lead.enriched contract's: what enrichment reads from a job
#: title (a rule on seniority equals directors, or department in [sale], never matched).
TERMS: Mapping[str, tuple[str, ...]] = {"seniority": SENIORITIES, "department": DEPARTMENTS}
#: The facts that are domain names, compared in their ASCII form: a rule may write müller.de or xn--mller-kva.de,
#: and a lead's domain comes as its address spelt it.
DOMAIN_FACTS = frozenset({"email_domain", "company_domain"})
#: The rules file's lists of rules, in the order they are checked (a name is refused where an earlier one has it).
_RULE_LISTS = ("fit", "intent", "disqualify")
#: The contact fields each fact comes from: what a reason of a rule on it tells of the person's own details
#: (``ScoreReason.reads``), so that a receiver not sent a field is not sent the reasons that tell of it either
#: (delivery). The seniority and department are read from the job title, the phone's presence from the phone.
#: What comes from the e-mail address's domain or the companies file is about the company, and the touch's
#: attribution about the campaign: none (as delivery's ``DERIVED``, which keeps them). The country is the form's,
#: else the phone's, else the company's: see ``reads_of``.
READS: Mapping[str, tuple[str, ...]] = {
    "industry": (), "employee_count": (), "company_country": (), "is_free_mail": (), "is_disposable": (),
    "email_domain": (), "company_domain": (), "form_id": (), "offer": (), "utm_source": (), "utm_medium": (),
    "utm_campaign": (), "utm_content": (),
    "country": ("country", "phone"),
    "seniority": ("job_title",), "department": ("job_title",), "job_title": ("job_title",),
    "has_message": ("message",), "has_phone": ("phone",), "marketing_consent": ("marketing_consent",),
}


def _scalar(value: Any) -> Any:
    if isinstance(value, date):
        # YAML reads an unquoted 2026-12-05 as a date: no fact is one, and only the writer knows how it was written.
        raise ValueError("a value here reads as a date, which no fact is: quote it exactly as you wrote it")
    if not isinstance(value, str | int | float | bool):
        raise ValueError(f"expected text, a number or true/false, not {type(value).__name__}")
    return value


#: What a fact is compared with: a list in a list (a typo) must be refused here, not fail on the first lead.
Scalar = Annotated[Any, AfterValidator(_scalar)]


def _not_empty(what: str) -> Callable[[str], str]:
    def check(text: str) -> str:
        if not text.strip():
            raise ValueError(f"is empty: {what}")
        return text
    return check


#: A rule's name, and the rules' version: text, never empty (a reason named "" says nothing of why, and a score
#: stamped with version "" says nothing of which rules gave it).
RuleName = Annotated[StrictStr, AfterValidator(_not_empty("name the rule (a lead's reasons show it)"))]
Version = Annotated[StrictStr, AfterValidator(_not_empty("write the version stamped on each scored lead"))]


def _shown(value: Any) -> str:
    """A rule's value as a refusal quotes it: true and false as YAML writes them."""
    return str(value).lower() if isinstance(value, bool) else repr(value)


def _yaml_number(value: float) -> str:
    """A number that is no number (NaN, an infinity) as YAML writes it, as a refusal quotes it: .nan, .inf, -.inf."""
    return ".nan" if math.isnan(value) else ".inf" if value > 0 else "-.inf"


def _finite(what: str) -> Callable[[Any], Any]:
    """Refuses what YAML reads as NaN or an infinity (.nan, .inf) where ``what`` is meant: read, NaN is above,
    below and equal to no number (``x < nan`` is always false), so every comparison with it quietly fails."""
    def check(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            is_ = "not a number" if math.isnan(value) else "infinite"
            raise ValueError(f"{_yaml_number(value)} is {is_}: write {what}")
        return value
    return check


def _country_hint(value: str) -> str:
    """What ``value``, no country code, most likely meant (UK: GB, Germany: DE), as the end of a refusal."""
    if value.upper() in _NOT_COUNTRY_CODES:
        return f": {_NOT_COUNTRY_CODES[value.upper()]}"
    try:
        return f": {value} is {pycountry.countries.lookup(value.strip()).alpha_2}"
    except LookupError:
        return ""


class Condition(_Strict):
    """A test of one fact; every operator given must hold."""

    field: Literal[FACTS]  # type: ignore[valid-type]
    equals: Scalar | None = None
    in_: list[Scalar] | None = Field(None, alias="in")
    not_in: list[Scalar] | None = None
    # Strict: lax, gte: true read as 1, and present: "no" or 0 as false, which turns the test round.
    gte: StrictFloat | None = None
    lt: StrictFloat | None = None
    present: StrictBool | None = None

    @model_validator(mode="after")
    def _can_match(self) -> Condition:
        # parse_rules names the rule these are said of.
        if all(v is None for v in (self.equals, self.in_, self.not_in, self.gte, self.lt, self.present)):
            raise ValueError("needs an operator: equals, in, not_in, gte, lt or present")
        mismatch = self._mismatch() or self._never_holds()
        if mismatch:
            raise ValueError(mismatch)
        return self

    def _never_holds(self) -> str | None:
        """Why these operators together hold for no lead, or for every one (``not_in: []``, a bound of .inf or
        -.inf that leaves out no number) (None: neither): read, such a rule would never fire, or fire on every lead,
        without a word."""
        for operator, bound in (("gte", self.gte), ("lt", self.lt)):
            # YAML reads .nan, .inf and -.inf as numbers: no number is at least NaN or below it.
            if bound is None or math.isfinite(bound):
                continue
            if math.isnan(bound):
                return f"{operator}: .nan is not a number, so no {self.field} passes it and it never holds: write one"
            if (bound > 0) == (operator == "gte"):  # gte: .inf, lt: -.inf
                return (f"{operator}: {_yaml_number(bound)} leaves no {self.field} that passes it, so it never "
                        f"holds: write a number")
            return (f"{operator}: {_yaml_number(bound)} leaves out no {self.field}: write a number, or remove "
                    f"{operator} (present: true holds for every lead whose {self.field} is known)")
        if self.in_ == []:
            return "in: [] lists no value, so it never holds: list the values, or remove the rule"
        if self.not_in == []:
            # Surely a list left unfilled: as a knockout it would disqualify every lead whose fact is known.
            alone = all(v is None for v in (self.equals, self.in_, self.gte, self.lt, self.present))
            if alone:
                return (f"not_in: [] lists no value, so it excludes none and the rule holds for every lead whose "
                        f"{self.field} is known: list the values to exclude, or write present: true if that is meant")
            return "not_in: [] lists no value, so it excludes none: list the values to exclude, or remove not_in"
        if self.gte is not None and self.lt is not None and self.gte >= self.lt:
            return (f"gte: {self.gte:.15g} and lt: {self.lt:.15g} leave no number between them, so it never holds "
                    f"(gte: the least it may be; lt: what it must be below)")
        if self.field in COUNT_FACTS and self.lt is not None:
            # The least count gte lets through (a bound of 10.5: 11); a gte alone always leaves some (10.5: 11 and
            # up), as does an lt above 0 alone (lt: 1: 0).
            least = 0 if self.gte is None else max(math.ceil(self.gte), 0)
            if least >= self.lt:
                tests = (f"lt: {self.lt:.15g} leaves no {self.field} below it" if self.gte is None else
                         f"gte: {self.gte:.15g} and lt: {self.lt:.15g} leave no {self.field} between them")
                return f"{tests}: it is a count, a whole number 0 or more, so it never holds"
        always_known = self._present_on_always_known()
        if always_known is not None:
            return always_known
        if self.present is False:
            # An unknown fact equals nothing, is in no list and not_in none: every other test fails on it.
            other = next((name for name, v in (("equals", self.equals), ("in", self.in_), ("not_in", self.not_in),
                                               ("gte", self.gte), ("lt", self.lt)) if v is not None), None)
            if other is not None:
                return (f"present: false holds only when {self.field} is unknown, which has no value for {other} to "
                        f"test: keep one or the other")
        return self._contradiction()

    def _present_on_always_known(self) -> str | None:
        """Why present cannot be tested on a fact every lead has (None: it is not, or present: false beside another
        test, which the check of present: false says): has_phone present: false, meant as "no phone", never held,
        and present: true held for every lead."""
        field = self.field
        if self.present is None or field not in ALWAYS_KNOWN_FACTS:
            return None
        tested = any(v is not None for v in (self.equals, self.in_, self.not_in))
        if tested and not self.present:
            return None
        if tested:
            fix = "remove present"
        elif field in YES_NO_FACTS:
            fix = f"write equals: {str(self.present).lower()}"
        else:
            fix = "test the domain with equals, in or not_in" if self.present else "remove the rule"
        known = (f"{field} is true or false for every lead (false when there is none)" if field in YES_NO_FACTS
                 else f"every lead has an {field}")
        holds = "holds for every lead" if self.present else "never holds"
        return f"present: {str(self.present).lower()} {holds}: {known}: {fix}"

    def _contradiction(self) -> str | None:
        """Why equals or in offer no value that in, not_in, gte and lt all let through (None: one is left),
        compared as a lead's fact is (case-folded; a domain in either spelling)."""
        norm = _norm_for(self.field)
        listed = None if self.in_ is None else {norm(v) for v in self.in_}
        excluded = set() if self.not_in is None else {norm(v) for v in self.not_in}

        def ruled_out(value: Any, *, by_in: bool) -> str | None:
            if by_in and listed is not None and norm(value) not in listed:
                return "in"
            if norm(value) in excluded:
                return "not_in"
            # gte and lt are only ever beside a number fact, whose values are numbers (else refused before).
            if self.gte is not None and value < self.gte:
                return f"gte: {self.gte:.15g}"
            if self.lt is not None and value >= self.lt:
                return f"lt: {self.lt:.15g}"
            return None

        if self.equals is not None:
            by = ruled_out(self.equals, by_in=True)
            if by is None:
                return None
            why = {"in": "in does not list", "not_in": "not_in excludes"}.get(by, f"{by} leaves out")
            return f"{self.field} equals {_shown(self.equals)}, which {why}, so it never holds: keep one or the other"
        if self.in_ is None:
            if self.field in YES_NO_FACTS and excluded >= {True, False}:
                return f"{self.field} is yes or no, and not_in excludes both, so it never holds: remove the rule"
            return None
        out: dict[str, list[Any]] = {}
        for value in self.in_:
            by = ruled_out(value, by_in=False)
            if by is None:
                return None
            out.setdefault(by, []).append(value)
        return (f"every value of in for {self.field} is ruled out ("
                + "; ".join(f"{', '.join(map(_shown, values))} by {by}" for by, values in out.items())
                + "), so it never holds: keep one or the other")

    def _mismatch(self) -> str | None:
        """What in this test its fact's type can never match (None: nothing). Such a rule would be read and
        never fire (or, in not_in, never exclude), without a word: "big" is no head count, and gte 10 no industry."""
        field = self.field
        compared = [v for v in (self.equals, *(self.in_ or ()), *(self.not_in or ())) if v is not None]
        if field in YES_NO_FACTS:
            kind = "yes or no"
            odd = next((v for v in compared if not isinstance(v, bool)), None)
            if odd is not None:
                return f"{field} is yes or no: compare it with true or false, unquoted, not {odd!r}"
        elif field in NUMBER_FACTS:
            kind = "a number"
            odd = next((v for v in compared if isinstance(v, bool) or not isinstance(v, int | float)), None)
            if odd is not None:
                return (f"{field} is a number, so {odd!r} never matches it: write a number, unquoted (1000, not "
                        '"1000")')
            # NaN equals nothing, not even itself, and no count is infinite.
            odd = next((v for v in compared if isinstance(v, float) and not math.isfinite(v)), None)
            if odd is not None:
                return f"{field} is a number, so {_yaml_number(odd)} never matches it: write a number"
            if field in COUNT_FACTS:
                odd = next((v for v in compared if v < 0 or (isinstance(v, float) and not v.is_integer())), None)
                if odd is not None:
                    return (f"{field} is a count, a whole number 0 or more, so {odd!r} never matches it: write a "
                            "whole number")
        else:
            kind = "text"
            flag = next((v for v in compared if isinstance(v, bool)), None)
            if flag is not None:
                # YAML reads NO (Norway), yes, on and off as booleans.
                return (f"{field} is not yes or no, but a value here reads as {str(flag).lower()}: quote it (YAML "
                        "reads NO, yes, on and off unquoted as booleans)")
            if any(not isinstance(v, str) for v in compared):
                # Not the number read: YAML reads 0123 as 83, 2026_11 as 202611 and 10:30 as 630, so quoting it
                # would not give back what was written.
                return (f"{field} is text, but a value here reads as a number, which never matches it: quote it "
                        "exactly as you wrote it")
            # Capture strips what a form sends, and keeps a blank field as unknown (a domain's own check below says
            # what to write for one).
            odd = next((v for v in compared if v != v.strip() or not v), None)
            if odd is not None and field not in DOMAIN_FACTS:
                if not odd.strip():
                    return (f"{field} is never empty ({odd!r}): a blank one is unknown, which present: false "
                            "tests: remove the value")
                return (f"{field} never has spaces around it as {odd!r} has (they are stripped as it comes in), so "
                        f"it never matches: write {odd.strip()!r}")
            if field in COUNTRY_FACTS:
                odd = next((v for v in compared if v.upper() not in COUNTRY_CODES), None)
                if odd is not None:
                    return (f"{field} is a two-letter country code (ISO 3166-1 alpha-2: DE, GB, US), as enrichment "
                            f"gives every country, so {odd!r} never matches it{_country_hint(odd)}")
            if field in TERMS:
                terms = TERMS[field]
                known = {_norm(t) for t in terms}
                odd = next((v for v in compared if _norm(v) not in known), None)
                if odd is not None:
                    return (f"{field} is one of {', '.join(terms)} (what enrichment reads from a job title), so "
                            f"{odd!r} never matches it{did_you_mean(odd, terms)}")
            if field in DOMAIN_FACTS:
                # As companies.csv: a competitor listed as https://hubspot.com was never disqualified, and no
                # refusal said so.
                odd = next((v for v in compared if domain_alone(v) is not None or not is_domain(v)), None)
                if odd is not None:
                    alone = domain_alone(odd)
                    fix = f"write the domain alone: {alone}" if alone else "write it like acme.com"
                    return (f"{field} is a domain as it follows the @ of an address, so {odd!r} never matches it: "
                            f"{fix}")
        for operator in ("gte", "lt"):
            if getattr(self, operator) is not None and field not in NUMBER_FACTS:
                return f"{field} is {kind}, and {operator} compares numbers: test it with equals, in or not_in"
        return None

    @functools.cached_property
    def folded(self) -> tuple[Any, frozenset[Any] | None, frozenset[Any] | None]:
        """``equals``, ``in`` and ``not_in`` case-folded, once: every rule is tested on every lead and touch
        (an instance attribute once computed: pydantic's private attributes are read through a slow path).
        Rules are read once and never changed; a ``model_copy(update=...)`` of a tested rule would keep it."""
        norm = _norm_for(self.field)
        return (norm(self.equals), None if self.in_ is None else frozenset(norm(v) for v in self.in_),
                None if self.not_in is None else frozenset(norm(v) for v in self.not_in))

    def holds(self, facts: Mapping[str, Any]) -> bool:
        value = facts.get(self.field)
        if self.present is not None and (value is not None) != self.present:
            return False
        equals, in_, not_in = self.folded
        if self.equals is not None and _norm(value) != equals:
            return False
        if in_ is not None and _norm(value) not in in_:
            return False
        # Unknown, a fact is not_in no list, as it equals nothing and is in none: a knockout not_in the served
        # countries would disqualify every lead whose country enrichment could not find. present: false asks for it.
        if not_in is not None and (value is None or _norm(value) in not_in):
            return False
        if self.gte is not None and not (isinstance(value, int | float) and value >= self.gte):
            return False
        if self.lt is not None and not (isinstance(value, int | float) and value < self.lt):
            return False
        return True


class Rule(Condition):
    rule: RuleName
    # Strict, as every number of the rules: lax, points: true read as 1 and "15" as 15. Bounded: a score is 0 to
    # 100 whatever is summed, and a 400-digit number loaded, then failed every lead it matched (no float holds it).
    points: StrictInt = Field(0, ge=-1000, le=1000)
    #: Intent rules: the points of a touch halve every this many days (unset: they never decay).
    half_life_days: Annotated[StrictFloat, BeforeValidator(_finite(
        "a number of days, or remove half_life_days for points that never fade"
    ))] | None = Field(None, gt=0)


class Grades(_Strict):
    """The least score of each grade; below C is D. A score is 0 to 100 (clamped)."""

    A: StrictInt
    B: StrictInt
    C: StrictInt

    @model_validator(mode="after")
    def _reachable(self) -> Grades:
        # Out of range or out of order, a grade is never given (A: 180, or B: 80 above A: 60), without a word.
        for grade, least in (("A", self.A), ("B", self.B), ("C", self.C)):
            if least > 100:
                raise ValueError(f"{grade}: {least} is above 100, the highest score: no lead would be graded {grade}")
            if least < 1:
                raise ValueError(f"{grade}: {least}: every score (0 to 100) reaches it, so no lead would be graded "
                                 f"below {grade}")
        for higher, lower in (("A", "B"), ("B", "C")):
            if getattr(self, lower) >= getattr(self, higher):
                raise ValueError(f"{lower}: {getattr(self, lower)} must be below {higher} ({getattr(self, higher)}), "
                                 f"or no lead would be graded {lower}")
        return self


class Thresholds(_Strict):
    mql: StrictInt = Field(ge=0, le=100)
    nurture: StrictInt = Field(ge=0, le=100)

    @model_validator(mode="after")
    def _ordered(self) -> Thresholds:
        if self.nurture > self.mql:
            raise ValueError("nurture threshold must not exceed the mql threshold")
        return self


class RuleSet(_Strict):
    version: Version
    grades: Grades
    thresholds: Thresholds
    fit: list[Rule] = []
    intent: list[Rule] = []
    disqualify: list[Rule] = []
    #: An intent rule a touch holds for within this many minutes after a touch it was counted for counts no
    #: more: the same form sent twice (a double click, a page reloaded) is one wish, not two. 0: every touch counts.
    repeats_within_minutes: Annotated[StrictFloat, BeforeValidator(_finite(
        "a number of minutes (0: every touch counts)"
    ))] = Field(10, ge=0, le=60 * 24 * 365)

    @field_validator("version", mode="before")
    @classmethod
    def _quoted(cls, version: Any) -> Any:
        # YAML reads an unquoted 2026-12-05 as a date and 3 as a number: "a valid string" alone did not say so.
        if isinstance(version, date):
            raise ValueError(f'{version} reads as a date, not text: quote it (version: "{version}")')
        if isinstance(version, int | float) and not isinstance(version, bool):
            # Read as a number, 1.10 is 1.1: only the writer knows what was meant.
            raise ValueError(f"{version} reads as a number, not text: quote it as you wrote it (version: \"...\")")
        return version

    @field_validator("fit", "intent", "disqualify")
    @classmethod
    def _named_apart(cls, rules: list[Rule], info: ValidationInfo) -> list[Rule]:
        # A reason names its rule, and a lead's reasons are all "why": two rules of one name cannot be told apart.
        # The lists are checked in order, each against itself and those before it.
        earlier: dict[str, str] = {}
        for category in _RULE_LISTS[:_RULE_LISTS.index(info.field_name)]:
            for r in info.data.get(category, ()):
                earlier.setdefault(r.rule, category)
        twice: list[str] = []
        for r in rules:
            if r.rule in earlier and r.rule not in twice:
                twice.append(r.rule)
            earlier.setdefault(r.rule, info.field_name)
        if twice:
            raise ValueError("; ".join(f"rule {name!r} is named twice (also in {earlier[name]}): every reason "
                                       f"names its rule, so give each rule a name of its own" for name in twice))
        return rules

    @field_validator("intent")
    @classmethod
    def _of_touches(cls, rules: list[Rule]) -> list[Rule]:
        # An intent rule is tested on every touch: one on the person would count once per touch (five newsletter
        # touches of a consenting person: five times a consent's points).
        for r in rules:
            if r.field not in TOUCH_FACTS:
                raise ValueError(f"rule {r.rule!r}: {r.field} is a fact about the person, not about a touch, so as an "
                                 f"intent rule it would count once for every touch: make it a fit rule (intent rules "
                                 f"test {', '.join(TOUCH_FACTS)})")
        return rules

    @field_validator("fit", "disqualify")
    @classmethod
    def _without_decay(cls, rules: list[Rule]) -> list[Rule]:
        # Only an intent rule's points decay (with its touch's age): on a rule of who the person is now it was read
        # and ignored without a word.
        for r in rules:
            if "half_life_days" in r.model_fields_set:
                raise ValueError(f"rule {r.rule!r}: half_life_days is for intent rules, whose points fade with the "
                                 f"touch's age; fit and disqualify rules judge the person as known now: remove it")
        return rules

    @field_validator("fit", "intent")
    @classmethod
    def _with_points(cls, rules: list[Rule]) -> list[Rule]:
        # Without points a rule loaded as 0 and its reason read "Asked for a demo 0".
        for r in rules:
            if "points" not in r.model_fields_set:
                raise ValueError(f"rule {r.rule!r} needs points (a whole number, below 0 to take points off): "
                                 f"without them it scores nothing")
        return rules

    @field_validator("disqualify")
    @classmethod
    def _without_points(cls, rules: list[Rule]) -> list[Rule]:
        # A knockout disqualifies whatever the score: its points were listed among the reasons and never counted,
        # so the reasons no longer added up to the score (-100 for a competitor, and still a score of 83).
        for r in rules:
            if "points" in r.model_fields_set:
                raise ValueError(f"rule {r.rule!r}: a disqualify rule has no points (it disqualifies the lead whatever "
                                 f"its score): remove points, or make it a fit rule with negative points")
        return rules


class InvalidRules(ValueError):
    pass


def parse_rules(raw: Mapping[str, Any]) -> RuleSet:
    try:
        return RuleSet.model_validate(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": _placed(e["loc"], raw), "msg": _unknown_key(e) or _type_reason(e) or e["msg"]}
                  for e in exc.errors()]
        raise InvalidRules(f"scoring rules are invalid: {describe(errors)}") from None


def rules_digest(rules: RuleSet) -> str:
    """What the rules say, but their version, in a few characters: a comment or the layout never changes it, a
    rule's points do. Stored beside the version each score was given under."""
    return hashlib.sha256(rules.model_dump_json(exclude={"version"}).encode()).hexdigest()[:16]


def unbumped_rules(version: str, digest: str, scored: tuple[str, str | None] | None) -> str | None:
    """Why rules (their ``version`` and ``rules_digest``) say otherwise than the same version did when the newest
    score was given (``scored``: its version and digest; None: no lead scored, or none since digests were kept),
    or None. Both sets of scores would carry one version, and a re-score's events, whose ids derive from it,
    would be taken for the earlier re-score's."""
    if scored is None or scored[0] != version or scored[1] in (None, digest):
        return None
    return (f"the rules file says otherwise than rules {version} did when the newest score was given, yet its "
            f"version is still {version}: bump version in the file (and restart scoring)")


def rules_disagreement(version: str, scored: tuple[str, str | None] | None) -> str | None:
    """Why a re-score under rules of ``version`` may not score as the running service does (``scored`` as in
    ``unbumped_rules``), or None. A warning, not a refusal: a service restarted with them that has scored no lead
    since looks the same, and that is the order a re-score is meant to come in."""
    if scored is None or scored[0] == version:
        return None
    return (f"the rules file is version {version}, but the newest score was given under {scored[0]}: unless scoring "
            f"was restarted with {version} (and has scored no lead since), restart it, or later touches are scored "
            f"under {scored[0]} again")


def _placed(loc: tuple[Any, ...], raw: Any) -> tuple[Any, ...]:
    """Where an error is, a rule named by its name (``fit: rule 'Enterprise': points``), not its place in its
    list (``fit.0.points``), which its author would have to count to; a rule without a name keeps its place."""
    if len(loc) < 2 or loc[0] not in _RULE_LISTS or not isinstance(loc[1], int):
        return loc
    try:
        name = raw[loc[0]][loc[1]]["rule"]
    except (KeyError, IndexError, TypeError):
        return loc
    if not isinstance(name, str) or not name.strip():
        return loc
    rule = f"{loc[0]}: rule {name!r}"
    within = ".".join(map(str, loc[2:]))
    # One part: describe joins parts with dots, and "fit: rule 'Enterprise'" is said as it is.
    return (f"{rule}: {within}" if within else rule,)


def _unknown_key(error: Mapping[str, Any]) -> str | None:
    """A key none of the rules' parts takes, said beside those it does take (a misspelt point: beside points:).
    None: no unknown key."""
    if error["type"] != "extra_forbidden":
        return None
    parent = tuple(error["loc"][:-1])
    if not parent:
        model, of = RuleSet, "the rules file"
    elif parent[0] in _RULE_LISTS and len(parent) == 2:
        model, of = Rule, "a rule"
    else:
        model, of = {("grades",): (Grades, "grades"), ("thresholds",): (Thresholds, "thresholds")}.get(
            parent, (None, ""))
        if model is None:
            return None
    # A rule's name first, though Condition declares its own fields before it.
    known = ", ".join(sorted((f.alias or name for name, f in model.model_fields.items()), key=lambda k: k != "rule"))
    return f"is not a key {of} takes (misspelt?); it takes {known}"


#: What each strict type of the rules takes, as a refusal says it.
_TAKES = {"int_type": "a whole number", "float_type": "a number", "bool_type": "true or false", "string_type": "text"}


def _yaml_reads_as_text(value: str) -> bool:
    """Whether ``value``, unquoted, is a number to Python but text to YAML 1.1 (``1e3``, ``5E2``)."""
    try:
        number = float(value)
    except ValueError:
        return False
    return "e" in value.lower() and value.strip() == value and math.isfinite(number)


def _type_reason(error: Mapping[str, Any]) -> str | None:
    """A value of the wrong type, said as what it reads as and what to write (pydantic says only "Input should be
    a valid integer", which does not say that the "15" it was given is text). None: no type error."""
    takes = _TAKES.get(error["type"])
    if takes is None:
        return None
    value = error.get("input")
    if isinstance(value, bool):
        read = f"{_shown(value)} reads as yes or no"
    elif isinstance(value, str):
        if takes in ("a number", "a whole number") and _yaml_reads_as_text(value):
            # YAML 1.1 reads 1e3 as text (its exponent needs a dot and a sign): "write it unquoted" would not do.
            return (f"{value!r} is text to YAML, which reads a number with an exponent only written like 1.0e+3: "
                    f"write {float(value):g}")
        read = f"{value!r} is text"
    elif isinstance(value, float) and takes == "a whole number":
        return (f"{value!r} is written with a decimal point: write {value:.0f}" if value.is_integer()
                else f"{value!r} is not a whole number: write one, unquoted")
    elif isinstance(value, int | float):
        read = f"{value!r} is a number"
    elif value is None:
        read = "nothing is given"
    else:
        read = f"a {type(value).__name__} is given"
    return f"{read}, not {takes}: " + ("quote it" if takes == "text" else f"write {takes}, unquoted")


def _norm(v: Any) -> Any:
    return v.casefold() if isinstance(v, str) else v


def _norm_domain(v: Any) -> Any:
    return _norm(ascii_domain(v)) if isinstance(v, str) else v


def _norm_for(field: str) -> Callable[[Any], Any]:
    """How a rule's values and a lead's fact are compared: a domain in its ASCII form, any text case-folded."""
    return _norm_domain if field in DOMAIN_FACTS else _norm


@dataclass(frozen=True)
class TouchFacts:
    """One touch of a lead, as scoring keeps it: when, and what the person did."""

    touch_id: uuid.UUID
    at: datetime
    facts: Mapping[str, Any]


def touch_of(lead: LeadEnriched, message_before: str | None = None) -> TouchFacts:
    """The touch this enriched lead carries: its capture (the lead's id and first touch) or a later touch.

    A later touch's contact is what is known of the person after it, an earlier message included when this
    submission had none: the touch wrote a message only when its contact's differs from ``message_before``
    (the lead's as last scored), or every later touch would score the first message again."""
    message = lead.contact.message
    if lead.touch is None:
        return TouchFacts(lead.lead_id, lead.captured_at, _touch_facts(lead.attribution, message))
    written = message if message != message_before else None
    return TouchFacts(lead.touch.touch_id, lead.touch.at, _touch_facts(lead.touch.attribution, written))


def _touch_facts(a: Attribution, message: str | None) -> dict[str, Any]:
    return {"form_id": a.form_id, "offer": a.offer, "utm_source": a.utm_source, "utm_medium": a.utm_medium,
            "utm_campaign": a.utm_campaign, "utm_content": a.utm_content, "has_message": bool(message)}


def facts_of(lead: LeadEnriched) -> dict[str, Any]:
    e, a, c = lead.enrichment, lead.attribution, lead.contact

    def val(s: Any) -> Any:
        return s.value if s is not None else None

    return {
        "industry": val(e.industry),
        "employee_count": val(e.employee_count),
        "country": val(e.country),
        "company_country": val(e.company_country),
        "seniority": val(e.seniority),
        "department": val(e.department),
        "is_free_mail": e.is_free_mail.value,
        "is_disposable": e.is_disposable.value,
        "email_domain": ascii_domain(e.email_domain),
        "company_domain": ascii_domain(e.company_domain.value) if e.company_domain else None,
        "job_title": c.job_title,
        "form_id": a.form_id,
        "offer": a.offer,
        "utm_source": a.utm_source,
        "utm_medium": a.utm_medium,
        "utm_campaign": a.utm_campaign,
        "utm_content": a.utm_content,
        "has_message": bool(c.message),
        "has_phone": e.phone_e164 is not None,
        "marketing_consent": c.marketing_consent,
    }


def reads_of(fact: str, lead: LeadEnriched) -> list[str]:
    """The contact fields a rule on ``fact`` read for ``lead`` (``READS``). A country the form gave tells of that
    field alone; any other (the phone's, the company's, none) tells of both: that the form gave none, and the
    phone's country or that no valid phone was given."""
    if fact == "country" and lead.enrichment.country is not None and lead.enrichment.country.source == "form":
        return ["country"]
    return list(READS[fact])


def grade_for(value: int, grades: Grades) -> Grade:
    if value >= grades.A:
        return "A"
    if value >= grades.B:
        return "B"
    if value >= grades.C:
        return "C"
    return "D"


def decayed(points: int, half_life_days: float | None, age_days: float) -> float:
    """A touch's points ``age_days`` after it: halved every half-life (a touch from the future counts fully)."""
    if half_life_days is None or age_days <= 0:
        return float(points)
    return points * 0.5 ** (age_days / half_life_days)


def score(lead: LeadEnriched, rules: RuleSet, touches: Sequence[TouchFacts] = (), now: datetime | None = None) -> Score:
    """Fit and knockouts from ``lead`` (the latest data); intent summed over ``touches`` (default: the lead's
    own touch), each rule's points decayed to ``now`` (default: no decay)."""
    facts = facts_of(lead)
    touches = list(touches) or [touch_of(lead)]
    fit = [r for r in rules.fit if r.holds(facts)]
    knockouts = [r for r in rules.disqualify if r.holds(facts)]
    intent: list[tuple[Rule, TouchFacts, float]] = []
    counted_at: dict[str, datetime] = {}  # each intent rule's latest touch counted
    repeat = timedelta(minutes=rules.repeats_within_minutes)
    for touch in sorted(touches, key=lambda t: (t.at, str(t.touch_id))):
        seen = {**facts, **touch.facts}
        age_days = (now - touch.at).total_seconds() / 86400 if now is not None else 0.0
        for r in rules.intent:
            if not r.holds(seen) or (r.rule in counted_at and touch.at - counted_at[r.rule] < repeat):
                continue
            counted_at[r.rule] = touch.at
            intent.append((r, touch, decayed(r.points, r.half_life_days, age_days)))
    fit_points = sum(r.points for r in fit)
    # Each touch's decayed points are rounded as its reason shows them: the reasons add up to the score.
    intent_points = sum(round(points) for _, _, points in intent)
    value = max(0, min(100, fit_points + intent_points))
    decision: Decision
    if knockouts or value < rules.thresholds.nurture:
        decision = "disqualified"
    elif value >= rules.thresholds.mql:
        decision = "mql"
    else:
        decision = "nurture"
    reasons = (
        [ScoreReason(rule=r.rule, category="fit", points=r.points, reads=reads_of(r.field, lead)) for r in fit]
        + [ScoreReason(rule=r.rule, category="intent", points=round(points), touch_id=t.touch_id, touch_at=t.at,
                       full_points=r.points, reads=reads_of(r.field, lead)) for r, t, points in intent]
        + [ScoreReason(rule=r.rule, category="disqualify", points=r.points, reads=reads_of(r.field, lead))
           for r in knockouts]
    )
    return Score(
        value=value, grade=grade_for(value, rules.grades), fit=fit_points, intent=intent_points,
        decision=decision, reasons=reasons, rules_version=rules.version,
    )


def stage_after(before: str | None, decision: str) -> str:
    """Where a lead stands after a score: a first score decides; a later one only ever recycles nurture to MQL
    (a lead with sales stays with sales, and a touch never disqualifies a person who came back)."""
    if before is None:
        return decision
    if before == "nurture" and decision == "mql":
        return "mql"
    return before


#: What new rules do to an open lead. A nurture lead is scoring's alone (it never reached sales), so new rules
#: move it: to MQL (recycled to sales), or to disqualified, closed, when a disqualify rule now holds for it
#: (``knocked_out``) or it scores under the nurture bar now (``below_nurture``). An MQL only sales sends back:
#: each way it falls (``mql_knocked_out``, ``mql_below_nurture``, ``below_bar``) is counted, not applied.
Move = Literal["to_mql", "knocked_out", "below_nurture", "mql_knocked_out", "mql_below_nurture", "below_bar"]
#: The moves a re-score applies, and the stage each leaves its lead in; the others it only counts.
APPLIED: Mapping[str, str] = {"to_mql": "mql", "knocked_out": "disqualified", "below_nurture": "disqualified"}


def knockouts_of(s: Score) -> list[str]:
    """Every disqualify rule that holds for the lead ``s`` scores, in the rules file's order (none: none holds). A
    knocked-out lead is counted, and its step explained, under each: named under the first alone, a competitor
    with a disposable address looked like a competitor only, and a rule added after another that holds for the
    same leads was counted for none of them."""
    return [r.rule for r in s.reasons if r.category == "disqualify"]


def rescore_move(before: str, s: Score, *, knocked_out_before: Collection[str] = ()) -> Move | None:
    """What new rules, which score an open lead ``s``, do to it in stage ``before`` (nurture or mql).
    ``knocked_out_before``: the disqualify rules its stored score named already, which a later touch brought (a
    touch never disqualifies a person who came back): a nurture lead those alone hold for stays as the live path
    left it; one a rule not among them holds for now is knocked out by the new rules."""
    knockouts = knockouts_of(s)
    knocked_out = bool(knockouts)
    if before == "nurture":
        if knocked_out:
            return None if set(knockouts) <= set(knocked_out_before) else "knocked_out"
        return {"disqualified": "below_nurture", "mql": "to_mql"}.get(s.decision)
    if before == "mql" and s.decision != "mql":
        if knocked_out:
            return "mql_knocked_out"
        return "mql_below_nurture" if s.decision == "disqualified" else "below_bar"
    return None


#: How far from the present a re-score may be scored as of (``rescore --at``): room to run for real, later the
#: same day, at the moment a dry run was for. Further back, intent would decay only to then and the leads it
#: recycles would step to MQL then, perhaps before they were captured (a year's typo does that); further
#: ahead, intent would decay by days not yet passed and the steps would be dated in the future.
RESCORE_AT_TOLERANCE = timedelta(days=1)


def check_rescore_at(at: datetime, now: datetime, *, dry_run: bool = True) -> None:
    """Raises ValueError, saying why, for a moment to re-score as of more than ``RESCORE_AT_TOLERANCE`` from
    ``now``, or, for a real run (not ``dry_run``), after ``now``: a dry run may look ahead, but a real one writes
    its scores stamped with it, and until then they would be the newest (what the comparison of rules at
    scoring's start and at the next re-score reads), and its steps dated in the future."""
    shown = f"{at.isoformat(timespec='minutes')} is {{}} now ({now.isoformat(timespec='minutes')})"
    if at < now - RESCORE_AT_TOLERANCE:
        raise ValueError(shown.format("more than a day before") + ": intent would decay only to then, and the "
                         "leads lifted to MQL would step to MQL then, perhaps before they were captured; give one "
                         "within a day of now")
    if at > now + RESCORE_AT_TOLERANCE:
        raise ValueError(shown.format("more than a day after") + ": intent would decay by days not yet passed, "
                         "and the leads lifted to MQL would step to MQL in the future; give one within a day of now")
    if at > now and not dry_run:
        raise ValueError(shown.format("after") + ": a real re-score would stamp its scores and date its steps in "
                         "the future, and until then its scores would be the newest, which the comparison of "
                         "rules reads instead of the running service's; run it at that moment or later with the "
                         "same --at, or add --dry-run to see now what it would do")



#: How many of the leads whose stored copy cannot be read a re-score's report names.
UNREADABLE_NAMED = 10


@dataclass
class RescoreSummary:
    """What a re-score changed (or would change): moves by grade and source, and how many leads it looked at."""

    rules_version: str
    leads: int = 0
    #: Leads whose score or decision changes: new knockouts and bars change the decision, not the points.
    changed_scores: int = 0
    #: Leads scored before scoring kept them, which cannot be re-scored.
    skipped: int = 0
    #: Leads scoring holds as open that the lifecycle has closed since (won, lost, merged away): left out.
    closed: int = 0
    #: Leads scored after the re-score's moment (a touch, a new lead, since a dry run's --at): their newer score
    #: stands, left as they are; re-scored as of before it, a lead lifted to MQL would step there before it was
    #: captured.
    newer: int = 0
    #: Leads whose stored copy this version's model refuses (kept by an older one): left as they are; the first
    #: few of them by id.
    unreadable: int = 0
    unreadable_leads: list[uuid.UUID] = dataclasses.field(default_factory=list)
    moves: dict[tuple[str, str, str], int] = dataclasses.field(default_factory=dict)
    #: The knocked-out leads (``knocked_out``, ``mql_knocked_out``) by each disqualify rule that knocks them out: a
    #: lead several hold for is counted under each, so these may add up to more than the move's leads.
    knockouts: dict[tuple[str, str], int] = dataclasses.field(default_factory=dict)

    def add(self, move: Move | None, grade: str, source: str | None, score_changed: bool,
            knockouts: Sequence[str] = ()) -> None:
        self.leads += 1
        self.changed_scores += score_changed
        if move is not None:
            key = (move, grade, source or "(none)")
            self.moves[key] = self.moves.get(key, 0) + 1
        for knockout in knockouts if move is not None else ():
            self.knockouts[(move, knockout)] = self.knockouts.get((move, knockout), 0) + 1

    def count(self, move: Move) -> int:
        return sum(n for (m, _, _), n in self.moves.items() if m == move)

    @property
    def looked_at(self) -> int:
        """Every lead a page held, whichever way it went."""
        return self.leads + self.skipped + self.closed + self.unreadable + self.newer

    def merge(self, other: RescoreSummary) -> None:
        """Add ``other``'s counts (a page's, once it is committed) to these."""
        self.leads += other.leads
        self.changed_scores += other.changed_scores
        self.skipped += other.skipped
        self.closed += other.closed
        self.unreadable += other.unreadable
        self.newer += other.newer
        self.unreadable_leads += other.unreadable_leads[:max(0, UNREADABLE_NAMED - len(self.unreadable_leads))]
        for key, n in other.moves.items():
            self.moves[key] = self.moves.get(key, 0) + n
        for knocked, n in other.knockouts.items():
            self.knockouts[knocked] = self.knockouts.get(knocked, 0) + n


def explain(s: Score, rules: RuleSet) -> str:
    """One line for the lifecycle: why this lead went where it went."""
    if s.decision == "disqualified":
        why = ", ".join(knockouts_of(s)) or f"score {s.value} below {rules.thresholds.nurture}"
    elif s.decision == "mql":
        why = f"score {s.value} reached the MQL bar of {rules.thresholds.mql}"
    else:
        why = f"score {s.value} below the MQL bar of {rules.thresholds.mql}"
    return f"{why} (grade {s.grade}, rules {s.rules_version})"
