import json
import pickle
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from cloudevents.core.bindings.kafka import to_binary
from cloudevents.core.formats.json import JSONFormat
from pydantic import ValidationError

from leadpipe_common.envelope import (
    DecodeError, Message, child_traceparent, cloud_event, dataschema, decode, derive_id, encode, follow_up,
    unvalidated,
)
from leadpipe_common.events import (
    UPCASTERS, Attribution, Contact, LeadCaptured, LeadMerged, LeadQuarantined, LeadReengaged, LeadRouted, LeadStageChanged,
    parse_event,
)
from leadpipe_common.testing import factories

NOW = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)


def a_lead() -> LeadCaptured:
    return LeadCaptured(
        lead_id=uuid.uuid4(), captured_at=NOW, contact=Contact(email="ada@example.com"),
        attribution=Attribution(form_id="demo-request", utm_source="google"),
    )


def test_an_event_survives_the_round_trip_through_kafka_headers():
    lead = a_lead()
    msg = encode("leads.captured", lead, event_id=uuid.uuid4(), source="test", time=NOW, traceparent=None)
    env = decode(list(msg.headers), msg.key, msg.value)
    assert env.data == lead
    assert env.time == NOW


def test_headers_follow_the_cloudevents_kafka_binary_binding():
    lead = a_lead()
    event_id = uuid.uuid4()
    msg = encode("leads.captured", lead, event_id=event_id, source="leadpipe/capture", time=NOW)
    headers = dict(msg.headers)
    assert headers["ce_id"] == str(event_id).encode()
    assert headers["ce_type"] == b"lead.captured"
    assert headers["ce_specversion"] == b"1.0"
    assert headers["ce_subject"] == str(lead.lead_id).encode()
    assert headers["content-type"] == b"application/json"
    assert msg.key == str(lead.lead_id).encode()


def _by_the_sdk(topic, event, *, event_id, source, time, traceparent=None) -> Message:
    kafka = to_binary(cloud_event(event, event_id=event_id, source=source, time=time), JSONFormat(),
                      key_mapper=lambda _: str(event.lead_id).encode())
    headers = list(kafka.headers.items()) + ([("traceparent", traceparent.encode())] if traceparent else [])
    return Message(topic=topic, key=kafka.key, value=kafka.value, headers=tuple(headers))


ATTRIBUTION = Attribution(form_id="demo-request", utm_source="google")


@pytest.mark.parametrize("event", [
    a_lead(), factories.enriched(), factories.scored(),
    LeadStageChanged(lead_id=uuid.uuid4(), from_stage="enriched", to_stage="mql", at=NOW, by="scoring", reason="bar",
                     attribution=ATTRIBUTION),
    LeadMerged(lead_id=uuid.uuid4(), survivor_id=uuid.uuid4(), at=NOW, by="rep", reason="same person",
               attribution=ATTRIBUTION),
], ids=lambda e: e.type)
@pytest.mark.parametrize("time", [NOW, NOW.replace(microsecond=123), NOW.astimezone(timezone(timedelta(hours=2)))],
                         ids=["utc", "micro", "offset"])
@pytest.mark.parametrize("traceparent", [None, "00-" + "a" * 32 + "-" + "b" * 16 + "-01"], ids=["untraced", "traced"])
def test_the_binary_mode_written_here_is_byte_for_byte_the_sdks(event, time, traceparent):
    args = {"event_id": uuid.uuid4(), "source": "leadpipe/test", "time": time, "traceparent": traceparent}
    assert encode("t", event, **args) == _by_the_sdk("t", event, **args)


def test_a_time_without_a_zone_is_refused_as_the_sdk_refuses_it():
    with pytest.raises(ValueError, match="timezone aware"):
        encode("t", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW.replace(tzinfo=None))


