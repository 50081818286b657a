"""DATABASE_URL as Postgres providers hand it out reaches asyncpg; one asyncpg cannot take is refused at start
(nothing here reaches a database: port 1 refuses every connection)."""

import os
import socket
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa
import typer
from pydantic import ValidationError

from leadpipe_common import db
from leadpipe_common.local import stack
from leadpipe_common.settings import ServiceSettings, StackSettings
SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")

PROVIDED = "postgresql://doadmin:s3cret@127.0.0.1:1/defaultdb?sslmode=require"


def connect_arguments(url: str) -> dict:
    engine = db.make_engine(ServiceSettings(DATABASE_URL=url))
    return engine.dialect.create_connect_args(engine.url)[1]


@pytest.mark.parametrize("mode", SSL_MODES)
def test_libpqs_sslmode_reaches_asyncpg_as_its_ssl_argument(mode):
    arguments = connect_arguments(f"postgresql://u:pw@db.example.com:25060/defaultdb?sslmode={mode}")
    assert arguments["ssl"] == mode and "sslmode" not in arguments


async def test_a_providers_url_fails_to_connect_for_want_of_a_server_not_for_its_sslmode():
    engine = db.make_engine(ServiceSettings(DATABASE_URL=PROVIDED))
    try:
        with pytest.raises(OSError):
            await db.ping(engine)
    finally:
        await engine.dispose()


def test_migrate_with_a_providers_url_says_the_database_is_unreachable_not_a_traceback():
    result = subprocess.run([sys.executable, "-m", "routing", "migrate"], env={**os.environ, "DATABASE_URL": PROVIDED},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "cannot use the database at DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


@pytest.mark.parametrize(("url", "says"), [
    ("postgresql://u:s3cret@db.example.com:notaport/db", "a port is a number"),
    ("postgresql://u:s3cret@db.example.com:70000/db", "port 70000 is not a port number"),
    ("postgresql://u:s3cret@db.example.com/db?sslmode=on", "sslmode='on' is not one of disable, allow"),
    ("postgresql://u:s3cret@db.example.com/db?application_name=leadpipe", "unknown parameter 'application_name'"),
    ("postgresql://u:s3cret@db.example.com/db?sslrootcert=/ca.pem", "set PGSSLROOTCERT"),
    ("postgresql://u:s3cret@db.example.com/db?sslmode=require&ssl=disable", "sslmode and ssl say different things"),
    ("postgresql://u:s3c@ret@db.example.com/db", "written %40"),
    ("postgresql://u:s3cret@db.example.com/db?command_timeout=soon", "command_timeout='soon' is not a number"),
    ("postgresql://u:s3cret@db.example.com/db?target_session_attrs=master", "target_session_attrs='master' is not"),
])
def test_a_url_asyncpg_cannot_take_is_refused_naming_database_url_never_its_password(url, says):
    with pytest.raises(ValidationError) as refused:
        ServiceSettings(DATABASE_URL=url)
    message = refused.value.errors()[0]["msg"]
    assert "DATABASE_URL" in message and says in message and "s3c" not in message


def test_a_service_given_a_bad_port_in_database_url_stops_with_one_line():
    result = subprocess.run([sys.executable, "-m", "routing", "serve"], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "DATABASE_URL": "postgresql://u:s3cret@db.example.com:notaport/db"})
    assert result.returncode == 2 and "invalid setting DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr and "s3cret" not in result.stderr


