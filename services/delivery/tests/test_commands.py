"""``leadpipe-delivery redrive`` and ``forget`` from the command line (the database stood in for: what they ask,
what it answers)."""

from contextlib import asynccontextmanager

import pytest
from cryptography.fernet import Fernet
from typer.testing import CliRunner

from delivery.__main__ import cli
from delivery.store import Forgotten, Redrive
from delivery.subscriptions import SecretBox

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Store:
    redriven: list[str | None] = []
    #: The file's subscriptions each redrive was told are in force.
    in_file: list[set[str]] = []
    #: Of the dead deliveries each redrive is asked for, those whose body was purged.
    purged = 0
    #: ...and those left out because their subscription is not in force, by subscription.
    not_in_force: dict[str, int] = {}
    #: The subscriptions given up (``forget``), and what each had left.
    forgotten: list[str] = []
    waiting: dict[str, Forgotten] = {}

    def __init__(self, conn: object) -> None:
        pass

    async def api_subscriptions(self) -> list[dict]:
        return [{"id": "slack"}]

    async def redrive(self, subscription_id=None, lead_id=None, *, in_file) -> int:
        Store.redriven.append(subscription_id)
        Store.in_file.append(set(in_file))
        return Redrive(queued=3, purged=Store.purged, not_in_force=Store.not_in_force)

    async def forget(self, subscription_id) -> Forgotten | None:
        Store.forgotten.append(subscription_id)
        if subscription_id == "slack":  # made through the API
            return None
        return Store.waiting.get(subscription_id, Forgotten(dropped=0, was_disabled=False))


class Engine:
    @asynccontextmanager
    async def begin(self):
        yield None

    async def dispose(self) -> None:
        pass


@pytest.fixture
def command(tmp_path, monkeypatch):
    subscriptions = tmp_path / "subscriptions.yaml"
    subscriptions.write_text(f"subscriptions:\n  - {{id: crm, url: https://crm.example.com/h, secrets: [{SECRET}], "
                             "events: [lead.routed]}\n")
    monkeypatch.setenv("DELIVERY_SUBSCRIPTIONS_FILE", str(subscriptions))
    monkeypatch.setattr("delivery.commands.make_engine", lambda settings: Engine())
    monkeypatch.setattr("delivery.commands.DeliveryStore", Store)
    Store.redriven, Store.in_file, Store.purged, Store.not_in_force = [], [], 0, {}
    Store.forgotten, Store.waiting = [], {}
    return lambda *args: CliRunner().invoke(cli, list(args), env={"COLUMNS": "500"})


@pytest.fixture
def redrive(command):
    return lambda *args: command("redrive", *args)


@pytest.fixture
def forget(command):
    return lambda *args: command("forget", *args)


def test_a_redrive_of_a_misspelt_subscription_is_refused_naming_those_in_force_the_files_and_the_apis(redrive):
    """It matched nothing and said "0 dead deliveries queued again for crn": as if nothing of crm's were dead."""
    refused = redrive("--subscription", "crn")
    assert refused.exit_code == 2 and "'crn' is no subscription in force; one of crm, slack" in refused.output
    assert Store.redriven == []
    for subscription in ("crm", "slack"):
        result = redrive("--subscription", subscription)
        assert result.exit_code == 0 and f"3 dead deliveries queued again for {subscription}" in result.output
    assert Store.redriven == ["crm", "slack"]


@pytest.mark.parametrize("option", ["--lead", "--subscription"])
def test_an_empty_lead_or_subscription_is_refused_not_taken_for_a_redrive_of_all(redrive, option):
    """`--lead "$LEAD"` with the variable unset queued every dead delivery again, of every lead."""
    refused = redrive(option, "")
    assert refused.exit_code == 2 and option in refused.output and "''" in refused.output
    assert Store.redriven == []


def test_a_subscriptions_file_that_cannot_be_read_is_a_message_not_a_traceback(command, tmp_path, monkeypatch):
    monkeypatch.setenv("DELIVERY_SUBSCRIPTIONS_FILE", str(tmp_path / "missing.yaml"))
    for args in (["redrive"], ["forget", "--subscription", "old-crm"]):
        refused = command(*args)
        assert refused.exit_code == 2, refused.output
        assert f"DELIVERY_SUBSCRIPTIONS_FILE: cannot read {tmp_path / 'missing.yaml'}: No such file" in refused.output
    assert Store.redriven == Store.forgotten == []


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


def test_a_redrive_says_by_subscription_how_many_it_left_dead_because_their_subscription_is_not_in_force(redrive):
    """Run where DELIVERY_SUBSCRIPTIONS_FILE is not the service's (an admin box), a redrive of all left out every
    one of the file's subscriptions without a word: as if they had nothing dead."""
    Store.not_in_force = {"old-crm": 1_204, "billing": 3}
    result = redrive()
    assert result.exit_code == 0, result.output
    assert "3 dead deliveries queued again" in result.output
    assert "1,207 left dead: their subscription is not in force (deleted, or in neither " in result.output
    assert "subscriptions.yaml nor the API's): billing 3, old-crm 1,204" in result.output


def test_a_redrive_that_left_nothing_out_says_nothing_of_purged_bodies_or_subscriptions(redrive):
    result = redrive()
    assert result.exit_code == 0 and result.output == "3 dead deliveries queued again\n"


