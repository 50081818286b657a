"""What is wrong with an input, field by field: the one shape every service reports it in.

Guarantees: pure (no web framework), so a service's domain can refuse input
in the same terms its HTTP API answers with (``http.Problem`` carries a list
of these); a pydantic error becomes ``(field, reason)`` with the transport
prefix (``body``, ``query``, ``path``) dropped and a missing value said as
"is required".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str


def field_problems(errors: Sequence[Mapping[str, Any]]) -> list[FieldProblem]:
    """pydantic's errors (``ValidationError.errors()``) as field problems."""
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        if len(loc) > 1 and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        reason = "is required" if e.get("type") == "missing" else str(e.get("msg", "invalid"))
        out.append(FieldProblem(".".join(loc) or "body", reason.removeprefix("Value error, ")))
    return out


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """The same problems as one line (``field: reason; ...``), for a reference file a service refuses at start."""
    return "; ".join(f"{p.field}: {p.reason}" for p in field_problems(errors))
