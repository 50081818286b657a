"""Structured logging for every service.

Guarantees: one line per event, JSON when stderr is not a terminal (or when
``LOG_JSON=true``), readable key=value on a terminal. Context bound with
``structlog.contextvars`` appears on every line logged meanwhile: the runner
and every handler walk a batch with :func:`each`, which puts the event in hand
in a context variable, so every line written about an event names its
``lead_id`` and ``event_id`` (the runner's dead-letter lines name the record's
lead and event id too). The ids are rendered only when a line is written: a
batch walked in silence costs one variable set per event (binding them as
structlog context vars cost ~18 us an event, twice per event in every stage).
Standard-library loggers (uvicorn, aiokafka, alembic) go through the same
renderer. On a terminal, control characters in a line's message and values
are written escaped (``\\n``, ``\\x1b``): a request path or a header may hold
them, and raw they would forge lines or drive the operator's terminal (JSON
escapes them itself). An exception from Postgres or pydantic's validation, or
one with either anywhere in its chain (raised while handling it, say), is
logged without the values its message quotes (``values_left_out``): a
traceback of a failed insert would otherwise print the lead's row, and one of
a stored event read back under a stricter model its contact; so is one no
code caught, which the event loop of a service or a command (``run_command``)
hands to ``loop_errors``. httpx's
own lines (every request's URL, which for a webhook may hold a token) are
left out below warnings.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Coroutine, Iterable, Iterator
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any, TypeVar

import structlog

if TYPE_CHECKING:
    from leadpipe_common.envelope import Envelope

E = TypeVar("E", bound="Envelope")
T = TypeVar("T")

#: The event :func:`each` has in hand in this context, if any.
_IN_HAND: ContextVar[Envelope | None] = ContextVar("leadpipe_event_in_hand", default=None)


def values_left_out(_logger: object, _method: str, event: dict) -> dict:
    """A structlog processor: an exception with an error from Postgres or a pydantic ValidationError in its chain
    (wrapped, raised while handling one, in a group: ``db.quotes_values``) is written as its traceback's frames
    with each exception of the chain told by ``db.error_text``, not by its message whole: a Postgres error's DETAIL
    (``Failing row contains (...)``) and quoted values, and a ValidationError's input values, hold a lead's
    personal data. What asyncpg's error about a value it could not bind was raised from (the codec's error, which
    quotes the value) is told by its class alone. Any other exception is left to the renderer."""
    exc_info = event.get("exc_info")
    if not exc_info:
        return event
    exc = (exc_info if isinstance(exc_info, BaseException)
           else exc_info[1] if isinstance(exc_info, tuple) else sys.exc_info()[1])
    if exc is None:
        return event
    from leadpipe_common.db import quotes_values  # the database's modules only once one failed

    if not quotes_values(exc):
        return event
    del event["exc_info"]
    event["exception"] = "".join(_chain_told(exc, set())).rstrip("\n")
    return event


def _chain_told(exc: BaseException, seen: set[int], *, unbound: bool = False) -> Iterator[str]:
    """``exc``'s traceback as Python writes it (what it was caused by or raised while handling first, a group's
    members after it), each exception told by ``db.error_text``; ``unbound``, what asyncpg's error about a value
    it could not bind came of (``db.unbound_value``), by its class alone, as its text quotes the value."""
    from leadpipe_common.db import error_text, is_validation_error, postgres_error, unbound_value

    seen.add(id(exc))
    cause, context = exc.__cause__, None if exc.__suppress_context__ else exc.__context__
    if cause is not None and id(cause) not in seen:
        yield from _chain_told(cause, seen, unbound=unbound or unbound_value(exc))
        yield "\nThe above exception was the direct cause of the following exception:\n\n"
    elif context is not None and id(context) not in seen:
        yield from _chain_told(context, seen, unbound=unbound)
        yield "\nDuring handling of the above exception, another exception occurred:\n\n"
    if exc.__traceback__ is not None:
        yield "Traceback (most recent call last):\n"
        yield from traceback.format_tb(exc.__traceback__)
    if unbound and postgres_error(exc) is None and not is_validation_error(exc):
        yield f"{type(exc).__name__}: (about a value asyncpg could not bind, which its text quotes: not shown)\n"
    else:
        yield error_text(exc) + "\n"
    if isinstance(exc, BaseExceptionGroup):
        for number, member in enumerate(exc.exceptions, 1):
            if id(member) not in seen:
                told = "".join(_chain_told(member, seen, unbound=unbound))
                yield f"  +---------------- {number} ----------------\n" + textwrap.indent(told, "  | ")


def loop_errors(_loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """The event loop's handler of what no code caught (a task's exception never retrieved, a callback's): its own
    wrote the task's repr, which holds its exception's text whole, a ValidationError's quoting a lead's values.
    This writes the loop's message and the exception through the logger (``values_left_out``), and the task by
    its name."""
    task = context.get("task") or context.get("future")
    get_logger("asyncio").error(context.get("message") or "an error no code caught",
                                task=task.get_name() if isinstance(task, asyncio.Task) else None,
                                exc_info=context.get("exception"))


def run_command(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)`` for a command (replay, redrive, rescore, keys, migrate...): its loop hands what no code
    caught to ``loop_errors``, as a service's does, so a forgotten task's exception is said without the values it
    quotes there too."""
    async def with_errors_logged() -> T:
        asyncio.get_running_loop().set_exception_handler(loop_errors)
        return await main

    return asyncio.run(with_errors_logged())


