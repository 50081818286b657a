"""enrichment's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

from fastapi import FastAPI

from leadpipe_common.service import consumer_app, utc_now

from enrichment.handlers import Enrichment
from enrichment.reference import load_reference
from enrichment.service import SERVICE
from enrichment.settings import EnrichmentSettings


def create_app(settings: EnrichmentSettings | None = None) -> FastAPI:
    settings = settings or EnrichmentSettings()
    reference = load_reference(settings.companies_file, settings.titles_file, settings.country_aliases_file,
                               settings.personal_mail_file, settings.mail_typos_file)
    return consumer_app(SERVICE, settings, lambda clients: Enrichment(reference, clock=utc_now))
