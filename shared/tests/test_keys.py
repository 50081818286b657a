"""``leadpipe-keys`` refuses what it is given before it touches the database, and says in one line what it could not do."""

import pytest
from alembic.util import CommandError
from typer.testing import CliRunner

from leadpipe_common import keys, migrations
from leadpipe_common.migrations import TableBusy
from leadpipe_common.throttle import parse_rate


@pytest.mark.parametrize("rate", ["0/second", "0 per minute"])
def test_a_rate_limit_that_lets_nothing_through_is_refused_not_stored_for_capture_to_fail_on(monkeypatch, rate):
    """capture counts a key's posts by it and could not: each of the key's posts was a 500."""
    monkeypatch.setattr(keys, "_settings", lambda **_: pytest.fail("the key was about to be stored"))
    result = CliRunner().invoke(keys.cli, ["create", "--name", "importer", "--scope", "capture:write",
                                           "--rate-limit", rate], env={"COLUMNS": "500"})
    assert result.exit_code == 2
    assert "lets nothing through" in result.output and "Traceback" not in result.output


@pytest.mark.parametrize("rate", ["0/second", "fast", "500 a second"])
def test_a_rate_limit_is_refused_by_the_rule_capture_counts_by_and_in_its_words(monkeypatch, rate):
    """leadpipe-keys checked a rate with a copy of the rule capture counts by (throttle.parse_rate) and words of
    its own: the copy could drift from the rule, and a key be stored with a rate capture cannot count by."""
    with pytest.raises(ValueError) as capture:
        parse_rate(rate, "--rate-limit")
    monkeypatch.setattr(keys, "_settings", lambda **_: pytest.fail("the key was about to be stored"))
    result = CliRunner().invoke(keys.cli, ["create", "--name", "importer", "--scope", "capture:write",
                                           "--rate-limit", rate], env={"COLUMNS": "500"})
    assert result.exit_code == 2 and str(capture.value) in " ".join(result.output.split())



@pytest.mark.parametrize(("refusal", "said", "code"), [
    (CommandError("Can't locate revision identified by '0009'"), "auth: cannot migrate to 'head': Can't locate", 2),
    (TableBusy("a table of auth is held by another transaction"), "auth: cannot migrate now: a table of auth", 1),
])
def test_an_auth_schema_it_cannot_migrate_is_one_line_not_a_traceback(monkeypatch, refusal, said, code):
    """Only the database's own errors were caught around the auth schema's migration: a schema a newer release
    had migrated (alembic's CommandError) or a table held past the lock timeout ended leadpipe-keys in a
    traceback, which its promise rules out."""
    def refuse(*args, **kwargs):
        raise refusal

    monkeypatch.setattr(migrations, "upgrade", refuse)
    result = CliRunner().invoke(keys.cli, ["create", "--name", "crm", "--scope", "feedback:write"], env={
        "COLUMNS": "500", "DATABASE_URL": "postgresql+asyncpg://leadpipe:x@127.0.0.1:1/leadpipe"})
    assert result.exit_code == code and isinstance(result.exception, SystemExit), result.exception
    assert said in " ".join(result.output.split())


@pytest.mark.parametrize("given", ["zzz", "", "lpk_1234", "lpk_0123456789ab_tooshort"])
def test_a_revocation_of_what_is_no_key_id_is_refused_before_the_database_and_not_echoed(monkeypatch, given):
    """Any text went to the database (migrating the auth schema first) and came back as "no active key <text>",
    a mistyped whole key's secret with it."""
    monkeypatch.setattr(keys, "_settings", lambda **_: pytest.fail("the database was about to be asked"))
    result = CliRunner().invoke(keys.cli, ["revoke", given], env={"COLUMNS": "500"})
    assert result.exit_code == 2 and "not a key id: 12 hex digits" in result.output, result.output
    assert (given or "\0") not in result.output.replace("lpk_<id>_...", "")


def test_a_whole_key_pasted_to_revoke_names_its_id_and_its_secret_is_never_echoed(monkeypatch):
    from leadpipe_common.auth import new_key

    key_id, key, _ = new_key()
    assert keys._key_id(f" {key} ") == keys._key_id(key_id) == key_id
    monkeypatch.setattr(keys, "_settings", lambda **_: object())
    monkeypatch.setattr(keys, "make_engine", lambda settings: (_ for _ in ()).throw(RuntimeError("no database")))
    result = CliRunner().invoke(keys.cli, ["revoke", key], env={"COLUMNS": "500"})
    assert isinstance(result.exception, RuntimeError)  # past the check, on its way to the database
    assert key.split("_", 2)[2] not in result.output


def test_a_key_for_no_one_is_refused_before_the_database(monkeypatch):
    monkeypatch.setattr(keys, "_settings", lambda **_: pytest.fail("the key was about to be stored"))
    result = CliRunner().invoke(keys.cli, ["create", "--name", "  ", "--scope", "capture:write"],
                                env={"COLUMNS": "500"})
    assert result.exit_code == 2 and "give who or what uses the key" in result.output