def test_forgetting_a_subscription_removed_from_the_file_says_what_it_gave_up(forget):
    Store.waiting = {"old-crm": Forgotten(dropped=1_204, was_disabled=True)}
    result = forget("--subscription", "old-crm")
    assert result.exit_code == 0, result.output
    assert result.output == ("1,204 waiting deliveries of old-crm are dead (subscription removed from the "
                             "subscriptions file); its switch-off by a 410 is cleared\n")
    assert Store.forgotten == ["old-crm"]


def test_forgetting_a_subscription_in_the_file_is_refused_before_the_database_is_touched(forget):
    """Its deliveries are being sent: given up, they would never reach their receiver."""
    refused = forget("--subscription", "crm")
    assert refused.exit_code == 2 and "'crm' is in force: it is in " in refused.output
    assert "Traceback" not in refused.output and Store.forgotten == []


def test_forgetting_a_subscription_made_through_the_api_is_refused_pointing_at_its_deletion(forget):
    refused = forget("--subscription", "slack")
    assert refused.exit_code == 2
    assert "'slack' is in force: it was made through the API; delete it there (DELETE /v1/subscriptions/slack)" in (
        refused.output)


def test_forgetting_an_id_nothing_waits_for_says_so_rather_than_reading_as_done(forget):
    """A misspelt id matches nothing: "0 ... are dead" would pass for a subscription with nothing left."""
    result = forget("--subscription", "old-crn")
    assert result.exit_code == 0 and "nothing waited for old-crn and it was not switched off" in result.output


def test_the_key_a_former_session_secret_sealed_with_is_printed_from_the_input_and_opens_what_it_sealed():
    """With DELIVERY_SECRETS_KEY unset the key is derived from LEADPIPE_SESSION_SECRET and shown nowhere: once the
    session secret changed, the key to give back could not be had."""
    former = "a former session secret, 32 characters or more"
    sealed = SecretBox.from_secrets(None, former).seal(SECRET)
    printed = CliRunner().invoke(cli, ["derived-key", "--stdin"], input=former + "\n")
    assert printed.exit_code == 0, printed.output
    key = printed.output.strip()
    assert former not in printed.output
    assert SecretBox.from_secrets(f"{Fernet.generate_key().decode()},{key}", "the session secret now, as long").open(
        sealed) == SECRET


def test_the_key_the_session_secret_in_force_gives_is_printed_to_pin_it_before_a_change():
    session_secret = "the session secret in force, 32 characters or more"
    printed = CliRunner().invoke(cli, ["derived-key"], env={"LEADPIPE_SESSION_SECRET": session_secret})
    assert printed.exit_code == 0, printed.output
    sealed = SecretBox.from_secrets(None, session_secret).seal(SECRET)
    assert SecretBox.from_secrets(printed.output.strip(), None).open(sealed) == SECRET


def test_no_session_secret_to_derive_a_key_from_is_a_message_not_a_key():
    refused = CliRunner().invoke(cli, ["derived-key", "--stdin"], input="\n")
    assert refused.exit_code == 2 and "no session secret" in refused.output


def test_a_session_secret_too_short_for_any_service_gives_its_key_with_a_note():
    """A line cut short gave a key that opened nothing, without a word; a former secret from before they were
    checked (the shipped replace-me) is still one whose key is needed."""
    former = "replace-me"
    printed = CliRunner().invoke(cli, ["derived-key", "--stdin"], input=former + "\n")
    assert printed.exit_code == 0 and "this session secret has 10 characters" in printed.output
    assert former not in printed.output  # the secret is never echoed
    sealed = SecretBox.from_secrets(None, former).seal(SECRET)
    key = printed.output.strip().splitlines()[-1]
    assert SecretBox.from_secrets(key, None).open(sealed) == SECRET


@pytest.fixture
def ended(monkeypatch) -> list[str]:
    """How each of the command's transactions ended: "committed" or "rolled back"."""
    ended: list[str] = []

    class Watched(Engine):
        @asynccontextmanager
        async def begin(self):
            try:
                yield None
            except BaseException as exc:
                ended.append("rolled back")
                raise exc
            ended.append("committed")

    monkeypatch.setattr("delivery.commands.make_engine", lambda settings: Watched())
    return ended


def test_a_dry_run_of_a_redrive_says_what_it_would_queue_and_commits_nothing(command, ended):
    """It sent dead deliveries to external receivers with no way to look first, while leadpipe-redrive has one."""
    result = command("redrive", "--subscription", "crm", "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would queue 3 dead deliveries again for crm (a dry run: nothing changed)" in result.output
    assert ended == ["rolled back"]
    assert command("redrive", "--subscription", "crm").exit_code == 0 and ended == ["rolled back", "committed"]


def test_a_dry_run_of_a_forget_says_what_it_would_give_up_and_commits_nothing(command, ended):
    """Forgetting gives up for good what waits (a redrive leaves it until the id is in the file again): it had
    no way to look first, while redrive and erase have one."""
    Store.waiting = {"old-crm": Forgotten(dropped=1_204, was_disabled=True)}
    result = command("forget", "--subscription", "old-crm", "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.output == ("would give up 1,204 waiting deliveries of old-crm (subscription removed from the "
                             "subscriptions file); would clear its switch-off by a 410 (a dry run: nothing changed)\n")
    assert ended == ["rolled back"]
