"""For tests that one transaction waits for another: start the second while the first holds its locks.

Guarantees: ``kept_waiting`` starts the coroutine as a task, gives it half a second (far more than an
unblocked statement takes on a loaded machine) and fails the test, with the reason given, if it has finished
by then; the caller then ends the first transaction and awaits the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

#: How long a blocked transaction is given to show it would not wait (it finishes at once when it does not).
GRACE_S = 0.5


async def kept_waiting(coro: Coroutine[Any, Any, Any], failure: str) -> asyncio.Task[Any]:
    """``coro`` started, and still waiting after ``GRACE_S``; ``failure`` says what it means if it is not."""
    task = asyncio.create_task(coro)
    await asyncio.sleep(GRACE_S)
    assert not task.done(), failure
    return task
