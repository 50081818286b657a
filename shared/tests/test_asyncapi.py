"""The AsyncAPI document: generated from the code, checked in, and internally consistent."""

from pathlib import Path

import yaml

from leadpipe_common import topology
from leadpipe_common.asyncapi import document, to_yaml
from leadpipe_common.events import LATEST

CHECKED_IN = Path(__file__).parents[2] / "docs" / "asyncapi.yaml"


def test_the_checked_in_document_matches_the_code():
    assert CHECKED_IN.read_text(encoding="utf-8") == to_yaml(document()), (
        "docs/asyncapi.yaml is stale: run `make asyncapi` and commit it")


def test_every_topic_and_event_type_is_described():
    doc = document()
    assert {c["address"] for c in doc["channels"].values()} == set(topology.TOPICS)
    assert {m["name"] for m in doc["components"]["messages"].values()} == set(LATEST)


def test_every_message_summary_is_a_whole_sentence():
    """A summary taken from a docstring's first line alone stopped mid-sentence ("... until an admin")."""
    for name, message in document()["components"]["messages"].items():
        assert message["summary"].endswith((".", ")")), f"{name}: {message['summary']!r}"


def test_every_reference_resolves():
    doc = yaml.safe_load(to_yaml(document()))

    def refs(node):  # noqa: ANN001, ANN202
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for v in node.values():
                yield from refs(v)
        elif isinstance(node, list):
            for v in node:
                yield from refs(v)

    for ref in refs(doc):
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            assert part in target, f"{ref} does not resolve"
            target = target[part]


def test_a_type_earlier_versions_left_on_a_topic_is_described_as_received_there_not_as_sent():
    """leads.lifecycle holds the lead.touched records (with a contact) of earlier versions for ever: a consumer
    must be told of them, a producer not to write them."""
    doc = document()

    def names(operation: str) -> list[str]:
        return [ref["$ref"].rsplit("/", 1)[1] for ref in doc["operations"][operation]["messages"]]

    assert "LeadTouchRecorded" in names("sendLeadsLifecycle") and "LeadTouched" not in names("sendLeadsLifecycle")
    assert {"LeadTouchRecorded", "LeadTouched"} <= set(names("receiveLeadsLifecycle"))
    assert "LeadTouched" in doc["channels"]["leadsLifecycle"]["messages"]
    assert "Earlier versions also wrote lead.touched here" in doc["channels"]["leadsLifecycle"]["description"]
