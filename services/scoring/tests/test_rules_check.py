"""The warning scoring logs at start when its rules file changed under an unchanged version."""

import contextlib
from types import SimpleNamespace

import structlog

from scoring.domain import parse_rules, rules_digest
from scoring.handlers import Scoring
from scoring.service import RulesCheck

RULES = parse_rules({"version": "test-1", "grades": {"A": 80, "B": 60, "C": 35},
                     "thresholds": {"mql": 50, "nurture": 10}})


def runtime(scored):
    class Store:
        async def newest_rules(self):
            return scored

    @contextlib.asynccontextmanager
    async def unit_of_work():
        yield SimpleNamespace(store=Store())

    return SimpleNamespace(context=Scoring(RULES, clock=lambda: None), unit_of_work=unit_of_work)


async def test_scoring_warns_at_start_when_its_rules_changed_but_their_version_did_not():
    with structlog.testing.capture_logs() as logs:
        await RulesCheck(runtime(("test-1", "0123456789abcdef"))).check()
    assert [e["event"] for e in logs] == ["rules changed under an unchanged version"]
    assert "bump version" in logs[0]["why"]


async def test_scoring_starts_quietly_under_a_new_version_or_the_same_rules():
    with structlog.testing.capture_logs() as logs:
        await RulesCheck(runtime(("test-0", "0123456789abcdef"))).check()
        await RulesCheck(runtime(("test-1", rules_digest(RULES)))).check()
        await RulesCheck(runtime(None)).check()
    assert logs == []
