"""Every service's API fuzzed from its own OpenAPI document (schemathesis), with a valid key: no 5xx, and no
answer that breaks its documented schema. Last in the suite: the leads it posts are noise to counting tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from leadpipe_common.testing.plugin import TEST_KEY
from leadpipe_common.topology import SERVICES


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
def test_no_request_makes_a_service_fail_or_break_its_own_contract(stack, service):
    # Ten examples an operation, seeded: the same requests every run, and ~50 s of make test's ten minutes for
    # the six services (15 took ~70).
    url = next(p.url for p in stack.processes if p.service == service)
    st = Path(sys.executable).parent / "st"
    done = subprocess.run(
        [str(st), "run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {TEST_KEY}",
         "--checks", "not_a_server_error,response_schema_conformance", "--max-examples", "10", "--seed", "1",
         "--no-color"],
        capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