def test_make_run_migrates_with_the_url_the_services_take(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgres://u:pw@db.example.com/db?sslmode=verify-full")
    assert stack._database_url() == "postgresql+asyncpg://u:pw@db.example.com/db?ssl=verify-full"


@pytest.mark.parametrize("mode", ["disable", "prefer"])
async def test_a_url_with_sslmode_reaches_the_stacks_postgres(stack, mode):
    url = stack.database_url.replace("postgresql+asyncpg://", "postgresql://") + f"?sslmode={mode}"
    engine = db.make_engine(ServiceSettings(DATABASE_URL=url))
    try:
        await db.ping(engine)
    finally:
        await engine.dispose()


@pytest.mark.parametrize("query", ["prepared_statement_cache_size=0", "command_timeout=30",
                                   "target_session_attrs=read-write", "host=db1:5432&host=db2:5432"],
                         ids=["pgbouncer", "statement-timeout", "primary-only", "two-servers"])
def test_what_the_driver_takes_from_the_url_is_kept_in_it(query):
    """A PgBouncer's prepared_statement_cache_size=0 or a failover pair of hosts stopped the start once the URL's
    parameters were checked."""
    settings = ServiceSettings(DATABASE_URL=f"postgresql://u:s3cret@/db?{query}")
    assert settings.database_url.endswith(query)


@pytest.mark.parametrize(("query", "said"), [
    ("host=127.0.0.1:99999", "port 99999 in its host parameters is not a port number"),
    ("host=127.0.0.1:0", "port 0 in its host parameters is not a port number"),
    ("host=127.0.0.1:1&host=127.0.0.1:x", "non-integer port arguments"),
    ("host=db1:5432&host=db2", "All ports are required"),
    # The other parameters are judged as before, not by the dialect reading them first (a TypeError for two).
    ("host=db1:5432&prepared_statement_cache_size=0&prepared_statement_cache_size=0", "is given 2 times"),
])
def test_a_server_in_the_host_parameters_that_no_connection_could_reach_is_refused_at_start(query, said):
    """A port out of range or no number in ?host= was kept: every connection then failed with a traceback."""
    with pytest.raises(ValidationError, match=said) as refused:
        ServiceSettings(DATABASE_URL=f"postgresql://u:s3cret@/db?{query}")
    assert "s3cret" not in refused.value.errors()[0]["msg"]  # what the commands print of it (cli.settings_or_exit)


@pytest.fixture
def silent_server():
    """A port that accepts connections (the kernel completes them) and never answers: a wedged Postgres."""
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(8)
        yield f"postgresql://leadpipe:s3cret@127.0.0.1:{listening.getsockname()[1]}/leadpipe"


async def test_a_postgres_that_never_answers_fails_the_connection_at_the_connect_timeout(silent_server):
    """asyncpg waits 60 s by default: a service's request, or a command, hung that long."""
    engine = db.make_engine(ServiceSettings(DATABASE_URL=silent_server, DATABASE_CONNECT_TIMEOUT_S=0.3))
    began = time.monotonic()
    try:
        with pytest.raises(db.ConnectTimeout) as failed:
            await db.ping(engine)
    finally:
        await engine.dispose()
    assert time.monotonic() - began < 5 and db.is_unavailable(failed.value)
    assert str(failed.value) == "Postgres did not answer a new connection within 0.3 s"


def test_the_connect_timeout_is_ten_seconds_unless_database_connect_timeout_s_says_otherwise(monkeypatch):
    """A database that wakes slowly (Aurora Serverless resuming, a cloud SQL proxy's cold start) needs longer; make
    run, which migrates in its own process, takes the same variable."""
    assert ServiceSettings().database_connect_timeout_s == StackSettings().database_connect_timeout_s == 10
    monkeypatch.setenv("DATABASE_CONNECT_TIMEOUT_S", "45")
    assert ServiceSettings().database_connect_timeout_s == StackSettings().database_connect_timeout_s == 45


def test_a_migration_waits_ten_seconds_for_a_held_table_unless_database_migration_lock_timeout_s_says_otherwise(
        monkeypatch):
    """Fixed at 10 s, a test of the give-up waited them out; make run migrates in its own process, and takes the
    same variable."""
    assert ServiceSettings().database_migration_lock_timeout_s == StackSettings().database_migration_lock_timeout_s \
        == 10
    monkeypatch.setenv("DATABASE_MIGRATION_LOCK_TIMEOUT_S", "2.5")
    assert ServiceSettings().database_migration_lock_timeout_s == StackSettings().database_migration_lock_timeout_s \
        == 2.5


@pytest.mark.parametrize(("variable", "value"), [
    *((variable, value) for variable in ("DATABASE_CONNECT_TIMEOUT_S", "DATABASE_MIGRATION_LOCK_TIMEOUT_S")
      for value in ("0", "-1", "soon")),
    ("DATABASE_MIGRATION_LOCK_TIMEOUT_S", "86401"),  # past a day
])
@pytest.mark.parametrize("settings", [ServiceSettings, StackSettings])
def test_a_database_timeout_out_of_its_range_is_refused_naming_the_variable(settings, variable, value, monkeypatch):
    monkeypatch.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        settings()
    assert [e["loc"] for e in refused.value.errors()] == [(variable,)]


def test_a_command_on_a_postgres_that_never_answers_says_what_it_waited_for(silent_server):
    """migrate (keys, rescore, redrive alike) sat silent for asyncpg's 60 s, then said "cannot use the database
    at DATABASE_URL: " and nothing more (a TimeoutError's text is empty)."""
    from typer.testing import CliRunner

    from routing.__main__ import cli

    began = time.monotonic()
    result = CliRunner().invoke(cli, ["migrate"], env={"DATABASE_URL": silent_server, "COLUMNS": "500",
                                                       "DATABASE_CONNECT_TIMEOUT_S": "0.3"})
    assert result.exit_code == 1 and time.monotonic() - began < 10
    assert result.output.strip() == "cannot use the database at DATABASE_URL: it did not answer within 0.3 s"


def test_a_statement_that_times_out_is_not_said_to_be_a_database_that_did_not_answer():
    """asyncpg raises the same bare TimeoutError for a statement past DATABASE_URL's command_timeout as for a
    connect: every one was reported as "did not answer within 10 s", sending whoever read it to the network."""
    from typer.testing import CliRunner

    from leadpipe_common.cli import database_errors

    def fails_with(exc):
        app = typer.Typer()

        @app.command()
        def command() -> None:
            with database_errors():
                raise exc

        return CliRunner().invoke(app, [], env={"COLUMNS": "500"}).output.strip()

    assert fails_with(TimeoutError()) == ("cannot use the database at DATABASE_URL: it timed out after connecting "
                                          "(a statement outlasting DATABASE_URL's command_timeout, say)")
    assert fails_with(db.ConnectTimeout(25)) == ("cannot use the database at DATABASE_URL: it did not answer "
                                                 "within 25 s")


def test_make_run_on_a_postgres_that_never_answers_says_what_it_waited_for(silent_server, tmp_path):
    url = silent_server.replace("postgresql://", "postgresql+asyncpg://")
    with pytest.raises(RuntimeError) as failed:
        stack.Stack(data_dir=tmp_path, bootstrap="127.0.0.1:1", database_url=url,
                    connect_timeout_s=0.3).migrate(["routing"])
    assert str(failed.value) == (f"migrating routing failed: Postgres at {stack._shown_url(url)} did not answer "
                                 "within 0.3 s")
    assert "s3cret" not in str(failed.value)


def test_make_run_migrates_with_the_lock_timeout_it_was_given(monkeypatch, tmp_path):
    given = []
    monkeypatch.setattr(stack.migrations, "upgrade_service", lambda *a, **k: given.append(k["lock_timeout_s"]))
    url = "postgresql+asyncpg://leadpipe:s3cret@127.0.0.1:1/leadpipe"
    stack.Stack(data_dir=tmp_path, database_url=url, migration_lock_timeout_s=2.5).migrate(["routing", "scoring"])
    assert given == [2.5, 2.5]


def test_make_run_on_a_statement_that_times_out_does_not_say_postgres_did_not_answer(monkeypatch, tmp_path):
    def times_out(*args, **kwargs):
        raise TimeoutError

    monkeypatch.setattr(stack.migrations, "upgrade_service", times_out)
    url = "postgresql+asyncpg://leadpipe:s3cret@127.0.0.1:1/leadpipe"
    with pytest.raises(RuntimeError) as failed:
        stack.Stack(data_dir=tmp_path, database_url=url).migrate(["routing"])
    assert str(failed.value) == ("migrating routing failed: it timed out after connecting to Postgres at "
                                 f"{stack._shown_url(url)}")


async def test_a_statement_past_command_timeout_is_no_connect_timeout(stack):
    engine = db.make_engine(ServiceSettings(DATABASE_URL=f"{stack.database_url}?command_timeout=0.2"))
    try:
        with pytest.raises(TimeoutError) as failed:
            async with engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_sleep(2)"))
    finally:
        await engine.dispose()
    assert not isinstance(failed.value, db.ConnectTimeout)
