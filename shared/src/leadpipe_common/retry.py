"""How every retry loop of leadpipe waits: capped exponential backoff with jitter.

Guarantees: the n-th consecutive failure (n from 0) waits between half and
all of ``min(cap, base * 2**n)``; the random half keeps replicas that failed
together (a broker or database blip) from retrying in lockstep, and the fixed
half keeps a retry from coming back at once.
"""

from __future__ import annotations

import random

_jitter = random.Random()


def backoff(attempt: int, *, base: float = 0.1, cap: float = 30.0) -> float:
    """Seconds to wait after the ``attempt``-th consecutive failure (0 = the first)."""
    ceiling = min(cap, base * 2 ** min(attempt, 63))
    return ceiling / 2 + _jitter.uniform(0, ceiling / 2)
