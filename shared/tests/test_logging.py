"""Every line logged while an event is in hand names its lead and event."""

import pytest
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


def test_a_traceback_of_a_postgres_error_is_logged_without_the_row_it_quotes(capsys):
    """uvicorn's "Exception in ASGI application" and the consumer's "loop ended" line log a traceback: a failed
    insert's DETAIL quoted the lead's row there, whatever ``error_text`` kept out of the message."""
    import logging

    import asyncpg

    from leadpipe_common.logging import configure

    error = asyncpg.PostgresError.new({
        "S": "ERROR", "C": "23502", "M": 'null value in column "grade" of relation "scores" violates not-null '
        "constraint", "D": "Failing row contains (17b81eab, ada.lovelace@stripe.com, +44 20 7946 0958, null).",
        "s": "scoring", "t": "scores", "c": "grade"})
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for as_json in (True, False):
            configure("test", json=as_json)
            try:
                raise error
            except asyncpg.PostgresError:
                logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
                structlog.get_logger("t").error("the consumer loop ended", exc_info=error)
            written = capsys.readouterr().err
            assert written.count("NotNullViolationError") >= 2 and "test_logging.py" in written  # the frames stay
            assert "ada.lovelace" not in written and "7946 0958" not in written, written
        try:
            raise ValueError("not from the database: ada@example.com")
        except ValueError:
            logging.getLogger("x").exception("other")
        assert "ada@example.com" in capsys.readouterr().err  # any other exception is written whole
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()


def _failed_insert():
    import asyncpg

    return asyncpg.PostgresError.new({
        "S": "ERROR", "C": "23502", "M": 'null value in column "grade" of relation "scores" violates not-null '
        "constraint", "D": "Failing row contains (17b81eab, ada.lovelace@stripe.com, +44 20 7946 0958, null).",
        "s": "scoring", "t": "scores", "c": "grade"})


def _rollback_fails():
    try:
        raise _failed_insert()
    except Exception:
        raise RuntimeError("batch failed")  # no "from": Python chains the insert's error as its context


def _repeats_it():
    try:
        raise _failed_insert()
    except Exception as exc:
        raise RuntimeError(f"batch failed: {exc}")


def _in_a_group():
    try:
        raise _failed_insert()
    except Exception as exc:
        raise ExceptionGroup("the batch's writes failed", [exc])


@pytest.mark.parametrize("fail", [_rollback_fails, _repeats_it, _in_a_group],
                         ids=["raised while handling it", "its message repeating it", "in an exception group"])
def test_a_traceback_with_a_postgres_error_anywhere_in_its_chain_is_logged_without_the_row(capsys, fail):
    """A rollback failing after a failed insert logged the insert's DETAIL, the row, in the context Python writes
    before it: only a Postgres error wrapped (``orig``, ``__cause__``) was written without its values."""
    import logging

    from leadpipe_common.logging import configure

    try:
        fail()
    except Exception as exc:
        error = exc
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        for as_json in (True, False):
            configure("test", json=as_json)
            structlog.get_logger("t").error("the consumer loop ended", exc_info=error)
            written = capsys.readouterr().err
            assert "NotNullViolationError" in written and type(error).__name__ in written, written
            assert "raise _failed_insert()" in written and "fail()" in written, written  # the frames of the chain stay
            assert "ada.lovelace" not in written and "7946 0958" not in written and "DETAIL" not in written, written
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()


def test_a_terminal_gets_control_characters_escaped_not_a_forged_line(capsys):
    """A request path or a header is the sender's text: raw, its newline would start a line that reads like the
    service's own, and an escape sequence would drive the operator's terminal. structlog's console renderer
    quotes a value holding one, but writes a message (a library's may quote a client's text) as it is."""
    import logging

    from leadpipe_common.logging import configure

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        configure("test", json=False)
        structlog.get_logger("t").warning("database unavailable",
                                          path="/v1/leads\n2026-12-07 [error] admin key leaked\x1b[2J")
        logging.getLogger("uvicorn.error").warning("Invalid header: %s", "a\n2026-12-07 [error] forged\x1b[2J")
        written = capsys.readouterr().err
        assert written.count("\n") == 2, written  # one line each
        assert "\x1b" not in written
        assert "'/v1/leads\\n2026-12-07 [error] admin key leaked\\x1b[2J'" in written
        assert "Invalid header: a\\n2026-12-07 [error] forged\\x1b[2J" in written
    finally:
        root.handlers[:], root.level = handlers, level
        structlog.reset_defaults()
