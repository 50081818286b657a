"""routing's composition root: the only place that reads settings and builds what the service needs."""

from __future__ import annotations

import structlog
from fastapi import FastAPI

from leadpipe_common.service import consumer_app, utc_now

from routing.handlers import Routing
from routing.service import SERVICE
from routing.settings import RoutingSettings
from routing.sla import DATA_VERSION

log = structlog.get_logger(__name__)

#: The files that describe a sales team: bundled, they are a sample of fictional people, accounts and territories.
SAMPLE = ("reps_file", "accounts_file", "territories_file")


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    files = settings.files
    reference = files.load()
    DATA_VERSION.info({"version": reference.version})  # from the start, not only after a reload that changes it
    if sample := [settings.variable(name) for name in SAMPLE if name not in settings.model_fields_set]:
        # Nothing else would tell: leads are routed, to people who do not exist.
        log.warning("routing to the bundled sample team (fictional reps, accounts and territories); set your own "
                    "files (README: Reference data)", unset=sample)
    return consumer_app(SERVICE, settings, lambda clients: Routing(reference, clock=utc_now, files=files))