def test_outputs_of_a_redelivered_input_get_the_same_ids():
    cause = decode(*_parts(encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)))
    first = follow_up(cause, "leads.enriched", cause.data, source="t", time=NOW)
    again = follow_up(cause, "leads.enriched", cause.data, source="t", time=NOW)
    assert first.header("ce_id") == again.header("ce_id") == str(derive_id(cause.id, "lead.captured"))


def test_a_derived_id_is_the_uuid5_of_its_input_id_and_output_type_as_ids_already_stored_were():
    for n in range(2000):
        input_id, output_type = uuid.uuid4(), ["lead.enriched", f"lead.touched@leads.t{n}", "rescore/v2 é"][n % 3]
        derived = derive_id(input_id, output_type)
        expected = uuid.uuid5(input_id, output_type)
        assert derived == expected and hash(derived) == hash(expected) and str(derived) == str(expected)
        assert derived.version == 5 and derived.variant == uuid.RFC_4122
        assert uuid.UUID(str(derived)) == derived and pickle.loads(pickle.dumps(derived)) == derived


def test_an_event_as_stored_sent_without_its_model_decodes_as_the_event_encode_writes():
    """What an outbox relay sets aside for a stored event it could not build: a redrive sends it once the model takes
    it again, and it must read as the event the relay would have built, though which version it was stored in is
    not known."""
    lead, event_id = a_lead(), uuid.uuid4()
    built = encode("leads.captured", lead, event_id=event_id, source="leadpipe/capture", time=NOW)
    stored = unvalidated("leads.captured", lead.model_dump_json().encode(), event_type=lead.type,
                         lead_id=lead.lead_id, event_id=event_id, source="leadpipe/capture", time=NOW)
    assert stored.key == built.key and stored.header("ce_dataschema") is None
    assert decode(stored.headers, stored.key, stored.value) == decode(built.headers, built.key, built.value)


def test_bytes_that_are_not_a_cloudevent_are_undecodable():
    with pytest.raises(DecodeError) as err:
        decode([], b"k", b"\xff\xfe not json")
    assert err.value.kind == "undecodable"


def test_an_older_version_nested_too_deeply_is_undecodable_not_a_crash():
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    headers = [(k, v) for k, v in msg.headers if k != "ce_dataschema"]  # version 1: parsed, then upcast
    with pytest.raises(DecodeError) as err:
        decode(headers, msg.key, b'{"a":' + b"[" * 5000)
    assert err.value.kind == "undecodable" and "recursion limit exceeded" in err.value.detail


def test_an_older_version_holding_a_lone_surrogate_is_undecodable_at_once_as_the_latest_is():
    """An older version was parsed with json.loads, which takes a lone surrogate: the event decoded, its outputs
    could not be written out (PydanticSerializationError), and its batch failed five times before the record was
    dead-lettered as ``handler``, not at once as ``undecodable``."""
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    broken = msg.value.replace(b'"first_name":null', b'"first_name":"\\ud800"')
    assert broken != msg.value
    older = [(k, dataschema("lead.captured", 1).encode() if k == "ce_dataschema" else v) for k, v in msg.headers]
    for headers in (msg.headers, older):
        with pytest.raises(DecodeError) as err:
            decode(headers, msg.key, broken)
        assert err.value.kind == "undecodable"


def test_a_schema_version_too_long_to_be_a_number_is_undecodable_naming_the_header():
    """Python reads at most 4,300 digits as a number: the ValueError reached the runner's catch-all, which
    dead-letters it all the same but logs an error, as for a failure decode did not foresee."""
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    huge = f"urn:leadpipe:schema:lead.captured:v{'9' * 5000}".encode()
    headers = [(k, huge if k == "ce_dataschema" else v) for k, v in msg.headers]
    with pytest.raises(DecodeError) as err:
        decode(headers, msg.key, msg.value)
    assert err.value.kind == "undecodable" and err.value.detail.startswith("ce_dataschema's version has 5000 digits")


