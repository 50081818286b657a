"""delivery's webhooks as its OpenAPI document says them: the headers the dispatcher sends, what each answer does.
(Each type's body, against what the handler queues: test_handlers.)"""

import uuid
from datetime import UTC, datetime, timedelta

import jsonschema
import pytest

from leadpipe_common.local.openapi import document
from delivery.dispatcher import Dispatcher
from delivery.domain import DELIVERABLE, after_attempt, parse_subscriptions
from delivery.store import Claimed

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def webhooks() -> dict:
    return {event_type: ops["post"] for event_type, ops in document("delivery")["webhooks"].items()}


def test_the_webhooks_are_the_types_a_subscription_may_ask_for(webhooks):
    assert sorted(webhooks) == sorted(DELIVERABLE)


def test_each_webhook_documents_every_header_the_dispatcher_sends_as_it_sends_it(webhooks):
    # Two secrets, as during a rotation: a signature for each.
    sub = parse_subscriptions({"subscriptions": [{
        "id": "crm", "url": "https://crm.example.com/h", "events": ["lead.routed"],
        "secrets": ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_" + "QUJD" * 8]}]}, allow_private=False)["crm"]
    claimed = Claimed(seq=1, subscription_id="crm", lead_id=uuid.uuid4(), event_id=uuid.uuid4(),
                      event_type="lead.routed", body=b'{"id": "..."}', attempts=0, created_at=NOW, leased_until=NOW,
                      claimed_at=NOW)
    sent = Dispatcher(unit_of_work=None, client=None, subscriptions={}, from_file={}, retry_window=timedelta(hours=1),
                      retry_base_s=5, refused_attempts=3, connect_timeout_s=5, timeout_s=15, max_in_flight=1,
                      per_subscription=1, idle_s=1)._headers(claimed, sub, NOW)
    for event_type, webhook in webhooks.items():
        assert set(webhook["requestBody"]["content"]) == {sent["content-type"]}, event_type
        documented = {p["name"]: p["schema"] for p in webhook["parameters"] if p["in"] == "header"}
        assert set(documented) == set(sent) - {"content-type"}, event_type
        for name, schema in documented.items():
            value = int(sent[name]) if schema["type"] == "integer" else sent[name]
            jsonschema.validate(value, schema)


def test_each_webhook_documents_what_delivery_makes_of_every_status_a_receiver_may_answer(webhooks):
    """A status documented alone, or else its range, names the outcome ``after_attempt`` gives it."""
    for status in range(200, 600):
        verdict = after_attempt(status, None, attempts=1, refused_before=0, first_at=NOW, now=NOW,
                                window=timedelta(hours=72), jitter=0)
        made = ("refused" if verdict.refused_in_a_row else
                {"delivered": "delivered", "gone": "gone", "retry": "retried"}[verdict.outcome])
        for event_type, webhook in webhooks.items():
            answers = webhook["responses"]
            said = answers.get(str(status)) or answers[f"{status // 100}XX"]
            assert said["x-delivery-outcome"] == made, (event_type, status)


def test_a_delivery_process_builds_the_webhooks_document_only_when_it_is_asked_for():
    """Their models cost every delivery process ~1 MB it kept for nothing (resident memory is near issue 12's
    floor); the OpenAPI document builds them on its first request (tests/test_openapi.py holds it to the file)."""
    import subprocess
    import sys

    probe = "import sys, delivery.app; print('delivery.webhooks' in sys.modules)"
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert ran.stdout.strip() == "False"
