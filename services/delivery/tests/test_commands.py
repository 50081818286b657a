"""``leadpipe-delivery redrive`` from the command line (the database stood in for: what it asks, what it answers)."""

from contextlib import asynccontextmanager

import pytest
from typer.testing import CliRunner

from delivery.__main__ import cli
from delivery.store import Redrive

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Store:
    redriven: list[str | None] = []
    #: The file's subscriptions each redrive was told are in force.
    in_file: list[set[str]] = []
    #: Of the dead deliveries each redrive is asked for, those whose body was purged.
    purged = 0

    def __init__(self, conn: object) -> None:
        pass

    async def api_subscriptions(self) -> list[dict]:
        return [{"id": "slack"}]

    async def redrive(self, now, subscription_id=None, lead_id=None, *, in_file) -> int:
        Store.redriven.append(subscription_id)
        Store.in_file.append(set(in_file))
        return Redrive(queued=3, purged=Store.purged)


class Engine:
    @asynccontextmanager
    async def begin(self):
        yield None

    async def dispose(self) -> None:
        pass


@pytest.fixture
def redrive(tmp_path, monkeypatch):
    subscriptions = tmp_path / "subscriptions.yaml"
    subscriptions.write_text(f"subscriptions:\n  - {{id: crm, url: https://crm.example.com/h, secrets: [{SECRET}], "
                             "events: [lead.routed]}\n")
    monkeypatch.setenv("DELIVERY_SUBSCRIPTIONS_FILE", str(subscriptions))
    monkeypatch.setattr("delivery.commands.make_engine", lambda settings: Engine())
    monkeypatch.setattr("delivery.commands.DeliveryStore", Store)
    Store.redriven, Store.in_file, Store.purged = [], [], 0
    return lambda *args: CliRunner().invoke(cli, ["redrive", *args], env={"COLUMNS": "500"})


def test_a_redrive_of_a_misspelt_subscription_is_refused_naming_those_in_force_the_files_and_the_apis(redrive):
    """It matched nothing and said "0 dead deliveries queued again for crn": as if nothing of crm's were dead."""
    refused = redrive("--subscription", "crn")
    assert refused.exit_code == 2 and "'crn' is no subscription in force; one of crm, slack" in refused.output
    assert Store.redriven == []
    for subscription in ("crm", "slack"):
        result = redrive("--subscription", subscription)
        assert result.exit_code == 0 and f"3 dead deliveries queued again for {subscription}" in result.output
    assert Store.redriven == ["crm", "slack"]


def test_a_redrive_of_all_knows_the_files_subscriptions_so_that_it_queues_none_of_a_removed_ones(redrive):
    """It queued the dead deliveries of subscriptions no longer in force again: nothing claims them, for ever."""
    result = redrive()
    assert result.exit_code == 0 and "3 dead deliveries queued again" in result.output
    assert Store.redriven == [None] and Store.in_file == [{"crm"}]


def test_a_redrive_says_how_many_it_left_dead_because_their_body_was_purged(redrive):
    """Left out without a word, they would read as never dead, or as queued and lost."""
    Store.purged = 2
    result = redrive("--lead", "6c8229b8-7d3e-4b1e-9a53-0f1f2b3c4d5e")
    assert result.exit_code == 0, result.output
    assert "3 dead deliveries queued again" in result.output
    assert "2 left dead: their body was purged" in result.output


def test_a_redrive_that_left_nothing_out_says_nothing_of_purged_bodies(redrive):
    result = redrive()
    assert result.exit_code == 0 and "purged" not in result.output
