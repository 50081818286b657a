"""Every service's OpenAPI document, generated from its app and checked in under ``docs/openapi/``.

Guarantees: the documents are the apps' own (``app.openapi()``: nothing
written by hand); the test suite compares the checked-in copies with fresh
ones, so an API change without its document fails (``make openapi``
rewrites them). Building an app reads its reference files and starts nothing.
"""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from typing import Any

from leadpipe_common.topology import SERVICES

DIR = Path("docs") / "openapi"


def document(service: str) -> dict[str, Any]:
    return importlib.import_module(f"{service}.app").create_app().openapi()


def render(service: str) -> str:
    return json.dumps(document(service), indent=2, sort_keys=True) + "\n"


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else ".")
    (root / DIR).mkdir(parents=True, exist_ok=True)
    for s in SERVICES:
        (root / DIR / f"{s.name}.json").write_text(render(s.name), encoding="utf-8")
        print(f"wrote {DIR / (s.name + '.json')}")


if __name__ == "__main__":
    main()
