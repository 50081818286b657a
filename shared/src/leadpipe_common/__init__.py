"""leadpipe's common library: plumbing shared by every service.

It holds the event contracts and how they travel (envelope, topics, producer,
consumer runner), the database helpers, settings, logging and the ops
endpoints. It holds no business rule: normalising, enriching, scoring and
routing live in each service's own ``domain`` module.

Guarantee: imported before structlog and httpx (every service's package
imports it first, so whatever imports a service's module, a console script,
``python -m`` or a uvicorn worker importing its app), it keeps rich and
pygments out of a process that does not ask for them itself
(``_without_console_extras``); one that does (typer's help, reporting's replay
progress) imports them as usual.
"""

import sys


def _without_console_extras() -> None:
    """structlog (for tracebacks rendered with rich, which leadpipe's logging never asks for: it renders them
    plainly) and httpx (for its own command line) import rich, and httpx pygments, whenever they are installed:
    ~4 MB resident in every serving process, for nothing (issue 12's memory floor). Both pass over an
    ImportError of either, so the two are made unimportable while structlog and httpx are first imported, and
    importable again right after. Nothing is done once any of the four was imported: too late for the first
    two, and with rich in but pygments kept out, structlog would take rich half-imported."""
    if any(name in sys.modules for name in ("structlog", "httpx", "rich", "pygments")):
        return
    kept_out = ("rich", "pygments")
    for name in kept_out:
        sys.modules[name] = None  # type: ignore[assignment]  # `import` raises ImportError for such an entry
    try:
        import httpx  # noqa: F401
        import structlog  # noqa: F401
    finally:
        for name in kept_out:
            del sys.modules[name]


_without_console_extras()
