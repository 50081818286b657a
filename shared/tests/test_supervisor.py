"""make run's supervisor: a dead service restarts, a crash loop backs off, each crash is said once, and a stop
leaves no worker behind."""

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from leadpipe_common.local.stack import RESTART_MAX_S, STABLE_S, ServiceProcess, Stack


def crashing_stack(tmp_path: Path) -> tuple[Stack, ServiceProcess]:
    stack = Stack(data_dir=tmp_path)
    sp = ServiceProcess("scoring", 0, 0, env={}, command=[sys.executable, "-c", "raise SystemExit(3)"])
    stack.processes.append(sp)
    return stack, sp


def run_until_dead(sp: ServiceProcess, now: float) -> None:
    sp.start(now)
    assert sp.proc is not None
    sp.proc.wait(10)


def test_a_service_that_keeps_crashing_is_restarted_later_each_time_and_each_crash_is_said_once(tmp_path):
    stack, sp = crashing_stack(tmp_path)
    said: list[str] = []
    run_until_dead(sp, now=0.0)
    stack.supervise_once(said.append, now=1.0)  # the first death: straight back
    assert sp.restart_at is None and sp.started_at == 1.0
    sp.proc.wait(10)

    waits = []
    clock = 1.0
    for _ in range(6):
        clock += 0.5
        stack.supervise_once(said.append, now=clock)  # noticed: a restart is scheduled, not done
        assert sp.restart_at is not None and sp.restart_at > clock
        waits.append(sp.restart_at - clock)
        stack.supervise_once(said.append, now=clock + 0.1)  # still waiting: nothing new is said
        clock = sp.restart_at
        stack.supervise_once(said.append, now=clock)  # due: started again
        assert sp.restart_at is None and sp.started_at == clock
        sp.proc.wait(10)

    assert len(said) == 7 and all("exited with code 3" in line for line in said)
    assert "keeps crashing" in said[-1]
    assert waits[1] > waits[0] and max(waits) <= RESTART_MAX_S
    assert 0.5 <= waits[0] <= 1.0


def test_a_service_that_ran_a_while_before_dying_restarts_at_once(tmp_path):
    stack, sp = crashing_stack(tmp_path)
    sp.crashes = 5
    run_until_dead(sp, now=0.0)
    stack.supervise_once(lambda _line: None, now=STABLE_S + 1)
    assert sp.crashes == 1 and sp.started_at == STABLE_S + 1
    sp.proc.wait(10)


def test_the_embedded_broker_gets_few_partitions_and_a_cluster_the_default(tmp_path, monkeypatch):
    from leadpipe_common import topics
    from leadpipe_common.local.infra import Broker
    from leadpipe_common.local.stack import EMBEDDED_PARTITIONS

    monkeypatch.delenv("TOPIC_PARTITIONS", raising=False)
    embedded = Stack(data_dir=tmp_path, bootstrap="127.0.0.1:1", broker=Broker(1, tmp_path))
    assert embedded.topic_settings().topic_partitions == EMBEDDED_PARTITIONS < topics.DEFAULT_PARTITIONS
    wide = Stack(data_dir=tmp_path, bootstrap="127.0.0.1:1", broker=Broker(1, tmp_path), replicas={"scoring": 9})
    assert wide.topic_settings().topic_partitions == 9  # every replica gets a partition
    several = Stack(data_dir=tmp_path, bootstrap="127.0.0.1:1", broker=Broker(1, tmp_path), partitions=3)
    assert several.topic_settings().topic_partitions == 3  # the tests' stacks, as on a cluster
    cluster = Stack(data_dir=tmp_path, bootstrap="kafka:9092")
    assert cluster.topic_settings().topic_partitions == topics.DEFAULT_PARTITIONS
    monkeypatch.setenv("TOPIC_PARTITIONS", "7")
    assert embedded.topic_settings().topic_partitions == 7
    assert several.topic_settings().topic_partitions == 3  # a stack's own count is not the operator's to change


