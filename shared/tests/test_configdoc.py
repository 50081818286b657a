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


def rewrite(*args: str):
    from typer.testing import CliRunner

    from leadpipe_common.local.configdoc import cli

    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "500"})


def test_a_readme_the_command_cannot_use_is_refused_in_one_line_and_left_as_it_was(tmp_path):
    """A missing file, a directory or a file without the markers ended in a traceback."""
    unmarked = tmp_path / "NOTES.md"
    unmarked.write_text("# no table here\n")
    binary = tmp_path / "README.bin"
    binary.write_bytes(b"\xff\xfe<!-- config:begin -->")
    for path, said in ((tmp_path / "missing.md", "cannot be read: No such file or directory"),
                       (tmp_path, "cannot be read: Is a directory"),
                       (unmarked, "has no <!-- config:begin --> ... <!-- config:end --> block"),
                       (binary, "not UTF-8 (byte 0)")):
        result = rewrite(str(path))
        assert result.exit_code == 2 and result.output == f"{path}: {said}\n", result.output
    assert unmarked.read_text() == "# no table here\n" and not (tmp_path / "missing.md").exists()


def test_the_table_is_rewritten_in_place(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("# leadpipe\n<!-- config:begin -->\nstale\n<!-- config:end -->\nafter\n")
    assert rewrite(str(readme)).exit_code == 0
    assert readme.read_text() == render("# leadpipe\n<!-- config:begin -->\n<!-- config:end -->\nafter\n")
    assert "`DATABASE_URL`" in readme.read_text()
