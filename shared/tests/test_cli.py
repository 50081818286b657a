"""Service command lines refuse bad configuration with a message, never a traceback."""

import os
import subprocess
import sys


def run_service(service: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", service, "serve"], env={**os.environ, **env},
                          capture_output=True, text=True, timeout=60)


def test_a_bad_setting_is_named_by_its_environment_variable():
    result = run_service("routing", ROUTING_PORT="eighty")
    assert result.returncode == 2
    assert "invalid setting ROUTING_PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_broken_rules_file_stops_the_service_naming_file_and_entry(tmp_path):
    rules = tmp_path / "rules.yaml"
    rules.write_text("version: x\ngrades: {A: 80, B: 60, C: 30}\nthresholds: {mql: 50, nurture: 10}\n"
                     "fit:\n  - {rule: Size, field: headcount, gte: 10, points: 5}\n")
    result = run_service("scoring", SCORING_RULES_FILE=str(rules))
    assert result.returncode == 2
    assert str(rules) in result.stderr and "fit.0.field" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_serving_process_does_not_load_the_migration_tools():
    # alembic and mako are ~10 MB of resident memory a process that only serves would carry for nothing.
    probe = ("import sys, routing.__main__, routing.app, leadpipe_common.service; "
             "print(sorted(m for m in ('alembic', 'mako') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
