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


@pytest.fixture
def written_as(capsys):
    """``written_as(as_json)``: the project's logging configured so (until the test ends), and a function giving
    what it has written to stderr since."""
    import contextlib
    import logging

    from leadpipe_common.logging import configure

    root = logging.getLogger()
    handlers = root.handlers[:]
    levels = {name: logging.getLogger(name).level for name in (None, "aiokafka", "uvicorn.access", "httpx")}

    def configured(as_json: bool):  # noqa: ANN202
        configure("test", json=as_json)
        return lambda: capsys.readouterr().err

    with contextlib.ExitStack() as restore:
        restore.callback(structlog.reset_defaults)
        restore.callback(lambda: setattr(root, "handlers", handlers))
        for name, level in levels.items():
            restore.callback(logging.getLogger(name).setLevel, level)
        yield configured


def _failed_insert():
    import asyncpg

    return asyncpg.PostgresError.new({
        "S": "ERROR", "C": "23502", "M": 'null value in column "grade" of relation "scores" violates not-null '
        "constraint", "D": "Failing row contains (17b81eab, ada.lovelace@stripe.com, +44 20 7946 0958, null).",
        "s": "scoring", "t": "scores", "c": "grade"})


def test_a_traceback_of_a_postgres_error_is_logged_without_the_row_it_quotes(written_as):
    """uvicorn's "Exception in ASGI application" and the consumer's "loop ended" line log a traceback: a failed
    insert's DETAIL quoted the lead's row there, whatever ``error_text`` kept out of the message."""
    import logging

    import asyncpg

    error = _failed_insert()
    for as_json in (True, False):
        written = written_as(as_json)
        try:
            raise error
        except asyncpg.PostgresError:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application")
            structlog.get_logger("t").error("the consumer loop ended", exc_info=error)
        text = written()
        assert text.count("NotNullViolationError") >= 2 and "test_logging.py" in text  # the frames stay
        assert "ada.lovelace" not in text and "7946 0958" not in text, text
    try:
        raise ValueError("not from the database: ada@example.com")
    except ValueError:
        logging.getLogger("x").exception("other")
    assert "ada@example.com" in written()  # any other exception is written whole


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
def test_a_traceback_with_a_postgres_error_anywhere_in_its_chain_is_logged_without_the_row(written_as, fail):
    """A rollback failing after a failed insert logged the insert's DETAIL, the row, in the context Python writes
    before it: only a Postgres error wrapped (``orig``, ``__cause__``) was written without its values."""
    try:
        fail()
    except Exception as exc:
        error = exc
    for as_json in (True, False):
        written = written_as(as_json)
        structlog.get_logger("t").error("the consumer loop ended", exc_info=error)
        text = written()
        assert "NotNullViolationError" in text and type(error).__name__ in text, text
        assert "raise _failed_insert()" in text and "fail()" in text, text  # the frames of the chain stay
        assert "ada.lovelace" not in text and "7946 0958" not in text and "DETAIL" not in text, text


def test_a_terminal_gets_control_characters_escaped_not_a_forged_line(written_as):
    """A request path or a header is the sender's text: raw, its newline would start a line that reads like the
    service's own, and an escape sequence would drive the operator's terminal. structlog's console renderer
    quotes a value holding one, but writes a message (a library's may quote a client's text) as it is."""
    import logging

    written = written_as(False)
    structlog.get_logger("t").warning("database unavailable",
                                      path="/v1/leads\n2026-12-07 [error] admin key leaked\x1b[2J")
    logging.getLogger("uvicorn.error").warning("Invalid header: %s", "a\n2026-12-07 [error] forged\x1b[2J")
    text = written()
    assert text.count("\n") == 2, text  # one line each
    assert "\x1b" not in text
    assert "'/v1/leads\\n2026-12-07 [error] admin key leaked\\x1b[2J'" in text
    assert "Invalid header: a\\n2026-12-07 [error] forged\\x1b[2J" in text


def test_a_terminal_gets_a_value_holding_an_escape_but_no_space_escaped_too(written_as):
    """The renderer quotes a value holding a space or a newline, but wrote one holding only an ESC or a BEL as it
    is: a record's key (a sales tool's) retitled and cleared the operator's terminal."""
    written = written_as(False)
    structlog.get_logger("t").warning("dead-lettering a record", lead_id="\x1b]0;pwned\x07\x1b[2J")
    text = written()
    assert "\x1b" not in text and "\x07" not in text
    assert "lead_id='\\x1b]0;pwned\\x07\\x1b[2J'" in text


#: A person's address and phone, by name in the code below: a traceback quotes its source lines.
ADDRESS, PHONE = "ada.lovelace@stripe.com", 442079460958


def _bind_fails():
    import asyncpg

    # As asyncpg raises it for a value its codec refuses: the codec's error, quoting the value, as its cause.
    try:
        raise ValueError(f"invalid UUID {ADDRESS!r}: length must be between 32..36 characters, got {len(ADDRESS)}")
    except ValueError as exc:
        raise asyncpg.exceptions.DataError(f"invalid input for query argument $1: {ADDRESS!r} (invalid UUID)") from exc


