"""reporting's composition root: the lifecycle consumer, the report API and the dashboard."""

from __future__ import annotations

from fastapi import FastAPI

from leadpipe_common.http import install_problem_handlers
from leadpipe_common.service import consumer_app

from reporting.api import router as api_router
from reporting.dashboard import router as dashboard_router
from reporting.handlers import HANDLERS
from reporting.settings import ReportingSettings


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    settings = settings or ReportingSettings()
    app = consumer_app(
        name="reporting",
        summary="The shared funnel, closed-loop attribution, velocity and SLA reports, built from leads.lifecycle.",
        settings=settings,
        inbox_table=None,
        handlers=lambda ctx: HANDLERS,
        routers=[api_router, dashboard_router],
        produces=False,
    )
    install_problem_handlers(app)
    return app
