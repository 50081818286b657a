"""``leadpipe-keys`` refuses what it is given before it touches the database."""

import pytest
from typer.testing import CliRunner

from leadpipe_common import keys


@pytest.mark.parametrize("rate", ["0/second", "0 per minute"])
def test_a_rate_limit_that_lets_nothing_through_is_refused_not_stored_for_capture_to_fail_on(monkeypatch, rate):
    """capture counts a key's posts by it and could not: each of the key's posts was a 500."""
    monkeypatch.setattr(keys, "_settings", lambda: pytest.fail("the key was about to be stored"))
    result = CliRunner().invoke(keys.cli, ["create", "--name", "importer", "--scope", "capture:write",
                                           "--rate-limit", rate], env={"COLUMNS": "500"})
    assert result.exit_code == 2
    assert "lets nothing through" in result.output and "Traceback" not in result.output