def _read_back_under_a_stricter_model():
    from leadpipe_common.events import LeadCaptured

    # A stored event read back (capture's writer re-reads a person's first touch) under a model made stricter since.
    stored = factories.captured(ADDRESS).model_dump(mode="json")
    LeadCaptured.model_validate(stored | {"contact": {"email": ADDRESS, "phone": PHONE}})


def _repeats_what_was_refused():
    try:
        _read_back_under_a_stricter_model()
    except Exception as exc:
        raise RuntimeError(f"the first touch could not be read back: {exc}")  # noqa: B904 (as such code does)


@pytest.mark.parametrize("fail", [_bind_fails, _read_back_under_a_stricter_model, _repeats_what_was_refused],
                         ids=["a value asyncpg could not bind", "a stored event its model now refuses",
                              "a message repeating a validation error"])
def test_a_traceback_of_a_value_refused_is_logged_without_the_value(written_as, fail):
    """asyncpg's error about a value it could not bind was cut, but the codec's error it came of was written whole;
    a ValidationError, in the traceback and in error_text's line, quoted every value it refused."""
    from leadpipe_common.db import error_text

    try:
        fail()
    except Exception as exc:
        error = exc
    for as_json in (True, False):
        written = written_as(as_json)
        structlog.get_logger("t").error("batch failed", error=error_text(error), exc_info=error)
        text = written()
        assert type(error).__name__ in text and "fail()" in text, text  # what failed, and where, stay
        assert ADDRESS not in text and str(PHONE) not in text, text


def test_a_webhooks_url_is_not_logged_by_the_http_client(written_as):
    """httpx writes each request's URL at INFO, whole: a Slack or Zapier hook's token, a password in it."""
    import httpx

    written = written_as(True)
    with httpx.Client(transport=httpx.MockTransport(lambda request: httpx.Response(204))) as client:
        client.post("https://hooks.example.com/services/T0/B0/s3cr3tT0ken")
        client.post("https://crm:pa55word@crm.example.com/hooks")
    text = written()
    assert "s3cr3tT0ken" not in text and "pa55word" not in text, text


def test_what_a_postgres_error_was_raised_while_handling_is_still_told(written_as):
    """Only the codec's error asyncpg raises its own from is left out: a connection reset, or a handler's bug, that
    a failed rollback was raised while handling is what an operator needs to read."""
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError:
            raise _failed_insert()  # noqa: B904
    except Exception as exc:
        error = exc
    written = written_as(True)
    structlog.get_logger("t").error("batch failed", exc_info=error)
    text = written()
    assert "Connection reset by peer" in text and "NotNullViolationError" in text and "ada.lovelace" not in text, text


def test_an_exception_no_code_caught_is_logged_without_the_values_it_quotes(written_as):
    """asyncio's own handler wrote "Task exception was never retrieved" with the task's repr, which holds its
    exception's text whole: a ValidationError's quotes the values it refused."""
    import asyncio
    import gc

    from leadpipe_common.logging import loop_errors

    async def forgotten() -> None:
        asyncio.get_running_loop().set_exception_handler(loop_errors)
        task = asyncio.create_task(asyncio.to_thread(_read_back_under_a_stricter_model), name="the-first-touch")
        await asyncio.wait([task])
        del task
        gc.collect()  # the task's exception was never retrieved: said as it goes

    written = written_as(True)
    asyncio.run(forgotten())
    text = written()
    assert "Task exception was never retrieved" in text and '"task": "the-first-touch"' in text, text
    assert "ValidationError (LeadCaptured): contact.phone" in text, text
    assert ADDRESS not in text and str(PHONE) not in text, text


def test_a_commands_forgotten_task_is_logged_without_the_values_it_quotes_as_a_services_is(written_as):
    """Commands (replay, redrive, rescore, keys...) ran asyncio.run, whose loop kept asyncio's own handler."""
    import asyncio
    import gc

    from leadpipe_common.logging import run_command

    async def command() -> str:
        task = asyncio.create_task(asyncio.to_thread(_read_back_under_a_stricter_model), name="a-replayed-lead")
        await asyncio.wait([task])
        del task
        gc.collect()
        return "done"

    written = written_as(True)
    assert run_command(command()) == "done"
    text = written()
    assert "Task exception was never retrieved" in text and '"task": "a-replayed-lead"' in text, text
    assert ADDRESS not in text and str(PHONE) not in text, text


def test_no_command_runs_its_loop_without_the_handler_of_what_no_code_caught():
    import ast
    from pathlib import Path

    root = Path(__file__).parents[2]
    sources = [*(root / "shared" / "src").rglob("*.py"), *(root / "services").glob("*/src/**/*.py")]
    direct = {str(path.relative_to(root)) for path in sources for node in ast.walk(ast.parse(path.read_text()))
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "run"
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "asyncio"}
    assert direct == {"shared/src/leadpipe_common/logging.py"}, "use logging.run_command"
