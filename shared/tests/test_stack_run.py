"""What `make run` is given and what it prints: ports that are ports, no password or secret of the user's on screen
(nothing starts here)."""

import importlib

import pytest
from pydantic import ValidationError

from leadpipe_common.cli import _env_name
from leadpipe_common.local.stack import SERVICES, _admin_key_lines, _shown_url


@pytest.mark.parametrize("service", SERVICES)
@pytest.mark.parametrize("port", ["70000", "-1"])
def test_a_service_port_that_is_no_port_is_refused_naming_the_variable(monkeypatch, service, port):
    settings = getattr(importlib.import_module(f"{service}.settings"), f"{service.capitalize()}Settings")
    monkeypatch.setenv(f"{service.upper()}_PORT", port)
    with pytest.raises(ValidationError) as refused:
        settings()
    error = refused.value.errors()[0]
    assert _env_name(settings, error["loc"]) == f"{service.upper()}_PORT" and "1-65535" in error["msg"]


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
