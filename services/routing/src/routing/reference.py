"""Reads routing's editable files (reps, accounts, territories, SLA, reason codes) into ``RoutingData``."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from routing.domain import RoutingData, parse_routing_data


def load_routing_data(reps: Path, accounts: Path, territories: Path, sla: Path, reasons: Path) -> RoutingData:
    """Raises ValueError naming the file and the entry that is wrong."""
    with accounts.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = {"domain", "name", "owner"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{accounts}: missing columns {sorted(missing)}")
        account_rows = [
            {"domain": r["domain"].strip().lower(), "name": r["name"].strip(), "owner": r["owner"].strip()}
            for r in reader
        ]
    reps_doc = _mapping(reps)
    raw = {"reps": reps_doc.get("reps", []), "accounts": account_rows, "territories": _mapping(territories),
           "sla": _mapping(sla), "reasons": _mapping(reasons)}
    if "working_hours" in reps_doc:
        raw["working_hours"] = reps_doc["working_hours"]
    try:
        return parse_routing_data(raw)
    except ValueError as exc:
        raise ValueError(f"{exc} (files: reps {reps}, accounts {accounts}, territories {territories}, "
                         f"sla {sla}, reasons {reasons})") from None


def _mapping(path: Path) -> dict:
    doc = _yaml(path) or {}
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: expected a mapping at the top level")
    return doc


def _yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