def test_a_service_given_no_replicas_is_not_started(tmp_path):
    """What a test stack leaves out (make_test_stack): its tests never use it, and it would cost a start."""
    stack = Stack(data_dir=tmp_path, bootstrap="127.0.0.1:1", database_url="postgresql+asyncpg://x@127.0.0.1:1/x",
                  replicas={"delivery": 0})
    assert stack.start_services(["delivery"]) == [] and stack.processes == []


def gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (what init does to an orphan, in its own time)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_service_that_ignores_sigterm_is_killed_with_its_workers(tmp_path):
    # A leader and its worker, both deaf to SIGTERM, in one process group as uvicorn and its workers are.
    worker_pid = tmp_path / "worker.pid"
    deaf = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN)"
    worker = f"{deaf}; open({str(worker_pid)!r}, 'w').write(str(__import__('os').getpid())); time.sleep(60)"
    leader = f"{deaf}; import subprocess, sys; subprocess.Popen([sys.executable, '-c', {worker!r}]); time.sleep(60)"
    stack = Stack(data_dir=tmp_path)
    sp = ServiceProcess("scoring", 0, 0, env={}, command=[sys.executable, "-c", leader])
    stack.processes.append(sp)
    sp.start()
    deadline = time.monotonic() + 10
    while not worker_pid.exists() or not worker_pid.read_text():
        assert time.monotonic() < deadline, "the worker never started"
        time.sleep(0.05)
    pid = int(worker_pid.read_text())
    try:
        stack.stop_services(timeout=0.5)
        deadline = time.monotonic() + 5
        while not gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert gone(pid), "the worker outlived the stop of its service"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


class FlakyBroker:
    """An embedded broker that died, and whose next starts fail as ``failures`` says (None: it starts)."""

    def __init__(self, log: Path, failures: list[Exception | None]) -> None:
        self.log, self.failures, self.running, self.starts = log, failures, False, 0

    def start(self) -> None:
        self.starts += 1
        failure = self.failures.pop(0)
        if failure is not None:
            raise failure
        self.running = True

    def kill(self) -> None:
        self.running = False


def test_a_broker_that_fails_to_restart_is_retried_later_while_the_stack_runs_on(tmp_path, monkeypatch):
    from aiokafka.errors import KafkaConnectionError

    from leadpipe_common.local import stack as stack_module

    # The first start finds the port taken; the second starts, but its topics cannot be made; the third works.
    broker = FlakyBroker(tmp_path / "tansu.log", [RuntimeError("port 9092 is taken; free the port"), None, None])
    topics: list[Exception | None] = [KafkaConnectionError("no connection"), None]

    async def ensure_topics(_settings, *_wait, **_waiting):  # noqa: ANN001, ANN002, ANN003, ANN202
        failure = topics.pop(0)
        if failure is not None:
            raise failure

    monkeypatch.setattr(stack_module, "ensure_topics", ensure_topics)
    stack = Stack(data_dir=tmp_path, bootstrap="127.0.0.1:9092", broker=broker)
    said: list[str] = []

    stack.supervise_once(said.append, now=0.0)
    assert broker.starts == 1 and not broker.running and stack.broker_restart_at is not None
    first_wait = stack.broker_restart_at
    assert "port 9092 is taken" in said[-1] and "trying again in" in said[-1] and str(broker.log) in said[-1]

    stack.supervise_once(said.append, now=first_wait / 2)  # not due yet: not tried, nothing said
    assert broker.starts == 1 and len(said) == 2

    stack.supervise_once(said.append, now=first_wait)  # started, but no topics: killed, to be tried again
    assert broker.starts == 2 and not broker.running and "no connection" in said[-1]
    assert stack.broker_restart_at - first_wait > first_wait  # each failure waits longer

    stack.supervise_once(said.append, now=stack.broker_restart_at)
    assert broker.starts == 3 and broker.running and stack.broker_restart_at is None
    assert said[-1] == "the embedded broker is running again, after 2 failed starts"
    assert sum("exited" in line for line in said) == 1  # the death is said once, each failed start once
    assert len(said) == 4
