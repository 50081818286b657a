"""reporting's composition root: the lifecycle consumer, the report API and the dashboard."""

from __future__ import annotations

from fastapi import FastAPI

from leadpipe_common.service import consumer_app

from reporting.handlers import Reporting
from reporting.service import SERVICE
from reporting.settings import ReportingSettings


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    return consumer_app(SERVICE, settings or ReportingSettings(), lambda clients: Reporting())
