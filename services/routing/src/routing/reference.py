"""Reads routing's editable files (reps, accounts, territories) into ``RoutingData``."""

from __future__ import annotations

import csv
from pathlib import Path

import yaml

from routing.domain import RoutingData, parse_routing_data


def load_routing_data(reps: Path, accounts: Path, territories: Path) -> RoutingData:
    with accounts.open(newline="", encoding="utf-8") as f:
        account_rows = [
            {"domain": r["domain"].strip().lower(), "name": r["name"].strip(), "owner": r["owner"].strip()}
            for r in csv.DictReader(f)
        ]
    return parse_routing_data({
        "reps": (yaml.safe_load(reps.read_text(encoding="utf-8")) or {}).get("reps", []),
        "accounts": account_rows,
        "territories": yaml.safe_load(territories.read_text(encoding="utf-8")) or {},
    })
