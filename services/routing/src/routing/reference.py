"""Reads routing's editable files (reps and teams, accounts, territories, SLA, reason codes) into ``RoutingData``.

The files are read whole and checked as a whole; their version is a digest of
their bytes, so every routing process that read the same files stamps the
same version on what it routes.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import yaml

from routing.domain import RoutingData, parse_routing_data


@dataclass(frozen=True)
class Reference:
    """The routing data in force and the version of the files it came from."""

    data: RoutingData
    version: str


@dataclass(frozen=True)
class RoutingFiles:
    reps: Path
    accounts: Path
    territories: Path
    sla: Path
    reasons: Path

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
        texts = {}
        for p in self.paths:
            try:
                texts[p] = p.read_bytes()
            except OSError as exc:
                raise ValueError(f"{p}: cannot be read: {exc.strerror}") from None
        digest = hashlib.sha256()
        for p in self.paths:
            digest.update(len(texts[p]).to_bytes(8, "big") + texts[p])
        decoded = {}
        for p, t in texts.items():
            try:
                # utf-8-sig: a spreadsheet saving "CSV UTF-8" starts the file with a byte-order mark, which would
                # otherwise be part of the first column's name.
                decoded[p] = t.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                # Read with replacement characters, mueller.de spelt with u-umlaut would silently never match.
                raise ValueError(f"{p}: not UTF-8 (byte {exc.start}); save it as UTF-8") from None
        try:
            data = self._parse(decoded)
        except (TypeError, AttributeError, KeyError) as exc:
            # Data of a shape no check foresaw is a wrong file all the same, never a crash: the file watch and the
            # reload API catch ValueError, and serve and what-if say it.
            raise ValueError(f"routing reference data is invalid ({type(exc).__name__}: {exc}) "
                             f"(files: {self._names()})") from None
        return Reference(data, digest.hexdigest()[:12])

    def _parse(self, texts: dict[Path, str]) -> RoutingData:
        reader = csv.DictReader(io.StringIO(texts[self.accounts], newline=""))
        missing = {"domain", "name", "owner"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{self.accounts}: missing columns {sorted(missing)}")
        account_rows = []
        for r in reader:
            # A row shorter than the header reads None for the columns it lacks.
            short = next((c for c in ("domain", "name", "owner") if r[c] is None), None)
            if short:
                raise ValueError(f"{self.accounts}:{reader.line_num}: missing the {short} column (the row has "
                                 "fewer values than the header)")
            account_rows.append({"domain": r["domain"].strip().lower(), "name": r["name"].strip(),
                                 "owner": r["owner"].strip()})
        reps_doc = _mapping(self.reps, texts[self.reps])
        # The file's other keys go to the schema one by one: any more would be dropped without a word (a misspelt
        # teams: dropped every overflow policy).
        unknown = set(reps_doc) - set(_REPS_KEYS)
        if unknown:
            raise ValueError(f"{self.reps}: unknown keys {sorted(map(str, unknown))} (known: {', '.join(_REPS_KEYS)})")
        raw = {"reps": reps_doc.get("reps", []), "accounts": account_rows,
               "territories": _mapping(self.territories, texts[self.territories]),
               "sla": _mapping(self.sla, texts[self.sla]), "reasons": _mapping(self.reasons, texts[self.reasons])}
        for key in ("working_hours", "teams"):
            if key in reps_doc:
                raw[key] = reps_doc[key]
        try:
            return parse_routing_data(raw)
        except ValueError as exc:
            raise ValueError(f"{exc} (files: {self._names()})") from None

    def _names(self) -> str:
        return ", ".join(f"{name} {getattr(self, name)}" for name in ("reps", "accounts", "territories", "sla",
                                                                       "reasons"))


#: The keys of the reps file: its reps, and the working hours and team policies that go with them.
_REPS_KEYS = ("reps", "teams", "working_hours")


def _mapping(path: Path, text: str) -> dict:
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc
