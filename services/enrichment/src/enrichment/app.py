"""enrichment's composition root."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from leadpipe_common.service import consumer_app

from enrichment.handlers import build_handlers
from enrichment.reference import load_reference
from enrichment.settings import EnrichmentSettings
from enrichment.store import inbox


def create_app(settings: EnrichmentSettings | None = None) -> FastAPI:
    settings = settings or EnrichmentSettings()
    ref = load_reference(settings.companies_file, settings.titles_file, settings.country_aliases_file)
    return consumer_app(
        name="enrichment",
        summary="Turns an e-mail address into a company, and a job title into seniority and department.",
        settings=settings,
        inbox_table=inbox,
        handlers=lambda ctx: build_handlers(ref, clock=lambda: datetime.now(UTC)),
    )
