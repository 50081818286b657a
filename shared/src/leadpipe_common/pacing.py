"""How fast work arrives, for loops that size their waits to the load (the consumer's fetch wait, the lingers of
a relay and of capture's writer).

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

    def at(self, now: float) -> float:
        """The rate at ``now`` had nothing come since the last ``observe`` (nothing is changed)."""
        if self._last is None or now <= self._last:
            return self.per_s
        return self.per_s * math.exp(-(now - self._last) / self._tau)


class Linger:
    """How long a round holds still for more work once its first item is in: as long as ``target`` items take at
    the recent rate, at most ``max_s``; not at all when not one more is expected within it (the first item after
    a quiet spell, a trickle), where it would only delay. Unpaced (``target`` 0): always ``max_s``.

    A round's fixed cost (a transaction, a produce request) is so spread over about ``target`` items whatever
    the rate, and the faster they come the sooner each leaves.
    """

    def __init__(self, max_s: float, target: int = 0, tau_s: float = 1.0) -> None:
        self.max_s = max_s
        self.target = target
        self._rate = Rate(tau_s)

    def note(self, count: int, now: float) -> None:
        """A round took ``count`` items at ``now`` (monotonic seconds)."""
        self._rate.observe(count, now)

    def seconds(self, now: float | None = None) -> float:
        """The wait; given ``now``, at the rate decayed over the quiet time since the last round (a loop that
        only notes rounds with work in them, and none while nothing comes, must pass it)."""
        if not self.target:
            return self.max_s
        rate = self._rate.per_s if now is None else self._rate.at(now)
        if rate * self.max_s < 1:
            return 0.0
        return min(self.max_s, self.target / rate)
