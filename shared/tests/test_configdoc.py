"""The README's configuration table is generated from the settings classes and cannot drift."""

from pathlib import Path

import pytest

from leadpipe_common.local.configdoc import render, rows

README = Path(__file__).parents[2] / "README.md"


def test_the_readme_lists_every_setting_as_the_code_declares_it():
    text = README.read_text(encoding="utf-8")
    assert text == render(text), "README.md's configuration table is stale: run `make config-doc` and commit it"


def test_every_setting_a_user_can_change_is_listed_once():
    names = [env for env, _, _ in rows()]
    assert len(names) == len(set(names))
    for env in ("`DB_POOL_SIZE`", "`<SERVICE>_BATCH_TIMEOUT_MS`", "`<SERVICE>_HEARTBEAT_INTERVAL_MS`",
                "`<SERVICE>_RETRY_BACKOFF_MAX_S`", "`CAPTURE_WRITE_BATCH_MAX`", "`<SERVICE>_OUTBOX_IDLE_S`",
                "`TOPIC_RETENTION`"):
        assert env in names


def test_a_readme_without_the_markers_is_refused():
    with pytest.raises(ValueError, match="config:begin"):
        render("# no table here\n")
