"""Reads routing's editable files (reps, accounts, territories) into ``RoutingData``."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from routing.domain import RoutingData, parse_routing_data


def load_routing_data(reps: Path, accounts: Path, territories: Path) -> RoutingData:
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
    try:
        return parse_routing_data({
            "reps": (_yaml(reps) or {}).get("reps", []),
            "accounts": account_rows,
            "territories": _yaml(territories) or {},
        })
    except ValueError as exc:
        raise ValueError(f"{exc} (files: reps {reps}, accounts {accounts}, territories {territories})") from None


def _yaml(path: Path) -> object:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
