"""scoring's composition root."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import yaml
from fastapi import FastAPI

from leadpipe_common.service import consumer_app

from scoring.domain import RuleSet, parse_rules
from scoring.handlers import build_handlers
from scoring.settings import ScoringSettings
from scoring.store import inbox


def load_rules(path: Path) -> RuleSet:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_rules(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    rules = load_rules(settings.rules_file)
    return consumer_app(
        name="scoring",
        summary=f"Scores enriched leads by fit and intent and decides MQL, nurture or disqualified (rules {rules.version}).",
        settings=settings,
        inbox_table=inbox,
        handlers=lambda ctx: build_handlers(rules, clock=lambda: datetime.now(UTC)),
    )
