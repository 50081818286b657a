"""How fast work arrives, for loops that size their waits to the load (the consumer's fetch wait, a relay's linger).

Guarantees: pure arithmetic over the (count, monotonic seconds) pairs it is given: no clock of its own, no IO.
The rate follows a change of load within a time constant or two and decays towards 0 while nothing comes.
"""

from __future__ import annotations

import math


class Rate:
    """Items a second, as an exponential moving average with a time constant of ``tau_s``."""

    def __init__(self, tau_s: float = 1.0) -> None:
        self._tau = tau_s
        self._last: float | None = None
        self.per_s = 0.0

    def observe(self, count: int, now: float) -> float:
        """Note ``count`` items that came since the last call, at ``now``; returns the rate."""
        if self._last is not None and now > self._last:
            dt = now - self._last
            self.per_s += (1 - math.exp(-dt / self._tau)) * (count / dt - self.per_s)
        self._last = now
        return self.per_s
