"""routing's composition root."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import FastAPI

from leadpipe_common.http import install_problem_handlers
from leadpipe_common.outbox import OutboxRelay
from leadpipe_common.service import Context, consumer_app

from routing.api import router
from routing.handlers import build_handlers
from routing.settings import RoutingSettings
from routing.sla import SlaWatch
from routing.store import inbox, outbox


def create_app(settings: RoutingSettings | None = None) -> FastAPI:
    settings = settings or RoutingSettings()
    data = settings.load_data()

    def clock() -> datetime:
        return datetime.now(UTC)

    def background(ctx: Context) -> list:
        relay = OutboxRelay(ctx.engine, ctx.producer, outbox, idle_s=settings.outbox_idle_s)
        ctx.extras.update(data=data, relay=relay)
        return [relay, SlaWatch(ctx.sessionmaker, data, clock, settings.sla_check_s, on_events=relay.wake)]

    app = consumer_app(
        name="routing",
        summary="Hands MQLs to the account owner or a fair weighted rotation, holds reps to the hand-off SLA, "
                "and takes sales feedback.",
        settings=settings,
        inbox_table=inbox,
        handlers=lambda ctx: build_handlers(data, clock=clock),
        routers=[router],
        background=background,
    )
    install_problem_handlers(app)
    return app
