"""Every line logged while an event is in hand names its lead and event."""

import structlog

from leadpipe_common.envelope import decode
from leadpipe_common.logging import each, name_event_in_hand
from leadpipe_common.testing import factories


def envelopes(n):
    messages = [factories.message("leads.captured", factories.captured(f"p{i}@example.com")) for i in range(n)]
    return [decode(m.headers, m.key, m.value) for m in messages]


def test_each_event_of_a_batch_is_named_on_the_lines_logged_while_it_is_in_hand():
    batch = envelopes(2)
    log = structlog.get_logger("test")
    with structlog.testing.capture_logs(processors=[name_event_in_hand]) as lines:
        for env in each(batch):
            log.info("handling")
        log.info("after the batch")
    assert [(line.get("lead_id"), line.get("event_id")) for line in lines] == [
        (str(batch[0].data.lead_id), str(batch[0].id)), (str(batch[1].data.lead_id), str(batch[1].id)), (None, None)]


def test_a_nested_walk_hands_the_outer_event_back_and_a_line_may_name_its_own_ids():
    outer, inner = envelopes(1), envelopes(2)
    log = structlog.get_logger("test")
    with structlog.testing.capture_logs(processors=[name_event_in_hand]) as lines:
        for _ in each(outer):
            for _ in each(inner):
                pass
            log.info("outer again")
            log.info("about another", lead_id="someone-else")
    assert lines[0]["lead_id"] == str(outer[0].data.lead_id) and lines[0]["event_id"] == str(outer[0].id)
    assert lines[1]["lead_id"] == "someone-else" and lines[1]["event_id"] == str(outer[0].id)
