"""Service command lines refuse bad configuration with a message, never a traceback."""

import importlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from leadpipe_common.cli import QuietServer
from leadpipe_common.local.infra import free_port
from leadpipe_common.topology import SERVICES


def run_service(service: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", service, "serve"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_a_bad_setting_is_named_by_its_environment_variable():
    result = run_service("routing", ROUTING_PORT="eighty")
    assert result.returncode == 2
    assert "invalid setting ROUTING_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_log_level_logging_does_not_know_is_refused_at_start_not_by_a_crash_at_startup():
    result = run_service("routing", LOG_LEVEL="LOUD")
    assert result.returncode == 2 and "invalid setting LOG_LEVEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_rules_file_stops_the_service_naming_file_and_entry(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: x\ngrades: {A: 80, B: 60, C: 30}\nthresholds: {mql: 50, nurture: 10}\n"
                     "fit:\n  - {rule: Size, field: headcount, gte: 10, points: 5}\n")
    result = run_service("scoring", SCORING_RULES_FILE=str(rules))
    assert result.returncode == 2
    assert str(rules) in result.stderr and "fit: rule 'Size': field" in result.stderr
    assert "Traceback" not in result.stderr


def reference_file_settings() -> list[tuple[str, str]]:
    """(service, variable) for every setting of every service that names a file it reads (its rules, forms...)."""
    found = []
    for service in SERVICES:
        settings = getattr(importlib.import_module(f"{service.name}.settings"), f"{service.name.capitalize()}Settings")
        prefix = settings.model_config.get("env_prefix", "")
        found += [(service.name, f"{prefix}{field}".upper()) for field, info in settings.model_fields.items()
                  if info.annotation is Path]
    return found


@pytest.mark.parametrize(("service", "variable"), reference_file_settings())
def test_a_reference_file_that_cannot_be_used_stops_the_service_naming_its_setting_the_file_and_why(
        service, variable, tmp_path, monkeypatch):
    """Scoring, capture and delivery said only "[Errno 2] No such file or directory: ..." or "'utf-8' codec can't
    decode byte 0xfc in position 4", enrichment the first alone: which setting (or, from the first, which file) was
    left to guess."""
    def served(*args, **kwargs):
        raise AssertionError(f"{service} started with {variable} unusable")

    monkeypatch.setattr(QuietServer, "run", served)
    monkeypatch.setattr("uvicorn.run", served)
    cli = importlib.import_module(f"{service}.__main__").cli
    latin = tmp_path / "latin-1.yaml"
    latin.write_bytes("x: m\xfcller\n".encode("latin-1"))
    for path, why in ((tmp_path / "missing.yaml", f"cannot read {tmp_path / 'missing.yaml'}: No such file"),
                      (tmp_path, f"cannot read {tmp_path}: Is a directory"),
                      (latin, f"{latin} is not UTF-8 (byte 4); save it as UTF-8")):
        done = CliRunner().invoke(cli, ["serve"], env={variable: str(path), "COLUMNS": "500"})
        assert done.exit_code == 2, done.output
        assert done.output.startswith(f"{service} cannot start: {variable}: {why}"), done.output


def test_an_export_to_a_file_it_cannot_write_or_of_no_known_kind_is_refused_before_it_starts(tmp_path):
    for target, said in ((tmp_path / "missing" / "out.jsonl", "is not a directory"),
                         (tmp_path / "out.csv", "name a .jsonl or .parquet file, or give --format")):
        result = subprocess.run([sys.executable, "-m", "reporting", "export", str(target)], capture_output=True,
                                text=True, timeout=60, env={**os.environ, "COLUMNS": "500"})  # one line each
        assert result.returncode == 2 and said in result.stderr and "Traceback" not in result.stderr
        assert not target.exists()


