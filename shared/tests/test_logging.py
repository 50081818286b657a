"""Every line logged while an event is in hand names its lead and event."""

import structlog

from leadpipe_common.envelope import decode
from leadpipe_common.logging import each
from leadpipe_common.testing import factories


def envelopes(n):
    messages = [factories.message("leads.captured", factories.captured(f"p{i}@example.com")) for i in range(n)]
    return [decode(m.headers, m.key, m.value) for m in messages]


def test_each_event_of_a_batch_is_named_on_the_lines_logged_while_it_is_in_hand():
    batch = envelopes(2)
    log = structlog.get_logger("test")
    with structlog.testing.capture_logs(processors=[structlog.contextvars.merge_contextvars]) as lines:
        for env in each(batch):
            log.info("handling")
        log.info("after the batch")
    assert [(line.get("lead_id"), line.get("event_id")) for line in lines] == [
        (str(batch[0].data.lead_id), str(batch[0].id)), (str(batch[1].data.lead_id), str(batch[1].id)), (None, None)]
