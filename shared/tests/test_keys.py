"""``leadpipe-keys`` refuses what it is given before it touches the database."""

import pytest
from typer.testing import CliRunner

from leadpipe_common import keys
from leadpipe_common.throttle import parse_rate


@pytest.mark.parametrize("rate", ["0/second", "0 per minute"])
def test_a_rate_limit_that_lets_nothing_through_is_refused_not_stored_for_capture_to_fail_on(monkeypatch, rate):
    """capture counts a key's posts by it and could not: each of the key's posts was a 500."""
    monkeypatch.setattr(keys, "_settings", lambda: pytest.fail("the key was about to be stored"))
    result = CliRunner().invoke(keys.cli, ["create", "--name", "importer", "--scope", "capture:write",
                                           "--rate-limit", rate], env={"COLUMNS": "500"})
    assert result.exit_code == 2
    assert "lets nothing through" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("rate", ["0/second", "fast", "500 a second"])
def test_a_rate_limit_is_refused_by_the_rule_capture_counts_by_and_in_its_words(monkeypatch, rate):
    """leadpipe-keys checked a rate with a copy of the rule capture counts by (throttle.parse_rate) and words of
    its own: the copy could drift from the rule, and a key be stored with a rate capture cannot count by."""
    with pytest.raises(ValueError) as capture:
        parse_rate(rate, "--rate-limit")
    monkeypatch.setattr(keys, "_settings", lambda: pytest.fail("the key was about to be stored"))
    result = CliRunner().invoke(keys.cli, ["create", "--name", "importer", "--scope", "capture:write",
                                           "--rate-limit", rate], env={"COLUMNS": "500"})
    assert result.exit_code == 2 and str(capture.value) in " ".join(result.output.split())
