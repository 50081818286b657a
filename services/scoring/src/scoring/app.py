"""scoring's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

from pathlib import Path

import yaml
from fastapi import FastAPI

from leadpipe_common.files import read_text
from leadpipe_common.service import consumer_app, utc_now

from scoring.domain import RuleSet, parse_rules
from scoring.handlers import Scoring
from scoring.service import SERVICE
from scoring.settings import ScoringSettings


def load_rules(path: Path, setting: str = "SCORING_RULES_FILE") -> RuleSet:
    """Raises ValueError naming the file (and, when it cannot be read, its setting) and what is wrong."""
    text = read_text(path, setting)
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    try:
        return parse_rules(raw)
    except ValueError as exc:
        raise ValueError(f"{path}: {exc}") from None


def create_app(settings: ScoringSettings | None = None) -> FastAPI:
    settings = settings or ScoringSettings()
    rules = load_rules(settings.rules_file)
    return consumer_app(SERVICE, settings, lambda clients: Scoring(rules, clock=utc_now))
