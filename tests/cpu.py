"""CPU seconds and resident memory of each process of a stack, read from /proc: for `make bench`'s cost figures.

A process tree's CPU is the user and system time of every live process in it
plus the time of the children each has reaped (``cutime``/``cstime``), so a
Postgres backend or a uvicorn worker that exits is still counted.
"""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> tuple[int, float] | None:
    """(parent pid, CPU seconds incl. reaped children) of ``pid``, or None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[1]), sum(int(f) for f in fields[11:15]) / TICK


def _table() -> dict[int, tuple[int, float]]:
    table = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            table[int(entry.name)] = stat
    return table


def tree_seconds(roots: dict[str, list[int]]) -> dict[str, float]:
    """CPU seconds so far of each labelled group of process trees."""
    table = _table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out = {}
    for label, pids in roots.items():
        total, todo = 0.0, list(pids)
        while todo:
            pid = todo.pop()
            if pid in table:
                total += table[pid][1]
                todo += children.get(pid, [])
        out[label] = total
    return out


def delta(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0.0) for k in after}


def resident_mb(roots: dict[str, list[int]]) -> dict[str, list[float]]:
    """Resident memory (MB) of each live process in each labelled group of trees (a uvicorn master and its
    workers are separate processes, each with its own interpreter)."""
    table = _table()
    children: dict[int, list[int]] = defaultdict(list)
    for pid, (ppid, _) in table.items():
        children[ppid].append(pid)
    out: dict[str, list[float]] = {}
    for label, pids in roots.items():
        todo, sizes = list(pids), []
        while todo:
            pid = todo.pop()
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except (FileNotFoundError, ProcessLookupError):
                continue
            rss = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:")), 0)
            sizes.append(rss / 1024)
            todo += children.get(pid, [])
        out[label] = sorted(sizes, reverse=True)
    return out
