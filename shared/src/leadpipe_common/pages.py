"""The pages of the APIs' long lists (capture's quarantine, routing's queues): where a page ended, as a cursor the
next request passes back, and the ``Link`` header that names the next page.

Such a list is ordered by a moment, then an id (rows sharing a moment): a page ends at its last row's (moment,
id), and the next starts past it with a row comparison, whatever was written or taken from the list meanwhile. The
cursor is opaque to clients, so that what it holds may change; nothing in it is secret.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from starlette.requests import Request


def cursor(at: datetime, key: uuid.UUID) -> str:
    """Where a page ended, at the row of moment ``at`` and id ``key``, as the next request passes it."""
    return base64.urlsafe_b64encode(f"{at.isoformat()} {key}".encode()).rstrip(b"=").decode()


def parse_cursor(text: str, param: str) -> tuple[datetime, uuid.UUID]:
    """The (moment, id) a ``cursor`` names, the moment in UTC; ValueError saying what to pass instead as ``param``
    (the query parameter it came in)."""
    wrong = f"is not where a page of this list ended: pass the `{param}` of its Link header's rel=\"next\" as it is"
    try:
        held = base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True).decode()
        at, key = held.split(" ")
        moment = datetime.fromisoformat(at)
        if moment.tzinfo is None:  # never written so, and not comparable with a stored time
            raise ValueError(wrong)
        # In UTC here: a time whose UTC falls outside the calendar (0001-01-01T00:00:00+14:00) failed only once
        # asyncpg converted it, an OverflowError that answered 500.
        position = (moment.astimezone(UTC), uuid.UUID(key))
    except (ValueError, OverflowError):  # not base64 (binascii.Error), not UTF-8, not two parts, no time, no id
        raise ValueError(wrong) from None
    return position


def next_page(request: Request, route: str, query: Mapping[str, Any], **path_params: str) -> str:
    """The ``Link`` header naming the next page: the route named ``route`` (with its ``path_params``) and
    ``query``. A path, not a URL: behind a proxy the host this process sees is not the one the client asked. Under
    the prefix the proxy serves the service at (``root_path``), which a server may keep out of the request's path."""
    # Quoted here: the router puts a parameter into its path as it is given, a space or a ? too.
    quoted = {name: quote(value, safe="") for name, value in path_params.items()}
    path = request.scope.get("root_path", "") + request.app.url_path_for(route, **quoted)
    return f'<{path}?{urlencode(query)}>; rel="next"'