def test_data_breaking_its_schema_is_a_schema_error_naming_the_field():
    lead = a_lead()
    msg = encode("leads.captured", lead, event_id=uuid.uuid4(), source="t", time=NOW)
    broken = msg.value.replace(b'"email":"ada@example.com",', b"")
    with pytest.raises(DecodeError) as err:
        decode(list(msg.headers), msg.key, broken)
    assert err.value.kind == "schema"
    assert "contact.email" in err.value.detail


@pytest.mark.parametrize("moment", ["2026-03-01T09:00:00", "0001-01-01T00:00:00+01:00", "9999-12-31T23:00:00-05:00"],
                         ids=["without-an-offset", "year-0-in-utc", "year-10000-in-utc"])
def test_a_time_no_reader_could_store_or_compare_is_a_schema_error_not_a_stage_stuck_for_ever(moment):
    """Postgres's driver cannot encode a time outside years 1 - 9999 in UTC, and a naive time compared with an aware
    one raises TypeError: either, accepted, failed its batch on every retry in the stage that stored it."""
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    broken = msg.value.replace(b'"captured_at":"2026-11-23T09:30:00Z"', f'"captured_at":"{moment}"'.encode())
    assert broken != msg.value
    with pytest.raises(DecodeError) as err:
        decode(list(msg.headers), msg.key, broken)
    assert err.value.kind == "schema" and "captured_at" in err.value.detail


def test_unknown_fields_from_a_newer_producer_are_ignored():
    lead = a_lead()
    data = lead.model_dump(mode="json") | {"loyalty_tier": "gold"}
    assert parse_event("lead.captured", 1, data) == lead


def test_older_versions_are_upcast_before_validation(monkeypatch):
    lead = a_lead()
    old = lead.model_dump(mode="json")
    old["contact"]["mail"] = old["contact"].pop("email")

    def v0_to_v1(d):
        d["contact"]["email"] = d["contact"].pop("mail")
        return d

    monkeypatch.setitem(UPCASTERS, ("lead.captured", 0), v0_to_v1)
    assert parse_event("lead.captured", 0, old) == lead


def test_a_merge_from_before_v2_reads_as_one_that_names_neither_holder():
    """A v1 lead.merged on the lifecycle, as routing wrote it before merges named who held each lead: it still
    reads, and says nothing of the holders (not guessed from ``by``), for delivery's filters to pass it on its
    source alone."""
    survivor = uuid.uuid4()
    v1 = {"lead_id": str(uuid.uuid4()), "survivor_id": str(survivor), "at": "2026-11-23T09:30:00Z", "by": "ana",
          "reason": "same person", "attribution": {"utm_source": "google"}}
    msg = encode("leads.lifecycle", LeadMerged.model_validate(v1), event_id=uuid.uuid4(), source="t", time=NOW)
    headers = [(k, dataschema("lead.merged", 1).encode() if k == "ce_dataschema" else v) for k, v in msg.headers]
    merged = decode(headers, msg.key, json.dumps(v1).encode()).data
    assert isinstance(merged, LeadMerged) and (merged.survivor_id, merged.by) == (survivor, "ana")
    assert (merged.owner_id, merged.team, merged.grade) == (None, None, None)
    assert (merged.survivor_owner_id, merged.survivor_team, merged.survivor_grade) == (None, None, None)


def test_a_quarantined_submission_from_before_v2_reads_without_what_was_submitted():
    """leads.quarantined keeps capture's v1 records for ever, each with the fields its sender submitted: they still
    read (the spam report is rebuilt from them), and what was submitted is not carried on into the event."""
    lead_id = uuid.uuid4()
    v1 = {"lead_id": str(lead_id), "received_at": "2026-11-23T09:30:00Z", "reasons": ["no CAPTCHA answer"],
          "form_id": "demo-request", "utm_source": "ads",
          "fields": {"email": "ann@example.com", "phone": "+44 20 7946 0958", "message": "call me"}}
    headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"lead.quarantined"),
               ("ce_source", b"leadpipe/capture"), ("ce_specversion", b"1.0"), ("ce_time", b"2026-11-23T09:30:00Z"),
               ("content-type", b"application/json"), ("ce_dataschema", dataschema("lead.quarantined", 1).encode())]
    held = decode(headers, str(lead_id).encode(), json.dumps(v1).encode()).data
    assert isinstance(held, LeadQuarantined)
    assert held.model_dump(mode="json") == {k: v for k, v in v1.items() if k != "fields"}


