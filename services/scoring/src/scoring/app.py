"""scoring's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from leadpipe_common.files import parse_yaml, read_text
from leadpipe_common.service import consumer_app, utc_now

from scoring.domain import RuleSet, parse_rules
from scoring.handlers import Scoring
from scoring.service import SERVICE
from scoring.settings import ScoringSettings


def load_rules(path: Path, setting: str = "SCORING_RULES_FILE") -> RuleSet:
    """Raises ValueError naming the file (and, when it cannot be read, its setting) and what is wrong."""
    raw = parse_yaml(read_text(path, setting), path) or {}
    try:
        return parse_rules(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    rules = load_rules(settings.rules_file)
    return consumer_app(SERVICE, settings, lambda clients: Scoring(rules, clock=utc_now))
