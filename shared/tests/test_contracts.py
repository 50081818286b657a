"""Each event type is its own contract: published per version, never changed under an old number."""

import json
from pathlib import Path

from pydantic import Field

from leadpipe_common.local import contracts
from leadpipe_common.events import LATEST, UPCASTERS, Event, LeadCaptured

ROOT = Path(__file__).parents[2]


def test_every_event_contract_is_published_and_unchanged():
    assert contracts.check(ROOT) == []


def test_a_shape_changed_under_a_published_version_is_caught(tmp_path, monkeypatch):
    contracts.write_new(tmp_path)

    class Changed(LeadCaptured):  # the same type and version, one more required field
        gclid: str = Field()

    monkeypatch.setitem(LATEST, "lead.captured", Changed)
    [problem] = contracts.check(tmp_path)
    version = LeadCaptured.version
    assert f"lead.captured v{version} changed shape" in problem and f"version {version + 1}" in problem


def test_a_published_version_is_never_overwritten(tmp_path):
    contracts.write_new(tmp_path)
    path = contracts.path_of(tmp_path, "lead.captured", 1)
    path.write_text("{}\n")
    assert contracts.write_new(tmp_path) == [] and path.read_text() == "{}\n"


def test_words_are_not_the_contract():
    schema = json.dumps(contracts.contract(LeadCaptured))
    assert '"description"' not in schema and '"title"' not in schema


def test_no_event_type_inherits_another_so_a_new_version_of_one_changes_no_other():
    for model in LATEST.values():
        assert [base for base in model.__mro__[1:] if issubclass(base, Event) and base is not Event] == [], model


def test_every_older_published_version_has_an_upcaster():
    for event_type, model in LATEST.items():
        for version in range(1, model.version):
            assert contracts.path_of(ROOT, event_type, version).exists()
            assert (event_type, version) in UPCASTERS, f"{event_type} v{version} cannot be read any more"


def publish(*args: str):
    from typer.testing import CliRunner

    return CliRunner().invoke(contracts.cli, list(args), env={"COLUMNS": "500"})


def test_the_command_takes_help_for_help_not_for_a_directory_to_publish_into(tmp_path, monkeypatch):
    """`contracts --help` made a directory named --help and published every schema into it."""
    monkeypatch.chdir(tmp_path)
    result = publish("--help")
    assert result.exit_code == 0 and "docs/schemas" in result.output
    assert list(tmp_path.iterdir()) == []


def test_a_directory_that_is_not_the_repositorys_root_is_refused_and_left_empty(tmp_path):
    for root in (tmp_path, tmp_path / "missing"):
        result = publish(str(root))
        assert result.exit_code == 2
        assert result.output == f"{root}: no docs/schemas directory here; give the repository's root\n"
    assert list(tmp_path.iterdir()) == []