def a_v2_re_engagement(lead_id: uuid.UUID) -> dict:
    """A lead.reengaged as routing wrote it at v2: whom a touch was told to, and what it scored."""
    return {"lead_id": str(lead_id),
            "touch": {"touch_id": str(uuid.uuid4()), "at": "2026-11-23T09:30:00Z", "attribution": {"offer": "demo"}},
            "owner_id": "ana", "team": "emea", "at": "2026-11-23T09:31:00Z", "reason": "asked for demo",
            "attribution": {"utm_source": "ads"}, "score": 80, "grade": "A"}


def test_a_re_engagement_from_before_v2_reads_without_the_persons_id():
    """routing's v1 lead.reengaged put the person's id on the lifecycle, kept for ever, beside touches that never
    carried it: read from such a record, it is not carried on (to a webhook, an export)."""
    lead_id = uuid.uuid4()
    v1 = {**a_v2_re_engagement(lead_id), "person_id": str(uuid.uuid4())}
    headers = [("ce_id", str(uuid.uuid4()).encode()), ("ce_type", b"lead.reengaged"),
               ("ce_source", b"leadpipe/routing"), ("ce_specversion", b"1.0"), ("ce_time", b"2026-11-23T09:31:00Z"),
               ("content-type", b"application/json"), ("ce_dataschema", dataschema("lead.reengaged", 1).encode())]
    told = decode(headers, str(lead_id).encode(), json.dumps(v1).encode()).data
    assert isinstance(told, LeadReengaged) and (told.owner_id, told.score) == ("ana", 80)
    assert "person_id" not in told.model_dump(mode="json")


def a_v4_routed_lead() -> dict:
    """A lead.routed as routing wrote it at v4: the lead scored, and who got it, without its hand-off's number."""
    lead = factories.scored("mql")
    return {**lead.model_dump(mode="json"), "routed_at": "2026-11-23T09:30:00Z", "routing_data_version": "v1",
            "assignment": {"owner_id": "ana", "owner_name": "Ana", "team": "emea", "method": "territory",
                           "reason": "territory emea / all"}}


def test_a_routed_lead_from_before_v5_reads_as_one_that_does_not_number_its_hand_off():
    """A v4 lead.routed on leads.routed, as routing wrote it before each record numbered the hand-off it announces:
    it still reads, with no number (not a guessed one a consumer would compare with a real one)."""
    v4 = a_v4_routed_lead()
    msg = encode("leads.routed", LeadRouted.model_validate(v4), event_id=uuid.uuid4(), source="t", time=NOW)
    headers = [(k, dataschema("lead.routed", 4).encode() if k == "ce_dataschema" else v) for k, v in msg.headers]
    routed = decode(headers, msg.key, json.dumps(v4).encode()).data
    assert isinstance(routed, LeadRouted) and routed.assignment.owner_id == "ana"
    assert routed.handoff_seq is None


def test_a_routed_lead_and_a_re_engagement_from_before_they_said_the_grade_the_lead_is_held_at_read_without_it():
    """lead.routed v5 and lead.reengaged v2, as routing wrote them before each said the grade it held the lead at:
    they still read, saying none (not the score's, which a re-engagement's touch may have scored below it)."""
    v5 = {**a_v4_routed_lead(), "handoff_seq": 1}
    routed = parse_event("lead.routed", 5, json.dumps(v5).encode())
    told = parse_event("lead.reengaged", 2, a_v2_re_engagement(routed.lead_id))
    assert isinstance(routed, LeadRouted) and (routed.handoff_seq, routed.held_grade) == (1, None)
    assert isinstance(told, LeadReengaged) and (told.grade, told.held_grade) == ("A", None)


