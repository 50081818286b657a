"""`make run`: the whole pipeline on one machine, and the same stack for the tests.

Guarantees:
- The embedded broker and Postgres start only when ``KAFKA_BOOTSTRAP_SERVERS``
  / ``DATABASE_URL`` are unset; otherwise the given ones are used untouched.
- The data directory (logs, the admin key, the session secret, the embedded
  Postgres and its password) is closed to other users at each start; the
  services get the embedded Postgres's password in their ``DATABASE_URL``,
  and what is printed of that URL hides it.
- Topics exist (as ``TopicSettings`` and ``topology`` say: partitions and
  retention; on the embedded broker the stack's own ``partitions``, else
  TOPIC_PARTITIONS when set, else ``EMBEDDED_PARTITIONS``; never fewer than
  a service's replicas) and every service is migrated before any service
  starts.
- Each service replica is its own process. Like systemd or Kubernetes, the
  supervisor restarts a process that dies, and says so once per crash. A
  process that dies again within ``STABLE_S`` of its start is in a crash
  loop: each further restart waits twice as long (with jitter, at most
  ``RESTART_MAX_S``), so a broken setting does not burn a core restarting.
  An embedded broker that dies is restarted too; a restart of it that
  fails (its port taken, its topics not created) is said and tried again
  later, with the same backoff, while the services keep running.
- Ctrl-C (or SIGTERM) stops services first (each finishes and commits its
  batch; one still running after the stop timeout is killed with its
  workers), then Postgres, then the broker. While the stack is starting it
  does so too, without waiting for the rest to start or get ready (only a
  broker or Postgres being started, or a migration under way, is finished).
"""

from __future__ import annotations

import functools
import importlib.resources
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import typer
from aiokafka.errors import KafkaError
from sqlalchemy.engine import make_url

from leadpipe_common import db, migrations
from leadpipe_common.admin import ensure_topics
from leadpipe_common.cli_help import Group
from leadpipe_common.kafka import quiet_client_logs
from leadpipe_common.local.infra import Broker, Postgres, die_with_parent, kept_secret, port_open, write_secret
from leadpipe_common.logging import run_command
from leadpipe_common.retry import backoff
from leadpipe_common.auth import ADMIN, split
from leadpipe_common.keys import create_key, key_is_valid
from leadpipe_common.settings import (
    DEFAULT_CONNECT_TIMEOUT_S, DEFAULT_MIGRATION_LOCK_TIMEOUT_S, POSTGRES_PASSWORD_FILE, KafkaSettings,
    ServiceSettings, StackSettings, TopicSettings, asyncpg_url,
)
from leadpipe_common.topology import PORTS, TOPICS

#: Each service and its base port, from the topology table.
SERVICES: dict[str, int] = PORTS
#: Replica ``i`` of a service listens on its base port + REPLICA_PORT_STEP * i.
REPLICA_PORT_STEP = 100
#: Partitions of each topic the embedded broker gets unless TOPIC_PARTITIONS is set, or as many as the most
#: replicas a service runs, so that each replica still gets one. That broker (Tansu's memory storage) lists
#: every record batch stored in a partition on each fetch of it, and a produce round writes one batch per
#: partition it touches: its cost grows with partitions times the topic's history (a fetch at 300 records/s
#: went from 0.34 to 1.1 ms of broker CPU a record as one 4-partition topic grew from 3,000 to 43,000
#: records). At 100 leads/s, 12 -> 4 partitions cut the broker's CPU by 35-45 %; 4 -> 1, back to back twice
#: at 100 then 300 leads/s, 0.83/0.88 -> 0.43/0.46 ms a lead at 100/s (the stack 5.55/5.94 -> 4.86/4.98)
#: and 1.12/1.15 -> 0.47/0.44 at 300/s (p99 to lead.routed 3.2/0.81 -> 0.60/0.57 s). A cluster keeps
#: ``topics.DEFAULT_PARTITIONS``.
EMBEDDED_PARTITIONS = 1
#: A process that ran this long before dying was healthy: it restarts at once.
STABLE_S = 30.0
RESTART_MAX_S = 30.0
#: How long a broker that cannot be reached is waited for before the start fails.
KAFKA_WAIT_S = 30.0


class StartCancelled(Exception):
    """The stack was asked to stop (``Stack.stopping``) before it was up."""


@dataclass
class ServiceProcess:
    service: str
    replica: int
    port: int
    env: dict[str, str]
    proc: subprocess.Popen | None = None
    restarts: int = 0
    log_path: Path | None = None
    #: What runs; by default the service's own command line.
    command: list[str] | None = None
    started_at: float = 0.0
    #: Deaths in a row, each within STABLE_S of its start.
    crashes: int = 0
    #: When a dead process is due to start again (None: alive, or not noticed dead yet).
    restart_at: float | None = None

    @property
    def name(self) -> str:
        return f"{self.service}-{self.replica}"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, now: float | None = None) -> None:
        out = self.log_path.open("ab") if self.log_path else None
        self.started_at = time.monotonic() if now is None else now
        self.restart_at = None
        self.proc = subprocess.Popen(
            self.command or [sys.executable, "-m", self.service, "serve"],
            env=self.env, stdout=out, stderr=subprocess.STDOUT if out else None,
            stdin=subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent(),
        )
        if out:
            out.close()

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def signal(self, sig: int) -> None:
        """Send ``sig`` to the process and its workers (its own process group): a paused service is paused
        whole, a uvicorn supervisor's workers and their background loops with it."""
        if self.alive:
            assert self.proc is not None
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group, as a crash of the machine's process would: workers included."""
        if self.proc is not None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()


@dataclass
class Stack:
    """Broker, Postgres and service processes, started in order and stopped in reverse."""

    data_dir: Path
    broker_port: int = 9092
    postgres_port: int = 5432
    replicas: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERVICES, 1))
    base_ports: dict[str, int] = field(default_factory=lambda: dict(SERVICES))
    bootstrap: str | None = None
    database_url: str | None = None
    #: How long its migrations wait for a new connection (DATABASE_CONNECT_TIMEOUT_S).
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    #: How long its migrations wait for a table another transaction holds (DATABASE_MIGRATION_LOCK_TIMEOUT_S).
    migration_lock_timeout_s: float = DEFAULT_MIGRATION_LOCK_TIMEOUT_S
    durable: bool = True
    service_logs: bool = False  # write service output to files instead of the terminal
    extra_env: dict[str, str] = field(default_factory=dict)
    #: Partitions of each topic on the embedded broker, at least (None: ``EMBEDDED_PARTITIONS``).
    partitions: int | None = None
    broker: Broker | None = None
    postgres: Postgres | None = None
    processes: list[ServiceProcess] = field(default_factory=list)
    #: Set by make run's Ctrl-C or SIGTERM handler (a plain flag: a handler must not take a lock). While starting,
    #: migrate, start_services and wait_ready then raise StartCancelled rather than carry on for up to a minute.
    stopping: bool = False
    #: Failed restarts in a row of the embedded broker, and when the next is due (None: none failed).
    broker_failures: int = 0
    broker_restart_at: float | None = None

    def _unless_stopping(self, doing: str) -> None:
        if self.stopping:
            raise StartCancelled(f"Ctrl-C (or SIGTERM) while {doing}")

    def start_infra(self, say: Callable[[str], object] = lambda doing: None) -> None:
        """Start what is embedded and create the topics; ``say`` is told what is under way (make run's status
        line: a broker and Postgres of the user's are not started, and a wait for their broker is said)."""
        # Its logs, keys, secrets and Postgres are its owner's alone. As root, every user may pass through the data
        # directory (Postgres's own must): what it holds is closed one by one.
        for private in (self.data_dir, self.data_dir / "logs"):
            private.mkdir(parents=True, exist_ok=True)
            private.chmod(0o700)
        if self.bootstrap is None:
            say("starting the embedded broker...")
            self.broker = Broker(self.broker_port, self.data_dir / "logs")
            self.broker.start()
            self.bootstrap = self.broker.bootstrap
        if self.database_url is None:
            say("starting the embedded Postgres...")
            self.postgres = Postgres(self.postgres_port, self.data_dir / "postgres" / "data",
                                     self.data_dir / POSTGRES_PASSWORD_FILE, durable=self.durable)
            self.postgres.start()
            self.database_url = self.postgres.url()
        say(f"creating the topics on Kafka at {self.bootstrap}...")
        waiting = f"waiting for Kafka at {self.bootstrap} (up to {KAFKA_WAIT_S:g} s)..."
        try:
            self._ensure_topics(waiting=lambda: say(waiting))
        except KafkaError as exc:
            raise RuntimeError(f"cannot reach Kafka at {self.bootstrap}: {exc}") from None

    def _ensure_topics(self, waiting: Callable[[], object] = lambda: None) -> None:
        # aiokafka logs each failed attempt of the wait (~100 lines over it): what failed is said once, by the caller.
        with quiet_client_logs():
            run_command(ensure_topics(self.topic_settings(), KAFKA_WAIT_S, waiting=waiting))

    def topic_settings(self) -> TopicSettings:
        assert self.bootstrap
        settings = TopicSettings(kafka_bootstrap_servers=self.bootstrap)
        # TOPIC_PARTITIONS (what TopicSettings reads) overrides the embedded broker's default, not a stack
        # that names its own (the tests' several): an operator's exported value must not change what they test.
        if self.broker is not None and (self.partitions is not None or "TOPIC_PARTITIONS" not in os.environ):
            partitions = max(self.partitions or EMBEDDED_PARTITIONS, *self.replicas.values())
            settings = settings.model_copy(update={"topic_partitions": partitions})
        return settings

    @property
    def admin_key_file(self) -> Path:
        return self.data_dir / "admin.key"

    def local_admin_key(self) -> str:
        """An admin API key for whoever runs this stack: LEADPIPE_BOOTSTRAP_KEY when set, else one kept in the
        data directory (readable by its owner only), created on the first start or when it was revoked."""
        if os.environ.get("LEADPIPE_BOOTSTRAP_KEY"):
            return os.environ["LEADPIPE_BOOTSTRAP_KEY"]
        settings = ServiceSettings(database_url=self.database_url)
        kept = self.admin_key_file.read_text().strip() if self.admin_key_file.exists() else ""
        parts = split(kept)
        if parts and run_command(key_is_valid(settings, parts[0])):
            return kept
        _, key = run_command(create_key(settings, "make run (local admin)", [ADMIN]))
        write_secret(self.admin_key_file, key)
        return key

    def signing_secret(self) -> str:
        """``LEADPIPE_SESSION_SECRET`` for every process of this stack: dashboard sessions and form tokens then
        hold across replicas and restarts. Kept in the data directory (owner only), made on the first start."""
        return kept_secret(self.data_dir / "session.secret")

    def env(self) -> dict[str, str]:
        assert self.bootstrap and self.database_url
        env = {**os.environ, **self.extra_env, "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap,
               "DATABASE_URL": self.database_url}
        env.setdefault("LEADPIPE_SESSION_SECRET", self.signing_secret())
        return env

    def migrate(self, services: list[str] | None = None) -> None:
        # In-process: four more interpreters would cost seconds of imports each.
        assert self.database_url
        for service in services or list(SERVICES):
            self._unless_stopping(f"migrating {service}")
            directory = Path(str(importlib.resources.files(service) / "migrations"))
            try:
                migrations.upgrade_service(directory, self.database_url, schema=service,
                                           connect_timeout_s=self.connect_timeout_s,
                                           lock_timeout_s=self.migration_lock_timeout_s)
            except db.ConnectTimeout as exc:
                raise RuntimeError(f"migrating {service} failed: Postgres at {_shown_url(self.database_url)} did not "
                                   f"answer within {exc.seconds:g} s") from exc
            except TimeoutError as exc:  # asyncpg's, once connected (a statement): its text is empty
                raise RuntimeError(f"migrating {service} failed: it timed out after connecting to Postgres at "
                                   f"{_shown_url(self.database_url)}") from exc
            except Exception as exc:
                raise RuntimeError(f"migrating {service} failed: {exc}") from exc

    def start_services(self, services: list[str] | None = None) -> list[ServiceProcess]:
        started = []
        for service in services or list(SERVICES):
            for i in range(self.replicas.get(service, 1)):
                self._unless_stopping(f"starting {service}-{i}")
                port = self.base_ports[service] + REPLICA_PORT_STEP * i
                if port_open("127.0.0.1", port):
                    raise RuntimeError(f"port {port} for {service} is taken; set {service.upper()}_PORT")
                env = {**self.env(), f"{service.upper()}_PORT": str(port)}
                sp = ServiceProcess(service, i, port, env)
                if self.service_logs:
                    (self.data_dir / "logs").mkdir(parents=True, exist_ok=True)
                    sp.log_path = self.data_dir / "logs" / f"{sp.name}.log"
                sp.start()
                self.processes.append(sp)
                started.append(sp)
        return started

    def wait_ready(self, processes: list[ServiceProcess] | None = None, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        pending = list(processes or self.processes)
        # Not through the user's http_proxy (httpx reads it, and 127.0.0.1 is not spared): behind a corporate
        # proxy every healthy service was "not ready within 60s".
        with httpx.Client(timeout=1, trust_env=False) as client:
            said = "no answer yet"
            while pending:
                sp = pending[0]
                self._unless_stopping(f"waiting for {sp.name} to be ready")
                if not sp.alive:
                    raise RuntimeError(f"{sp.name} exited with {sp.proc.returncode if sp.proc else '?'} while starting"
                                       + (f"; see {sp.log_path}" if sp.log_path else "; see its output above"))
                try:
                    answer = client.get(f"{sp.url}/readyz")
                    if answer.status_code == 200:
                        pending.pop(0)
                        said = "no answer yet"
                        continue
                    said = f"/readyz answered {answer.status_code}: {answer.text[:300]}"
                except httpx.HTTPError as exc:
                    said = f"/readyz: {type(exc).__name__}"
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{sp.name} was not ready within {timeout:.0f}s ({said})")
                time.sleep(0.1)
        self._unless_stopping("the services were getting ready")  # not "up" a moment before stopping

    def restart_broker(self) -> None:
        """Start the embedded broker again (empty: it keeps only memory) and recreate the topics."""
        assert self.broker is not None
        self.broker.kill()
        self.broker.start()
        self._ensure_topics()

    def supervise_once(self, say=print, *, now: float | None = None, at_once: bool = False) -> None:  # noqa: ANN001
        """Restart what died. ``at_once`` skips the crash-loop wait (tests that kill on purpose)."""
        now = time.monotonic() if now is None else now
        if self.broker is not None and not self.broker.running:
            self._supervise_broker(say, now, at_once=at_once)
        for sp in self.processes:
            if sp.proc is None or sp.alive:
                continue
            if sp.restart_at is None:  # a death not seen before: say it once, and when it restarts
                sp.restarts += 1
                sp.crashes = sp.crashes + 1 if now - sp.started_at < STABLE_S else 1
                wait = 0.0 if sp.crashes == 1 or at_once else backoff(sp.crashes - 2, base=1.0, cap=RESTART_MAX_S)
                sp.restart_at = now + wait
                log = f"see {sp.log_path}" if sp.log_path else "see its output above"
                when = "now" if wait == 0 else f"in {wait:.1f}s (it keeps crashing: {log})"
                say(f"{sp.name} exited with code {sp.proc.returncode}; restarting {when} (restart #{sp.restarts})")
            if at_once or now >= sp.restart_at:
                sp.start(now)

    def _supervise_broker(self, say, now: float, *, at_once: bool) -> None:  # noqa: ANN001
        assert self.broker is not None
        if self.broker_restart_at is None:
            say("the embedded broker exited; starting it again (it comes back empty; capture re-drives "
                "leads that have no outcome yet)")
        elif now < self.broker_restart_at and not at_once:
            return
        try:
            self.restart_broker()
        except (RuntimeError, OSError) as exc:  # KafkaError is a RuntimeError
            # Killed, so that the next pass starts it afresh: a broker whose topics failed is of no use either.
            self.broker.kill()
            self.broker_failures += 1
            wait = backoff(self.broker_failures - 1, base=1.0, cap=RESTART_MAX_S)
            self.broker_restart_at = now + wait
            say(f"the embedded broker did not start again: {exc}; trying again in {wait:.1f}s "
                f"(its log: {self.broker.log})")
            return
        if self.broker_failures:
            say(f"the embedded broker is running again, after {self.broker_failures} failed "
                f"start{'s' if self.broker_failures > 1 else ''}")
        self.broker_failures, self.broker_restart_at = 0, None

    def stop_services(self, processes: list[ServiceProcess] | None = None, timeout: float = 22) -> None:
        # A service may take 20 s to stop at worst (deploy/k8s/capture.yaml says which parts): killed sooner, its
        # last offsets go uncommitted and its batch is done again.
        targets = list(processes or self.processes)
        for sp in targets:
            sp.signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for sp in targets:
            if sp.proc is None:
                continue
            try:
                sp.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                # The whole group, as SIGTERM went: uvicorn's workers (<SERVICE>_WORKERS) outlive their leader.
                sp.kill()
        for sp in targets:
            if sp in self.processes:
                self.processes.remove(sp)

    def stop(self) -> None:
        self.stop_services()
        if self.postgres:
            self.postgres.stop()
        if self.broker:
            self.broker.stop()


cli = typer.Typer(help="Run the whole leadpipe pipeline on this machine.", no_args_is_help=True, add_completion=False,
                  cls=Group)


@cli.callback()
def _commands() -> None:
    """Run the whole leadpipe pipeline on this machine."""  # keeps `run` an explicit subcommand


def _replicas() -> dict[str, int]:
    replicas = {}
    for s in SERVICES:
        raw = os.environ.get(f"{s.upper()}_REPLICAS", "1")
        # ASCII alone: str.isdigit takes "²", which int() refuses with a traceback.
        if not (raw.isascii() and raw.isdigit()) or int(raw) < 1:
            raise typer.BadParameter(f"{s.upper()}_REPLICAS must be a whole number of at least 1, not {raw!r}")
        replicas[s] = int(raw)
    return replicas


def _ports() -> dict[str, int]:
    ports = {}
    for s, default in SERVICES.items():
        raw = os.environ.get(f"{s.upper()}_PORT", str(default))
        if not (raw.isascii() and raw.isdigit()) or not 0 < int(raw) < 65536:
            raise typer.BadParameter(f"{s.upper()}_PORT must be a port number, not {raw!r}")
        ports[s] = int(raw)
    return ports


def _database_url() -> str | None:
    """DATABASE_URL as the services take it (the asyncpg dialect, libpq's sslmode as asyncpg's ssl): the stack
    migrates with it in this process, where a plain postgresql:// URL found no async driver."""
    given = os.environ.get("DATABASE_URL")
    if given is None:
        return None
    try:
        return asyncpg_url(given)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None


def _shown_url(url: str) -> str:
    """A database URL as `make run` prints it: as a user writes it, its password masked (a terminal is shared
    and recorded)."""
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=True)


def _admin_key_lines(key_file: Path, key: str) -> list[str]:
    """What `make run` says of the admin key: the one it keeps, or, for LEADPIPE_BOOTSTRAP_KEY, that it is the
    user's (their secret, never printed, and not in the data directory)."""
    if os.environ.get("LEADPIPE_BOOTSTRAP_KEY"):
        return ["admin API key: the LEADPIPE_BOOTSTRAP_KEY you set (not shown)",
                "  export LEADPIPE_KEY=<your LEADPIPE_BOOTSTRAP_KEY>"]
    from rich.markup import escape

    # Printed as rich markup: a data directory data[old] would be said to be data.
    return [escape(f"admin API key (kept in {key_file}): ") + f"[bold]{escape(key)}[/]",
            escape(f"  export LEADPIPE_KEY={key}")]


#: Held open, locked, by the run that uses a data directory (until it has stopped), so that a second run is told
#: at once.
_RUN_LOCKS: list[Any] = []


def _one_run_of(data_dir: Path) -> str | None:
    """Lock ``data_dir`` for this run; None, or what holds it when another run does (the lock goes with its process,
    however it ends)."""
    import fcntl

    data_dir.mkdir(parents=True, exist_ok=True)
    lock = (data_dir / "run.lock").open("a+")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        held_by = lock.read().strip() or "another process"
        lock.close()
        return held_by
    lock.seek(0)
    lock.truncate()
    lock.write(f"pid {os.getpid()}")
    lock.flush()
    _RUN_LOCKS.append(lock)
    return None


