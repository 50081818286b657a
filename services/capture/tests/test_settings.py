"""capture's settings refuse what every service's refuse, and what would break capture in silence."""

import pytest
from pydantic import ValidationError

from capture.settings import CaptureSettings

NOWHERE = "postgresql+asyncpg://u:pw@127.0.0.1:1/x"


def refusal(**settings: object) -> str:
    with pytest.raises(ValidationError) as refused:
        CaptureSettings(DATABASE_URL=NOWHERE, **settings)
    return refused.value.errors()[0]["msg"]


def test_a_public_origin_that_is_no_origin_is_refused_and_one_is_kept_as_browsers_send_it():
    """capture's own origins validator had the base class's name, which it replaced: any text was taken."""
    assert "is not an origin" in refusal(public_origin="not a url")
    assert CaptureSettings(DATABASE_URL=NOWHERE, public_origin="https://Leads.Example.com/").public_origin \
        == "https://leads.example.com"


def test_a_form_token_secret_shorter_than_a_session_secret_is_refused():
    """Derived from LEADPIPE_SESSION_SECRET it is 32 characters or more; given itself, "x" signed every token."""
    assert "at least 32 characters" in refusal(token_secret="x" * 31)
    assert CaptureSettings(DATABASE_URL=NOWHERE, token_secret="x" * 32).token_secret is not None


@pytest.mark.parametrize("batch", [0, -5])
def test_an_outbox_round_of_no_rows_is_refused(batch):
    """capture declared the setting again without the base's minimum: at 0 its relay claimed nothing in a loop
    that never slept, below 0 every round failed on LIMIT -5."""
    assert "greater than or equal to 1" in refusal(outbox_batch_max=batch)


def test_a_heartbeat_as_slow_as_the_session_timeout_is_refused_naming_both():
    """Kafka's own clients refuse it: the member is taken for dead between heartbeats, its partitions moved."""
    said = refusal(heartbeat_interval_ms=10_000, session_timeout_ms=10_000)
    assert "CAPTURE_HEARTBEAT_INTERVAL_MS (10000) must be shorter than CAPTURE_SESSION_TIMEOUT_MS" in said