def test_a_misspelt_redrive_filter_is_refused_not_taken_for_nothing_to_send():
    for option, value in (("--stage", "scorng"), ("--kind", "Schema")):
        result = subprocess.run([sys.executable, "-m", "leadpipe_common.redrive", option, value],
                                capture_output=True, text=True, timeout=60, env={**os.environ, "COLUMNS": "500"})
        assert result.returncode == 2 and repr(value) in result.stderr and "Traceback" not in result.stderr


def test_a_serving_process_does_not_load_the_migration_tools():
    # alembic and mako are ~10 MB of resident memory a process that only serves would carry for nothing.
    probe = ("import sys, routing.__main__, routing.app, leadpipe_common.service; "
             "print(sorted(m for m in ('alembic', 'mako') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("service", [s.name for s in SERVICES])
@pytest.mark.parametrize("first", ["app", "__main__"])
def test_a_serving_process_does_not_load_rich_or_pygments_yet_a_command_that_asks_for_them_gets_them(service, first):
    # structlog and httpx import them whenever installed, for nothing a service uses: ~4 MB resident a process.
    # Whichever module of the service a process imports first: its entry point (a console script, python -m), or
    # its app (a uvicorn worker, which imports the app factory by name). typer's help and reporting's replay
    # progress import rich themselves, and must still find it.
    probe = "\n".join([
        "import importlib, sys",
        f"importlib.import_module({service + '.' + first!r})",
        f"importlib.import_module({service!r} + '.app'); importlib.import_module({service!r} + '.__main__')",
        "print(sorted(m for m in ('rich', 'pygments') if m in sys.modules))",
        "import rich.progress, pygments.lexers",
        "print('importable')",
    ])
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["[]", "importable"]


QUIET_SERVER = """
import sys, uvicorn
from leadpipe_common.cli import QuietServer

async def app(scope, receive, send):
    await send({"type": "http.response.start", "status": 204, "headers": []})
    await send({"type": "http.response.body", "body": b""})

server = QuietServer(uvicorn.Config(app, port=int(sys.argv[1]), log_config=None, lifespan="off"))
server.TICK_S = 3600  # were a signal left to wait for the next tick, the process would outlive the test
server.run()
"""


def test_a_service_stops_on_its_signal_not_at_its_next_housekeeping_tick():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", QUIET_SERVER, str(port)], stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/")
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline and server.poll() is None, server.stderr.read()
                time.sleep(0.1)
        assert answer.status_code == 204
        assert "date" in answer.headers  # the housekeeping that the slower tick still does
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=20) == -signal.SIGTERM  # uvicorn raises the signal again once it is down
    finally:
        server.kill()


def migrate(*args: str, **env: str):
    from typer.testing import CliRunner

    from routing.__main__ import cli

    # No Postgres listens on port 1: whatever gets that far fails as an unreachable database.
    return CliRunner().invoke(cli, ["migrate", *args], env={
        "DATABASE_URL": "postgresql+asyncpg://leadpipe:x@127.0.0.1:1/leadpipe", "COLUMNS": "500", **env})


def test_a_revision_the_history_does_not_have_is_refused_before_the_database_is_touched():
    """alembic's CommandError was not caught: a typo in the revision ended in a traceback, after the shared auth
    schema had been migrated."""
    result = migrate("0099")
    assert result.exit_code == 2, result.output
    assert "routing: cannot migrate to '0099'" in result.output and "Can't locate revision" in result.output
    assert "Traceback" not in result.output and "DATABASE_URL" not in result.output


@pytest.mark.parametrize("revision", ["", "@", "0001@"])
def test_an_empty_or_malformed_revision_is_refused_in_a_line_not_alembics_assertion(revision):
    """``migrate "$REV"`` with REV unset ended in a 500-line traceback of a bare AssertionError."""
    result = migrate(revision)
    assert result.exit_code == 2, result.output
    assert f"routing: cannot migrate to {revision!r}: not a revision" in result.output, result.output
    assert "Traceback" not in result.output


