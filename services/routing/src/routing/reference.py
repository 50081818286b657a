"""Reads routing's editable files (reps and teams, accounts, territories, SLA, reason codes) into ``RoutingData``.

The files are read whole and checked as a whole; their version is a digest of
their bytes, so every routing process that read the same files stamps the
same version on what it routes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from leadpipe_common.domain_names import ascii_domain, domain_column, is_domain
from leadpipe_common.files import decode, parse_csv, parse_yaml, read_bytes

from routing.domain import InvalidRoutingData, Problem, RoutingData, parse_routing_data


@dataclass(frozen=True)
class Reference:
    """The routing data in force and the version of the files it came from."""

    data: RoutingData
    version: str


#: The setting that names each file, as a file that cannot be read is reported.
SETTINGS = {"reps": "ROUTING_REPS_FILE", "accounts": "ROUTING_ACCOUNTS_FILE", "territories": "ROUTING_TERRITORIES_FILE",
            "sla": "ROUTING_SLA_FILE", "reasons": "ROUTING_REASONS_FILE"}


@dataclass(frozen=True)
class RoutingFiles:
    reps: Path
    accounts: Path
    territories: Path
    sla: Path
    reasons: Path
    #: What names each file to the user, by its field: its setting, or what-if's option for a candidate file.
    names: Mapping[str, str] = field(default_factory=lambda: dict(SETTINGS), compare=False)

    @property
    def paths(self) -> tuple[Path, ...]:
        return (self.reps, self.accounts, self.territories, self.sla, self.reasons)

    def stamp(self) -> tuple[tuple[int, int], ...]:
        """Cheap to take (a stat per file): differs when any file was changed, replaced or removed."""
        out = []
        for p in self.paths:
            try:
                st = p.stat()
                out.append((st.st_mtime_ns, st.st_size))
            except OSError:
                out.append((-1, -1))
        return tuple(out)

    def load(self) -> Reference:
        """Raises ValueError naming the file and the entry that is wrong."""
        named = {getattr(self, name): self.names.get(name, f"the {name} file") for name in SETTINGS}
        texts = {p: read_bytes(p, named[p]) for p in self.paths}
        digest = hashlib.sha256()
        for p in self.paths:
            digest.update(len(texts[p]).to_bytes(8, "big") + texts[p])
        decoded = {p: decode(t, p, named[p]) for p, t in texts.items()}
        try:
            data = self._parse(decoded)
        except (TypeError, AttributeError, KeyError) as exc:
            # Data of a shape no check foresaw is a wrong file all the same, never a crash: the file watch and the
            # reload API catch ValueError, and serve and what-if say it.
            raise ValueError(f"routing reference data is invalid ({type(exc).__name__}: {exc}) "
                             f"(files: {self._names()})") from None
        return Reference(data, digest.hexdigest()[:12])

    def _parse(self, texts: dict[Path, str]) -> RoutingData:
        account_rows, account_lines = [], []
        listed_on: dict[str, tuple[int, str]] = {}
        for line, r in parse_csv(texts[self.accounts], self.accounts, _ACCOUNT_COLUMNS, required=_ACCOUNT_COLUMNS):
            where = f"{self.accounts}:{line}"
            domain = _account_domain(r["domain"], where)
            key = ascii_domain(domain)
            if key in listed_on:  # only the first row's owner would ever get the account's leads
                first, other = listed_on[key]
                spelt = f" (as {other}: the same domain, spelt in ASCII or not)" if other != domain else ""
                raise ValueError(f"{where}: {domain} is listed already on line {first}{spelt}: list an account once")
            listed_on[key] = (line, domain)
            account_rows.append({"domain": domain, "name": r["name"].strip(), "owner": r["owner"].strip()})
            account_lines.append(line)
        reps_doc = _mapping(self.reps, texts[self.reps])
        # The file's other keys go to the schema one by one: any more would be dropped without a word (a misspelt
        # teams: dropped every overflow policy).
        unknown = set(reps_doc) - set(_REPS_KEYS)
        if unknown:
            raise ValueError(f"{self.reps}: unknown keys {sorted(map(str, unknown))} (known: {', '.join(_REPS_KEYS)})")
        if reps_doc.get("reps") in (None, []):
            # Checked as a whole, such a file was first refused for whatever named a rep ("accounts name owners
            # who are not reps: [...]"), which does not say that the file is empty, or is the wrong file.
            raise ValueError(f"{self.reps}: the reps file lists no reps (a list under reps:, at least one)")
        sla = _mapping(self.sla, texts[self.sla])
        if "acceptance" not in sla:
            # An empty or comment-only file loaded, and every acceptance deadline was off without a word;
            # acceptance: {} says so on purpose.
            raise ValueError(f"{self.sla}: the SLA file gives no acceptance (deadlines by grade under acceptance:, "
                             "or acceptance: {} for none)")
        reasons = _mapping(self.reasons, texts[self.reasons])
        if not reasons.get("rejected"):
            # A rejection must give a code of the file: an empty or comment-only file loaded, and every rejection,
            # through the API or leads.feedback, was refused.
            raise ValueError(f"{self.reasons}: rejected: no code a rejection may give: list at least one under "
                             "rejected:")
        raw = {"reps": reps_doc["reps"], "accounts": account_rows,
               "territories": _mapping(self.territories, texts[self.territories]),
               "sla": sla, "reasons": reasons}
        for key in ("working_hours", "teams"):
            if key in reps_doc:
                raw[key] = reps_doc[key]
        try:
            return parse_routing_data(raw)
        except InvalidRoutingData as exc:
            raise ValueError("; ".join(self._said(p, account_lines) for p in exc.problems)) from None

    def _said(self, problem: Problem, account_lines: list[int]) -> str:
        """``problem`` in the file it is in: an account by its line (``accounts.csv:4: owner: ...``), any other
        entry as the problem names it (``reps.yaml: rep "lena.fischer" (the 1st): weight: ...``)."""
        if problem.file is None:
            return f"routing reference data is invalid: {problem} (files: {self._names()})"
        path = getattr(self, problem.file)
        if problem.file == "accounts" and problem.entry is not None:
            where = f"{path}:{account_lines[problem.entry]}"
        else:
            where = ": ".join(part for part in (str(path), problem.label) if part)
        return ": ".join(part for part in (where, problem.at, problem.reason) if part)

    def _names(self) -> str:
        return ", ".join(f"{name} {getattr(self, name)}" for name in ("reps", "accounts", "territories", "sla",
                                                                       "reasons"))


#: The columns of the accounts file, each required.
_ACCOUNT_COLUMNS = ("domain", "name", "owner")

#: The keys of the reps file: its reps, and the working hours and team policies that go with them.
_REPS_KEYS = ("reps", "teams", "working_hours")


def _account_domain(written: str, where: str) -> str:
    """The domain column, stripped and lower case; refused unless it is a domain as an address has it: enrichment
    gives a lead's company domain so, and any other value would load and match no lead, sending the account's
    leads to territory rotation without a word."""
    try:
        domain = domain_column(written)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if not is_domain(domain):
        raise ValueError(f"{where}: domain {written.strip()!r} is not a domain (write it like acme.com)")
    return domain


def _mapping(path: Path, text: str) -> dict:
    doc = parse_yaml(text, path) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc
