"""make run's secrets and its embedded Postgres: every secret its owner's alone, no connection to that Postgres
without the password make run keeps, and a data directory an earlier version left open closed at its next start.
The tests marked integration start that Postgres alone (no broker, no service)."""

import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from leadpipe_common.local.infra import HBA, SCRAM_ITERATIONS, Postgres, free_port, kept_secret, write_secret
from leadpipe_common.local.stack import Stack, _shown_url
from leadpipe_common.settings import DEFAULT_DATABASE_URL, POSTGRES_PASSWORD_FILE, KafkaSettings, ServiceSettings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_secret_is_written_for_its_owner_alone_whatever_the_umask(tmp_path):
    kept = os.umask(0)
    try:
        write_secret(tmp_path / "made" / "admin.key", "lpk_1_secret")
    finally:
        os.umask(kept)
    assert mode(tmp_path / "made" / "admin.key") == 0o600
    assert (tmp_path / "made" / "admin.key").read_text() == "lpk_1_secret\n"


def test_a_secret_half_written_by_a_start_that_died_is_neither_read_nor_left_readable(tmp_path):
    partial = tmp_path / "session.secret.partial"
    partial.write_text("half")
    partial.chmod(0o644)
    secret = kept_secret(tmp_path / "session.secret")
    assert secret != "half" and len(secret) >= 32
    assert mode(tmp_path / "session.secret") == 0o600 and not partial.exists()


def test_a_kept_secret_is_made_at_the_first_call_and_read_back_after(tmp_path):
    made = kept_secret(tmp_path / "postgres.password")
    assert kept_secret(tmp_path / "postgres.password") == made


def test_the_embedded_postgres_is_reached_with_its_password_which_make_run_prints_hidden(tmp_path):
    postgres = Postgres(5432, tmp_path / "postgres" / "data", tmp_path / POSTGRES_PASSWORD_FILE)
    url = postgres.url()
    assert f"postgres:{postgres.password}@127.0.0.1:5432" in url
    assert postgres.password not in _shown_url(url) and "postgres:***@" in _shown_url(url)


def test_a_command_run_beside_make_run_reaches_its_postgres_with_the_password_make_run_keeps(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path))
    write_secret(tmp_path / POSTGRES_PASSWORD_FILE, "kept-by-make-run")
    assert ServiceSettings().database_url == "postgresql+asyncpg://postgres:kept-by-make-run@127.0.0.1:5432/leadpipe"


def test_a_command_beside_make_run_on_another_port_reaches_make_runs_postgres_not_the_one_on_5432(monkeypatch, tmp_path):
    """The usual reason to move make run's Postgres is a Postgres of the user's on 5432: a command went there, with
    make run's password."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEADPIPE_POSTGRES_PORT", "5433")
    write_secret(tmp_path / POSTGRES_PASSWORD_FILE, "kept-by-make-run")
    assert ServiceSettings().database_url == "postgresql+asyncpg://postgres:kept-by-make-run@127.0.0.1:5433/leadpipe"


def test_a_command_beside_make_run_on_another_broker_port_reaches_make_runs_broker_not_the_one_on_9092(monkeypatch):
    """Told to move make run's broker off 9092 (a broker of the user's holds it), make redrive and make replay went on
    talking to that other broker."""
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS", raising=False)
    monkeypatch.setenv("LEADPIPE_BROKER_PORT", "9094")
    assert KafkaSettings().kafka_bootstrap_servers == "127.0.0.1:9094"
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "kafka.example.com:9092")  # the user's own, as given
    assert KafkaSettings().kafka_bootstrap_servers == "kafka.example.com:9092"
    monkeypatch.delenv("KAFKA_BOOTSTRAP_SERVERS")
    monkeypatch.setenv("LEADPIPE_BROKER_PORT", "not a port")  # another program's: the default stands
    assert KafkaSettings().kafka_bootstrap_servers == "127.0.0.1:9092"


def test_a_make_run_setting_that_is_wrong_leaves_a_services_own_settings_as_they_were(monkeypatch, tmp_path):
    """A LEADPIPE_* variable of another program's on a server is no reason for a service not to start."""
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("LEADPIPE_POSTGRES_PORT", "not a port")
    write_secret(tmp_path / POSTGRES_PASSWORD_FILE, "kept-by-make-run")
    assert ServiceSettings().database_url == DEFAULT_DATABASE_URL


def test_a_database_url_of_the_users_is_taken_as_given_beside_make_runs_password(monkeypatch, tmp_path):
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path))
    write_secret(tmp_path / POSTGRES_PASSWORD_FILE, "kept-by-make-run")
    monkeypatch.setenv("DATABASE_URL", "postgresql://leadpipe:theirs@db.example.com/leadpipe")
    assert ServiceSettings().database_url == "postgresql+asyncpg://leadpipe:theirs@db.example.com/leadpipe"


def test_with_no_make_run_here_the_default_database_url_names_no_password(monkeypatch, tmp_path):
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.setenv("LEADPIPE_DATA_DIR", str(tmp_path / "never-started"))
    assert ServiceSettings().database_url == DEFAULT_DATABASE_URL


def test_make_runs_data_directory_is_closed_to_other_users_at_each_start(monkeypatch, tmp_path):
    """Its logs hold leads' addresses, and it holds the keys and the password: a directory of 0755 (the umask's)
    let every user of the machine list and read them. Its logs are closed too: as root, others may pass through
    the data directory to Postgres's."""
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    for made in (data, data / "logs"):
        made.chmod(0o755)
    monkeypatch.setattr(Stack, "_ensure_topics", lambda self, waiting=None: None)
    Stack(data_dir=data, bootstrap="127.0.0.1:1", database_url="postgresql+asyncpg://x@127.0.0.1:1/x").start_infra()
    assert mode(data) == 0o700 and mode(data / "logs") == 0o700


@pytest.mark.parametrize("durable", [True, False])
def test_only_a_durable_postgres_waits_for_its_new_data_directory_to_reach_the_disk(monkeypatch, tmp_path, durable):
    """The tests' Postgres runs with fsync off: each test stack's start waited for initdb's thousand files all the
    same."""
    from leadpipe_common.local import infra

    data = tmp_path / "postgres" / "data"
    ran = []

    def run(args, **kwargs):
        ran.append(args)
        if args[0].endswith("initdb"):
            (data / "pg_hba.conf").write_text("trust\n")
        return subprocess.CompletedProcess(args, 0, "", "")

    monkeypatch.setattr(infra.subprocess, "run", run)
    monkeypatch.setattr(infra.subprocess, "Popen", lambda *args, **kwargs: None)
    monkeypatch.setattr(infra, "_wait_for_port", lambda *args, **kwargs: None)
    monkeypatch.setattr(Postgres, "_user_kwargs", lambda self: {})
    monkeypatch.setattr(Postgres, "_create_database", lambda self, name: None)
    Postgres(free_port(), data, tmp_path / POSTGRES_PASSWORD_FILE, durable=durable).start()
    [initdb] = [args for args in ran if args[0].endswith("initdb")]
    assert ("--no-sync" in initdb) is not durable


@contextlib.contextmanager
def running(postgres: Postgres) -> Iterator[Postgres]:
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.stop()


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    """A Postgres of its own, not started. Not under tmp_path: as root Postgres runs as another user, who must pass
    through every directory above its data, and each pytest session that starts closes pytest's to its owner."""
    data = Path(tempfile.mkdtemp(prefix="leadpipe-postgres-test-"))
    yield Postgres(free_port(), data / "postgres" / "data", data / POSTGRES_PASSWORD_FILE, durable=False)
    shutil.rmtree(data, ignore_errors=True)


async def signs_in(url: str) -> str:
    """The user ``url`` signs in as, or asyncpg's refusal."""
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        return await conn.fetchval("SELECT current_user")
    finally:
        await conn.close()


async def refused(postgres: Postgres, password: str | None) -> bool:
    credentials = f"postgres:{password}" if password is not None else "postgres"
    try:
        await signs_in(f"postgresql://{credentials}@127.0.0.1:{postgres.port}/leadpipe")
    except asyncpg.InvalidPasswordError:
        return True
    return False


@pytest.mark.integration
async def test_the_embedded_postgres_takes_no_connection_without_the_password_made_at_its_first_start(postgres):
    with running(postgres):
        assert await signs_in(postgres.url()) == "postgres"
        assert await refused(postgres, None) and await refused(postgres, "postgres")
        conn = await asyncpg.connect(postgres.url().replace("postgresql+asyncpg://", "postgresql://"))
        try:  # few rounds: they guard a chosen password, not 256 random bits, and cost every connection
            verifier = await conn.fetchval("SELECT rolpassword FROM pg_authid WHERE rolname = 'postgres'")
        finally:
            await conn.close()
        assert verifier.startswith(f"SCRAM-SHA-256${SCRAM_ITERATIONS}:")
    assert mode(postgres.password_file) == 0o600
    assert postgres.password not in postgres.log.read_text()


def single_user(postgres: Postgres, database: str, statements: str) -> None:
    """``statements`` run by the server in single-user mode, as its own user: nothing listens."""
    subprocess.run([str(postgres.bin / "postgres"), "--single", "-D", str(postgres.data_dir), "-c", "exit_on_error=on",
                    database], input=statements, check=True, capture_output=True, text=True,
                   **postgres._user_kwargs())


@pytest.mark.integration
async def test_a_data_directory_an_earlier_version_left_trusting_everyone_keeps_its_data_behind_the_password(postgres):
    # As an earlier make run left it: initialised with trust for every local connection, a lead stored, and no
    # password file.
    postgres.data_dir.mkdir(parents=True)
    subprocess.run([str(postgres.bin / "initdb"), "-D", str(postgres.data_dir), "-U", "postgres", "--auth=trust",
                    "--encoding=UTF8", "--no-instructions"], check=True, capture_output=True,
                   **postgres._user_kwargs())
    single_user(postgres, "postgres", "CREATE DATABASE leadpipe;\n")
    single_user(postgres, "leadpipe", "CREATE TABLE leads (email text);\nINSERT INTO leads VALUES ('ada@stripe.com');\n")
    assert "trust" in (postgres.data_dir / "pg_hba.conf").read_text()

    with running(postgres):
        assert await refused(postgres, None)
        conn = await asyncpg.connect(postgres.url().replace("postgresql+asyncpg://", "postgresql://"))
        try:
            assert await conn.fetchval("SELECT email FROM leads") == "ada@stripe.com"
        finally:
            await conn.close()
    assert (postgres.data_dir / "pg_hba.conf").read_text() == HBA


@pytest.mark.integration
async def test_a_deleted_password_file_gives_the_server_a_new_password_at_its_next_start(postgres):
    with running(postgres):
        former = postgres.password
    postgres.password_file.unlink()
    with running(postgres):
        assert postgres.password != former
        assert await signs_in(postgres.url()) == "postgres"
        assert await refused(postgres, former)