def test_a_migration_says_the_revision_it_left_in_place_not_the_one_asked_for(monkeypatch):
    from leadpipe_common import migrations

    for before, after, said in ((("0003",), ("0006",), "routing: migrated to 0006 (from 0003)"),
                                ((), ("0006",), "routing: migrated to 0006 (from no tables)"),
                                (("0006",), ("0006",), "routing: already at 0006; nothing to do")):
        monkeypatch.setattr(migrations, "upgrade_service", lambda *a, before=before, after=after, **k: (before, after))
        result = migrate("head")
        assert result.exit_code == 0 and result.output.strip() == said


def test_a_migration_waits_for_a_held_table_as_long_as_database_migration_lock_timeout_s_says(monkeypatch):
    from leadpipe_common import migrations

    given = []
    monkeypatch.setattr(migrations, "upgrade_service", lambda *a, **k: given.append(k["lock_timeout_s"]) or ((), ()))
    assert migrate("head", DATABASE_MIGRATION_LOCK_TIMEOUT_S="2.5").exit_code == 0
    assert given == [2.5]
    refused = migrate("head", DATABASE_MIGRATION_LOCK_TIMEOUT_S="0")
    assert refused.exit_code == 2 and given == [2.5]
    assert refused.output.strip() == "invalid setting DATABASE_MIGRATION_LOCK_TIMEOUT_S: Input should be greater than 0"


def test_a_target_older_than_the_revision_in_place_is_no_upgrade():
    """alembic's upgrade to an older revision runs no step: migrate said "migrated to 0001" and changed nothing."""
    from alembic.script import ScriptDirectory

    import routing
    from leadpipe_common.migrations import config, older_than_in_place

    script = ScriptDirectory.from_config(config(Path(routing.__file__).parent / "migrations", "", ""))
    assert older_than_in_place(script, ("0006",), "0003")
    assert older_than_in_place(script, ("0006",), "base")
    for current, target in ((("0006",), "head"), (("0006",), "0006"), (("0003",), "0006"), ((), "0003"),
                            (("0003",), "+1")):
        assert not older_than_in_place(script, current, target), (current, target)


def test_a_command_holds_the_kafka_clients_log_lines_back_and_only_while_it_runs(caplog):
    import logging

    from leadpipe_common.kafka import quiet_client_logs

    client = logging.getLogger("aiokafka.client")
    with quiet_client_logs():
        client.error('Unable connect to "127.0.0.1:1"')
    assert caplog.records == []
    client.error("after the command")  # a service's logs keep them
    assert [r.getMessage() for r in caplog.records] == ["after the command"]


def test_a_service_that_cannot_reach_the_broker_at_start_says_so_in_one_line_not_a_traceback():
    """It logged starlette's traceback of the start, a dozen frames in one log event, after aiokafka's own line."""
    result = run_service("routing", KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1", ROUTING_PORT="0", LOG_JSON="true")
    assert result.returncode == 3  # uvicorn's code for a start that failed
    assert "Traceback" not in result.stderr and "Unable connect" not in result.stderr
    events = [json.loads(line) for line in result.stderr.splitlines()]
    said = next(e for e in events if e["event"].startswith("cannot start"))
    assert said["event"] == "cannot start: no broker answers at KAFKA_BOOTSTRAP_SERVERS"
    assert said["servers"] == "127.0.0.1:1" and "Unable to bootstrap" in said["error"]
    assert [e["event"] for e in events if e["level"] == "error"] == [said["event"], "Application startup failed. Exiting."]


async def test_any_other_failed_start_keeps_its_traceback_for_uvicorn_to_log():
    from leadpipe_common.service import _traceback_unless_said

    async def failing_start(scope, receive, send):
        await send({"type": "lifespan.startup.failed", "message": "Traceback (most recent call last): ..."})

    for said, logged in (([], "Traceback (most recent call last): ..."), ([ConnectionError()], "")):
        sent: list[dict] = []

        async def send(message, sent=sent):
            sent.append(message)

        await _traceback_unless_said(failing_start, said)({}, None, send)
        assert sent == [{"type": "lifespan.startup.failed", "message": logged}]
