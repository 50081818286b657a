"""routing's composition root."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from leadpipe_common import topics
from leadpipe_common.service import consumer_app

from routing.handlers import build_handlers
from routing.reference import load_routing_data
from routing.settings import RoutingSettings
from routing.store import inbox


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    data = load_routing_data(settings.reps_file, settings.accounts_file, settings.territories_file)
    return consumer_app(
        name="routing",
        summary="Hands MQLs to the account owner or, by territory and segment, to a fair weighted rotation.",
        settings=settings,
        input_topics=[topics.SCORED],
        inbox_table=inbox,
        handlers=lambda: build_handlers(data, clock=lambda: datetime.now(UTC)),
    )