def name_event_in_hand(_logger: object, _method: str, event: dict) -> dict:
    """A structlog processor: the ``lead_id`` and ``event_id`` of the event in hand, unless the line names them."""
    env = _IN_HAND.get()
    if env is not None:
        event.setdefault("lead_id", str(env.data.lead_id))
        event.setdefault("event_id", str(env.id))
    return event


_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escaped(text: str) -> str:
    """``text`` with its control characters escaped as Python would write them: for a terminal, which would run
    an escape sequence a record's key or a client's header holds (retitle the window, clear the screen)."""
    return _CONTROL.sub(lambda m: m.group().encode("unicode_escape").decode("ascii"), text)


def message_control_characters_escaped(_logger: object, _method: str, event: dict) -> dict:
    """A structlog processor for the console: the message and every text value with their control characters
    escaped as Python would write them. The console renderer quotes a value holding a newline but writes an ESC
    or a BEL as it is (a record's key, a header's text: they retitled or cleared the operator's terminal), and
    the message whole (a library's may quote what a client sent)."""
    for key, value in event.items():
        # A traceback is the renderer's to lay out, line by line (values_left_out has taken the values out of it).
        if key not in _LAID_OUT and isinstance(value, str) and _CONTROL.search(value):
            # The message as text; a value as its repr, which the renderer writes as it is (quoted and escaped once).
            event[key] = escaped(value) if key == "event" else _Quoted(value)
    return event


#: What the console renderer lays out itself, a line at a time.
_LAID_OUT = frozenset({"exception", "exc_info", "stack"})


class _Quoted:
    """A text value the console renderer writes as its ``repr``: escaped, quoted, once."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return repr(self.text)


#: The loggers of libraries ``configure`` holds at WARNING (or the root's level, when higher).
QUIETED = ("aiokafka", "httpx", "alembic")


def level_named(value: object) -> object:
    """A level as ``LOG_LEVEL`` may give it: any case, and WARN as Python's logging takes it."""
    value = value.upper() if isinstance(value, str) else value
    return "WARNING" if value == "WARN" else value


def configure_command(name: str) -> None:
    """A command's logging (``configure``), as ``LOG_LEVEL`` and ``LOG_JSON`` ask: its log on stderr, apart from
    what it prints on stdout. A value they cannot take is left to the command's settings to refuse, when it reads
    them; the defaults hold meanwhile."""
    from pydantic import TypeAdapter, ValidationError

    level = level_named(os.environ.get("LOG_LEVEL") or "INFO")
    try:
        json = TypeAdapter(bool | None).validate_python(os.environ.get("LOG_JSON") or None)
    except ValidationError:
        json = None
    configure(name, level if level in logging.getLevelNamesMapping() else "INFO", json, cache=False)


def configure(service: str, level: str = "INFO", json: bool | None = None, *, cache: bool = True) -> None:
    """Every log line of the process, structlog's and the standard library's, on stderr: JSON unless stderr is a
    terminal (or ``json`` says). ``cache``: each logger keeps this configuration from its first line on (a
    serving process's saving); a command's loggers do not, so that configuring again (a test's) reaches them."""
    as_json = (not sys.stderr.isatty()) if json is None else json

    def add_service(_logger: object, _method: str, event: dict) -> dict:
        event.setdefault("service", service)
        return event

    shared = [
        # Before the bound context is merged in: the event in hand names the line, over a lead_id bound
        # for a wider scope (as rebinding per event did).
        name_event_in_hand,
        structlog.contextvars.merge_contextvars,
        add_service,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer()
        if as_json
        # Plain tracebacks: one quoting values comes as text without them (values_left_out), which
        # the pretty formatter would not take.
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty(),
                                           exception_formatter=structlog.dev.plain_traceback)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=cache,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            values_left_out,
            structlog.processors.format_exc_info if as_json else message_control_characters_escaped,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # aiokafka is chatty at INFO about every group join; httpx writes every request's URL at INFO, whole (a
    # webhook's may hold a token); a command's migration (alembic) says which plugins it set up, a line each.
    for chatty in QUIETED:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))
    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)


def each(batch: Iterable[E]) -> Iterator[E]:
    """``batch``'s events one by one, each one's ``lead_id`` and ``event_id`` named on every log line
    written while it is in hand (by the runner, a handler, or anything they call); after the batch, the
    event in hand before it (if ``each`` is nested) is in hand again."""
    token = _IN_HAND.set(None)
    try:
        for env in batch:
            _IN_HAND.set(env)
            yield env
    finally:
        _IN_HAND.reset(token)
