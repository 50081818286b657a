"""routing's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

from fastapi import FastAPI

from leadpipe_common.service import consumer_app, utc_now

from routing.handlers import Routing
from routing.service import SERVICE
from routing.settings import RoutingSettings


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    files = settings.files
    reference = files.load()
    return consumer_app(SERVICE, settings, lambda clients: Routing(reference, clock=utc_now, files=files))
