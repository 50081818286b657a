"""Rate limits on capture's public endpoints (counted as ``leadpipe_common.throttle`` counts).

Guarantees: a browser's submissions are counted per client address (an IPv6
address by its /64) and form (``CAPTURE_RATE_LIMIT``, or the form's
``rate_limit``; forms not in the forms file share one count); a server posting with
a ``capture:write`` key is counted per key (``CAPTURE_KEY_RATE_LIMIT``, or the
key's own limit), never per address. Over the limit is ``429`` with
``Retry-After``, before the body is read; a JSON post to ``/v1/leads`` naming a
form with its own ``rate_limit`` in the body is also counted under that form,
once the body is read. Wrong keys are counted per client address as on any
route that takes a key (``auth.check_key``, ``CAPTURE_BAD_KEY_RATE_LIMIT``),
the posts' and the quarantine's in one count, each once. ``X-Forwarded-For``
is believed only from ``CAPTURE_TRUSTED_PROXIES``. The counts live in each process's memory: with N
capture processes a client may get up to N times the limit.
"""

from __future__ import annotations

from collections.abc import Container

from leadpipe_common.throttle import counted_as


def browser_identity(address: str, form_id: str | None, forms: Container[str]) -> tuple[str, str, str]:
    """Whose count a browser's submission adds to: its address's (``counted_as``) for the form it names;
    forms not in the forms file share one count (``/v1/forms/x1``, ``/x2`` ... are not a fresh count each)."""
    return "address", counted_as(address), form_id if form_id is not None and form_id in forms else "api"
