"""API keys and dashboard sessions, the parts with no IO."""

import hashlib

import pytest

from leadpipe_common import auth


def test_a_new_key_is_its_id_and_a_secret_of_which_only_the_digest_is_kept():
    key_id, key, digest = auth.new_key()
    assert key.startswith(f"lpk_{key_id}_") and len(key) > 50
    assert auth.split(key) == (key_id, key.split("_", 2)[2])
    assert digest == auth.digest(key.split("_", 2)[2]) and key.encode() not in digest


def test_text_that_is_not_a_key_is_not_split():
    assert auth.split("Bearer nonsense") is None and auth.split("lpk__x") is None


def test_admin_grants_every_scope_and_other_scopes_only_themselves():
    crm = auth.Principal("k", "crm", frozenset({"feedback:write"}))
    assert crm.may("feedback:write") and not crm.may("reports:read")
    assert auth.BOOTSTRAP.may("reports:read") and auth.BOOTSTRAP.may("capture:write")


def test_a_session_names_its_key_until_it_expires_and_a_tampered_one_names_nothing():
    now = [1_000_000.0]
    sessions = auth.Sessions("s3cret", lifetime_s=60, clock=lambda: now[0])
    cookie = sessions.issue("abc123")
    assert sessions.read(cookie).key_id == "abc123" and sessions.read(cookie).expires == 1_000_060
    assert sessions.read(cookie.replace("abc123", "admin1")) is None
    assert auth.Sessions("other secret", clock=lambda: now[0]).read(cookie) is None
    now[0] += 61
    assert sessions.read(cookie) is None


@pytest.mark.parametrize("cookie", ["abc123.1.nonce.\u00e9", "abc123.1.nonce.\u00c3\u00a9"], ids=["latin-1", "utf-8"])
def test_a_cookie_whose_signature_holds_a_non_ascii_character_names_no_session(cookie):
    """Starlette reads a cookie's bytes as latin-1: a browser's UTF-8 arrives as two characters."""
    assert auth.Sessions("s3cret").read(cookie) is None


def test_each_session_is_named_by_the_digest_of_its_own_nonce_which_only_the_cookie_holds():
    sessions = auth.Sessions("s3cret")
    first, second = sessions.issue("abc123"), sessions.issue("abc123")
    nonce = first.split(".")[2]
    assert sessions.read(first).nonce_sha256 == hashlib.sha256(nonce.encode()).digest()
    assert sessions.read(first).nonce_sha256 != sessions.read(second).nonce_sha256
    assert nonce.encode() not in sessions.read(first).nonce_sha256


async def test_the_bootstrap_key_is_admin_without_a_database():
    keys = auth.Keys(engine=None, bootstrap="x" * 30)  # type: ignore[arg-type]
    assert await keys.authenticate("x" * 30) == auth.BOOTSTRAP
    assert await keys.authenticate("not a key") is None