def test_a_re_engagement_from_before_v4_reads_as_one_that_does_not_say_whether_its_holder_was_away():
    v3 = {**a_v2_re_engagement(uuid.uuid4()), "held_grade": "A"}
    told = parse_event("lead.reengaged", 3, v3)
    assert isinstance(told, LeadReengaged) and (told.held_grade, told.holder_away_until) == ("A", None)


def test_a_lifecycle_step_from_before_v2_reads_as_one_that_does_not_number_the_hand_off_it_ended():
    """A v1 rejection, as routing wrote it before its rejected step said the hand-off it ended: it still reads, with
    no number, which a consumer then does not compare with a lead.routed's."""
    v1 = {"lead_id": str(uuid.uuid4()), "from_stage": "accepted", "to_stage": "rejected", "at": NOW.isoformat(),
          "by": "ana", "reason": "rejected by Ana: not-a-fit", "reason_code": "not-a-fit",
          "attribution": {"form_id": "f1"}}
    step = parse_event("lead.stage_changed", 1, json.dumps(v1).encode())
    assert isinstance(step, LeadStageChanged) and step.to_stage == "rejected" and step.handoff_seq is None


def test_a_lead_enriched_with_a_seniority_and_department_outside_the_contracts_still_decodes():
    """Enriched by an older release from a titles file of its own ("partner", "legal"): the values are the
    contract's since, checked where they are written (enrichment's titles, scoring's rules), not on decoding, which
    would dead-letter every such record on the topics."""
    lead = factories.enriched().model_dump(mode="json")
    lead["enrichment"] |= {"seniority": {"value": "partner", "source": "job_title"},
                           "department": {"value": "legal", "source": "job_title"}}
    enrichment = parse_event("lead.enriched", 2, json.dumps(lead).encode()).enrichment
    assert (enrichment.seniority.value, enrichment.department.value) == ("partner", "legal")


def test_a_routed_leads_hand_off_number_is_at_least_one():
    v5 = {**a_v4_routed_lead(), "handoff_seq": 0}
    with pytest.raises(ValidationError, match="handoff_seq"):
        parse_event("lead.routed", 5, v5)


def test_a_trace_is_continued_with_a_new_span():
    parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    child = child_traceparent(parent)
    assert child.split("-")[1] == "0af7651916cd43dd8448eb211c80319c"
    assert child.split("-")[2] != "b7ad6b7169203331"
    assert len(child_traceparent("garbage")) == 55


def _parts(msg):
    return list(msg.headers), msg.key, msg.value


def test_a_stored_message_keeps_arbitrary_bytes_exactly():
    from leadpipe_common.envelope import Message

    original = Message("leads.deadletter", b"\x00\xff", b"\x00not json \xfe\xc3\xa9", (("dlq.x", b"\x80\x00"),))
    assert Message.from_json(original.to_json()) == original


def test_a_value_that_is_not_json_is_undecodable_even_with_valid_headers():
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    with pytest.raises(DecodeError) as err:
        decode(list(msg.headers), msg.key, b'{"lead_id": oops')
    assert err.value.kind == "undecodable"


def test_a_record_cut_short_is_undecodable_saying_where_not_what_it_holds():
    """pydantic's text of invalid JSON quotes the value's first and last bytes: a lead's contact, which the
    dead-letter line was logged with and its dlq.error.message kept."""
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    with pytest.raises(DecodeError) as err:
        decode(list(msg.headers), msg.key, msg.value[:-40])
    assert err.value.kind == "undecodable" and "EOF while parsing" in err.value.detail
    assert msg.value[-70:-40].decode() not in err.value.detail and "input" not in err.value.detail


