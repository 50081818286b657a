"""reporting's composition root: the lifecycle consumer, the report API and the dashboard."""

from __future__ import annotations

from fastapi import FastAPI

from leadpipe_common.http import Problem
from leadpipe_common.service import consumer_app

from reporting.dashboard import problem_response
from reporting.handlers import Reporting
from reporting.service import SERVICE
from reporting.settings import ReportingSettings


def create_app(settings: ReportingSettings | None = None) -> FastAPI:
    app = consumer_app(SERVICE, settings or ReportingSettings(), lambda clients: Reporting())
    # The dashboard's own paths answer a browser's refusals as pages; the shared handlers render through this one.
    app.add_exception_handler(Problem, problem_response)  # type: ignore[arg-type]
    return app
