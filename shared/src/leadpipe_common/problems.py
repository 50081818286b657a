"""What is wrong with an input, field by field: the one shape every service reports it in.

Guarantees: pure (no web framework), so a service's domain can refuse input
in the same terms its HTTP API answers with (``http.Problem`` carries a list
of these); a pydantic error becomes ``(field, reason)`` with the transport
prefix (``body``, ``query``, ``path``) dropped and a missing value said as
"is required"; a field's name (a client's: JSON lets it hold a lone
surrogate) and its reason are always text a UTF-8 response can carry.
``nul_path`` finds text holding U+0000, which PostgreSQL's
``text`` and ``jsonb`` cannot store: every edge refuses it (``http.RefuseNul``
for requests, ``envelope.decode`` for records) so that it never reaches a
table, where it would fail the same batch on every retry.
``did_you_mean`` ends the refusal of a value outside a closed set with the
member it most likely misspells, for every file that names one.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class FieldProblem:
    field: str
    reason: str

    def __post_init__(self) -> None:
        # The field is often a name the client sent, and JSON lets one hold a lone surrogate ("\ud800"), which no
        # UTF-8 answer (JSON or page) can carry: the Problem naming it was a 500. Written as its escape, it still
        # names the field. Here, so that no FieldProblem, wherever it is made, can break the answer it is in.
        object.__setattr__(self, "field", sendable(self.field))
        object.__setattr__(self, "reason", sendable(self.reason))


def sendable(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate written as its escape (``\\ud800``), other text as it is."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def field_problems(errors: Sequence[Mapping[str, Any]]) -> list[FieldProblem]:
    """pydantic's errors (``ValidationError.errors()``) as field problems."""
    out = []
    for e in errors:
        loc = [str(p) for p in e.get("loc", ())]
        if len(loc) > 1 and loc[0] in ("body", "query", "path"):
            loc = loc[1:]
        reason = str(e.get("msg", "invalid"))
        raw_loc = tuple(e.get("loc", ()))
        if e.get("type") == "json_invalid" and len(raw_loc) == 2 and raw_loc[0] == "body" \
                and isinstance(raw_loc[1], int):
            # FastAPI's word on a body json.loads refused: its location's second part is the character it stopped
            # at (an int; a Json[...] field's is its name), which read as a field name ("5").
            error = (e.get("ctx") or {}).get("error") or reason
            out.append(FieldProblem("body", f"is not JSON: {error} at character {raw_loc[1]}"))
            continue
        if e.get("type") == "missing":
            reason = "is required"
        elif reason == "Extra inputs are not permitted":  # pydantic's words, unless a caller said it better
            reason = "is not a field this takes (misspelt?)"
        out.append(FieldProblem(".".join(loc) or "body", reason.removeprefix("Value error, ")))
    return out


def describe(errors: Sequence[Mapping[str, Any]]) -> str:
    """The same problems as one line (``field: reason; ...``), for a reference file a service refuses at start.

    A problem of the whole (a check across fields, pydantic's empty location) is said as its reason alone:
    ``field_problems`` names it ``body``, a request's, which a file has none of."""
    return "; ".join(f"{p.field}: {p.reason}" if e.get("loc") else p.reason
                     for e, p in zip(errors, field_problems(errors), strict=True))


def closest(value: str, choices: Iterable[str]) -> str | None:
    """The one of ``choices`` that ``value`` most likely misspells, compared case-folded; None when none is close.
    Every refusal of a name outside a closed set asks this (files' columns, routing's teams, the contract's
    seniorities), each wording it its own way."""
    folded = {c.casefold(): c for c in choices}
    close = difflib.get_close_matches(value.casefold(), folded, n=1)
    return folded[close[0]] if close else None


def did_you_mean(value: str, choices: Sequence[str]) -> str:
    """The end of a refusal of ``value``, not among ``choices``: the one it most likely misspells (``directors``:
    ``: did you mean director?``), or "" when none is close."""
    close = closest(value, choices)
    return f": did you mean {close}?" if close else ""


#: What is said of a field whose text holds U+0000.
NUL_REASON = "must not contain the NUL character (U+0000)"


def nul_path(value: Any, path: str = "") -> str | None:
    """Where in ``value`` (parsed JSON: dicts, lists, strings) a key or a string holds U+0000, as
    ``field.sub[2]``; None when nowhere."""
    if isinstance(value, str):
        return (path or "body") if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            # Written \u0000 in the path: the path goes into error messages, which are stored.
            here = f"{path}.{key}" if path else str(key)
            here = here.replace("\x00", "\\u0000")
            if "\x00" in str(key):
                return here
            if (found := nul_path(item, here)) is not None:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if (found := nul_path(item, f"{path}[{i}]")) is not None:
                return found
    return None
