"""How a service's Python heap is collected once it has started.

Guarantees: ``settle`` (a service's lifespan calls it once its context and
clients are built, before any of them connects or any task starts; later
calls in the same process do nothing) collects what startup left behind,
then freezes every object still alive (modules, classes, reference data,
compiled code: ~140,000 per process) out of the cyclic garbage collector,
and lets the youngest generation grow to ``YOUNG_THRESHOLD`` net
allocations before it is collected instead of CPython's 700. Reference
counting still frees almost every object the moment its last reference
goes; only reference cycles wait for a collection, and they still get one.
A frozen object is never collected as a cycle, which is why no connection or
task exists yet when it runs (reference data a service reloads later may
leave its frozen predecessor behind if that held cycles: bounded by reloads).

Why: on a drain of 6,000 leads on `make run` (2 cores) the collector took
6.8 s of the services' CPU (routing alone 2.1 s in 1,386 young, 126 middle
and 11 full collections, every full one walking every startup object);
frozen, 2.1 s; with the higher threshold as well, 0.9 s. Back to back in the
bench: the drain 690 -> 1,006 leads/s, capture alone 1,022 -> 1,438 req/s,
300 leads/s p50 3.0 -> 1.2 s; resident memory unchanged.
"""

from __future__ import annotations

import gc

#: Net container allocations before the youngest generation is collected (CPython's default: 700). A batch
#: of a few hundred records keeps tens of thousands of objects alive at once; at 700 each batch paid for
#: dozens of collections that each walked all of them and found next to no cycles.
YOUNG_THRESHOLD = 20_000

_settled = False


def settle() -> None:
    """Collect startup's garbage, freeze what survived, and collect young objects less often (see above)."""
    global _settled
    if _settled:
        return
    _settled = True
    gc.collect()
    gc.freeze()
    _, middle, old = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, middle, old)
