"""scoring's composition root."""

from __future__ import annotations

from datetime import UTC, datetime

import yaml
from fastapi import FastAPI

from leadpipe_common import topics
from leadpipe_common.service import consumer_app

from scoring.domain import parse_rules
from scoring.handlers import build_handlers
from scoring.settings import ScoringSettings
from scoring.store import inbox


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    rules = parse_rules(yaml.safe_load(settings.rules_file.read_text(encoding="utf-8")) or {})
    return consumer_app(
        name="scoring",
        summary=f"Scores enriched leads by fit and intent and decides MQL, nurture or disqualified (rules {rules.version}).",
        settings=settings,
        input_topics=[topics.ENRICHED],
        inbox_table=inbox,
        handlers=lambda: build_handlers(rules, clock=lambda: datetime.now(UTC)),
    )
