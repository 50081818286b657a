"""Structured logging for every service.

Guarantees: one line per event, JSON when stderr is not a terminal (or when
``LOG_JSON=true``), readable key=value on a terminal. Context bound with
``structlog.contextvars`` appears on every line logged meanwhile: the runner
and every handler walk a batch with :func:`each`, which binds the event's
``lead_id`` and ``event_id`` while it is in hand, so every line written about
an event names it (the runner's dead-letter lines name the record's lead and
event id too). Standard-library loggers (uvicorn, aiokafka, alembic) go
through the same renderer.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, TypeVar

import structlog

if TYPE_CHECKING:
    from leadpipe_common.envelope import Envelope

E = TypeVar("E", bound="Envelope")


def configure(service: str, level: str = "INFO", json: bool | None = None) -> None:
    as_json = (not sys.stderr.isatty()) if json is None else json

    def add_service(_logger: object, _method: str, event: dict) -> dict:
        event.setdefault("service", service)
        return event

    shared = [
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info if as_json else (lambda _l, _m, e: e),
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every group join; keep warnings.
    logging.getLogger("aiokafka").setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def each(batch: Iterable[E]) -> Iterator[E]:
    """``batch``'s events one by one, each one's ``lead_id`` and ``event_id`` bound to every log line
    written while it is in hand (by the runner, a handler, or anything they call)."""
    for env in batch:
        with structlog.contextvars.bound_contextvars(lead_id=str(env.data.lead_id), event_id=str(env.id)):
            yield env
