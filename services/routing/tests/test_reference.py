"""The routing files: read, versioned, and reloaded without a restart."""

import shutil
from pathlib import Path

import pytest
import yaml

from routing.handlers import Routing
from routing.reference import RoutingFiles
from routing.sla import reload_reference

SHIPPED = Path(__file__).parents[1] / "src" / "routing" / "data"


@pytest.fixture
def files(tmp_path) -> RoutingFiles:
    for name in ("reps.yaml", "accounts.csv", "territories.yaml", "sla.yaml", "reasons.yaml"):
        shutil.copy(SHIPPED / name, tmp_path / name)
    return RoutingFiles(*(tmp_path / n for n in ("reps.yaml", "accounts.csv", "territories.yaml", "sla.yaml",
                                                 "reasons.yaml")))


def test_the_same_files_have_the_same_version_and_any_change_makes_a_new_one(files):
    first = files.load()
    assert files.load().version == first.version
    stamp = files.stamp()
    files.sla.write_text(files.sla.read_text() + "\n# a comment is a change too\n")
    assert files.stamp() != stamp and files.load().version != first.version


def test_a_reload_puts_new_reps_in_force_and_bad_files_leave_the_old_ones(files):
    routing = Routing(files.load(), clock=lambda: None, files=files)  # type: ignore[arg-type, return-value]
    before = routing.reference.version
    reps = yaml.safe_load(files.reps.read_text())
    reps["reps"].append({"id": "new.rep", "name": "New Rep", "team": "apac", "timezone": "Asia/Seoul"})
    files.reps.write_text(yaml.safe_dump(reps))
    assert reload_reference(routing, trigger="test").version != before
    assert routing.data.rep("new.rep") is not None
    in_force = routing.reference
    files.reps.write_text("reps: [{id: broken}]")
    with pytest.raises(ValueError, match="reps"):
        reload_reference(routing, trigger="test")
    assert routing.reference is in_force