@cli.command()
def run() -> None:
    """Start broker, Postgres and every service; Ctrl-C stops everything cleanly.

    Configured by the environment (README, Configuration): LEADPIPE_DATA_DIR, LEADPIPE_BROKER_PORT,
    LEADPIPE_POSTGRES_PORT, <SERVICE>_PORT, <SERVICE>_REPLICAS; KAFKA_BOOTSTRAP_SERVERS and
    DATABASE_URL use yours instead of starting embedded ones.
    """
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    from leadpipe_common.cli import load_settings

    console = Console()
    where = load_settings(StackSettings)
    load_settings(KafkaSettings)  # the broker's address and TLS files every service and topic creation take
    data_dir = where.data_dir
    try:
        running = _one_run_of(data_dir)
    except OSError as exc:  # a .data another user made, a LEADPIPE_DATA_DIR under a file
        console.print(f"[red]cannot start leadpipe:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    if running is not None:
        # A second run failed on a port, suggested another, then failed on Postgres's lock of the same data; and
        # said "leadpipe stopped." while the first ran on.
        console.print(f"[red]make run is already running with {escape(str(data_dir))}[/] ({escape(running)}): stop "
                      "it with Ctrl-C there, or give this one another LEADPIPE_DATA_DIR (and ports)")
        raise typer.Exit(1)
    stack = Stack(
        data_dir=data_dir.resolve(), broker_port=where.broker_port, postgres_port=where.postgres_port,
        replicas=_replicas(), base_ports=_ports(),
        bootstrap=os.environ.get("KAFKA_BOOTSTRAP_SERVERS"), database_url=_database_url(),
        connect_timeout_s=where.database_connect_timeout_s,
        migration_lock_timeout_s=where.database_migration_lock_timeout_s,
    )

    def on_signal(signum: int, _frame: object) -> None:
        stack.stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    started = time.monotonic()
    try:
        with console.status("starting...") as status:
            # Addresses, paths and errors are never markup: a broker at [fe80::1]:9092 would show as :9092, and
            # an error holding "[/x]" would end make run in a MarkupError.
            stack.start_infra(say=lambda doing: status.update(escape(doing)))
        where_db = f" in Postgres at {_shown_url(stack.database_url)}" if stack.database_url else ""
        with console.status(escape(f"migrating{where_db}...")):
            stack.migrate()
            admin_key = stack.local_admin_key()
        with console.status("starting services..."):
            stack.start_services()
            stack.wait_ready()
        table = Table(title=f"leadpipe is up ({time.monotonic() - started:.1f}s)", title_justify="left")
        table.add_column("what")
        table.add_column("where")
        table.add_row("broker", Text(stack.bootstrap + (" (embedded Tansu, memory only)" if stack.broker else "")))
        table.add_row("postgres", Text(_shown_url(stack.database_url or "")
                                       + (f" (embedded, data in {data_dir})" if stack.postgres else "")))
        for sp in stack.processes:
            table.add_row(sp.name, f"{sp.url}  docs {sp.url}/docs  metrics {sp.url}/metrics")
        table.add_row("topics", ", ".join(TOPICS))
        console.print(table)
        url = {sp.service: sp.url for sp in reversed(stack.processes)}
        # Commands to copy and paste: never wrapped, whatever the terminal's width.
        say = functools.partial(console.print, soft_wrap=True)
        for line in _admin_key_lines(stack.admin_key_file, admin_key):
            say(line)
        # With the key, as the README's first steps: its answer names Ada's lead on a second run too.
        say(f"post a lead:  curl -s {url['capture']}/v1/leads -H 'content-type: application/json' "
            "-H \"Authorization: Bearer $LEADPIPE_KEY\" "
            "-d '{\"email\": \"ada@stripe.com\", \"job_title\": \"VP Marketing\", \"offer\": \"demo\"}'")
        say(f"the funnel:   curl -s {url['reporting']}/v1/reports/funnel -H \"Authorization: Bearer $LEADPIPE_KEY\"")
        say(f"dashboard:    [bold]{url['reporting']}/dashboard[/] (sign in with the key; the API docs at each "
            "service's /docs then open too)")
        console.print("Ctrl-C stops everything.")
        while not stack.stopping:
            stack.supervise_once(lambda msg: console.print(f"[yellow]{escape(msg)}[/]"))
            time.sleep(0.5)
    except StartCancelled as exc:
        console.print(f"[yellow]stopping before leadpipe was up: {escape(str(exc))}[/]")
    except (RuntimeError, OSError) as exc:  # an OSError: a .data another user made, a disk full, a noexec mount
        console.print(f"[red]cannot start leadpipe:[/] {escape(str(exc))}")
        raise typer.Exit(1) from None
    finally:
        with console.status("stopping..."):
            stack.stop()
        console.print("leadpipe stopped.")
        while _RUN_LOCKS:
            _RUN_LOCKS.pop().close()  # the data directory is free for the next run


def main() -> None:
    cli()