@pytest.mark.parametrize("change, reason", [
    (lambda h: [x for x in h if x[0] != "ce_specversion"], "ce_specversion"),
    (lambda h: [(k, b"0.3" if k == "ce_specversion" else v) for k, v in h], "ce_specversion"),
    (lambda h: [x for x in h if x[0] != "ce_source"], "ce_source is missing"),
    (lambda h: [(k, b"yesterday" if k == "ce_time" else v) for k, v in h], "RFC 3339"),
    (lambda h: [(k, b"2026-11-23T09:30:00" if k == "ce_time" else v) for k, v in h], "UTC offset"),
    (lambda h: [(k, b"\xff" if k == "ce_type" else v) for k, v in h], "not UTF-8"),
])
def test_headers_that_break_the_cloudevents_binding_are_undecodable(change, reason):
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    with pytest.raises(DecodeError) as err:
        decode(change(list(msg.headers)), msg.key, msg.value)
    assert err.value.kind == "undecodable" and reason in err.value.detail


def test_the_time_written_reads_back_exactly():
    msg = encode("leads.captured", a_lead(), event_id=uuid.uuid4(), source="t", time=NOW)
    assert decode(list(msg.headers), msg.key, msg.value).time == NOW


def test_an_event_with_a_nul_character_in_its_text_is_a_schema_violation_naming_the_field():
    lead = a_lead().model_copy(update={"contact": Contact(email="ada@example.com", job_title="VP\x00Sales")})
    message = encode("leads.captured", lead, event_id=uuid.uuid4(), source="test", time=NOW)
    with pytest.raises(DecodeError) as caught:
        decode(list(message.headers), message.key, message.value)
    assert caught.value.kind == "schema"
    assert "contact.job_title: must not contain the NUL character" in caught.value.detail


def test_where_a_nul_is_named_without_the_nul_itself():
    from leadpipe_common.problems import nul_path

    assert nul_path({"a": [{"b": "ok"}, {"c": "x\x00"}]}) == "a[1].c"
    assert nul_path({"k\x00": "v"}) == "k\\u0000" and "\x00" not in nul_path({"k\x00": "v"})
    assert nul_path({"a": "text \\u0000 as written"}) is None


def test_a_body_cut_of_optional_fields_keeps_its_schema_and_one_cut_of_a_required_field_does_not():
    lead = a_lead()
    made = dict(event_id=uuid.uuid4(), source="test", time=NOW, structured=True)
    phone_out = cloud_event(lead, exclude={"contact": {"phone"}}, **made).get_attributes()
    email_out = cloud_event(lead, exclude={"contact": {"email", "phone"}}, **made).get_attributes()
    assert (phone_out["withheld"], phone_out["dataschema"]) == (
        "contact.phone", f"urn:leadpipe:schema:lead.captured:v{LeadCaptured.version}")
    assert email_out["withheld"] == "contact.email,contact.phone" and "dataschema" not in email_out


def test_a_body_cut_of_some_items_of_a_list_names_each_and_keeps_its_schema():
    from leadpipe_common.events import ScoreReason

    lead = factories.scored()
    reasons = [ScoreReason(rule=name, category="fit", points=5) for name in ("Industry", "Seniority", "Phone")]
    lead = lead.model_copy(update={"score": lead.score.model_copy(update={"reasons": reasons})})
    made = dict(event_id=uuid.uuid4(), source="test", time=NOW, structured=True)
    cut = cloud_event(lead, exclude={"contact": {"phone"}, "score": {"reasons": {2, 1}}}, **made)
    assert cut.get_attributes()["withheld"] == "contact.phone,score.reasons[1],score.reasons[2]"
    assert cut.get_attributes()["dataschema"] == f"urn:leadpipe:schema:lead.scored:v{type(lead).version}"
    assert [r["rule"] for r in cut.get_data()["score"]["reasons"]] == ["Industry"]
