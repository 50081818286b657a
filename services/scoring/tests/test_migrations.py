"""scoring's migrations on the real Postgres: tables written by an older release, upgraded by
``leadpipe-scoring migrate`` as an operator runs it, in a database of their own."""

import json
import uuid
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from leadpipe_common.testing.migrations import fresh_database, migrate

DAY = datetime(2026, 11, 2, 9, tzinfo=UTC)


async def test_touches_stored_before_0005_keep_a_message_only_on_the_touch_that_wrote_it(stack):
    """Before 0005 a touch was stored with a message whenever its person's contact held one: one contact-us message
    then three white-paper downloads were four touches with a message, each scored 'Wrote a message'. From 0005 only
    the contact-us touch has one; a lead's capture keeps its own, and so does a touch stored the new way after one
    without a message (a second message of its own)."""
    old, new, duplicate = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    touch = {name: uuid.uuid4() for name in ("contact", "wp1", "wp2", "wp3", "new_quiet", "new_second")}
    stored = [  # (lead, touch, day, has_message as stored, has_message after 0005)
        (old, old, 0, False, False),  # the capture: a webinar, no message
        (old, touch["contact"], 1, True, True),
        (old, touch["wp1"], 2, True, False),
        (old, duplicate, 3, True, True),  # the capture of a lead merged into it: its message is its own
        (old, touch["wp2"], 4, True, False),
        (old, touch["wp3"], 5, True, False),
        (new, new, 0, True, True),
        (new, touch["new_quiet"], 1, False, False),
        (new, touch["new_second"], 2, True, True),
    ]
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("scoring", url, "0004")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO scoring.scores (lead_id, score, grade, decision, rules_version, reasons, scored_at) "
                "VALUES (:lead, 84, 'A', :decision, 'v1', '[]', :at)"),
                [{"lead": lead, "decision": decision, "at": DAY}
                 for lead, decision in ((old, "mql"), (new, "nurture"), (duplicate, "merged"))])
            await conn.execute(sa.text(
                "INSERT INTO scoring.touches (lead_id, touch_id, at, facts) VALUES (:lead, :touch, :at, :facts)"),
                [{"lead": lead, "touch": touch_id, "at": DAY + timedelta(days=day),
                  "facts": json.dumps({"offer": "whitepaper", "has_message": had})}
                 for lead, touch_id, day, had, _ in stored])
        migrate("scoring", url, "head")
        async with engine.begin() as conn:
            facts = dict((await conn.execute(sa.text("SELECT touch_id, facts FROM scoring.touches"))).tuples().all())
    assert {touch_id: facts[touch_id]["has_message"] for _, touch_id, *_ in stored} == {
        touch_id: after for _, touch_id, _, _, after in stored}
    assert all(f["offer"] == "whitepaper" for f in facts.values())


async def test_scores_given_before_0006_keep_no_rules_digest_and_new_ones_may(stack):
    """0006 adds the digest of the rules beside each score's version; the scores before it have none, which the
    comparison of rules passes over."""
    lead = uuid.uuid4()
    async with fresh_database(stack.database_url) as (url, engine):
        migrate("scoring", url, "0005")
        async with engine.begin() as conn:
            await conn.execute(sa.text(
                "INSERT INTO scoring.scores (lead_id, score, grade, decision, rules_version, reasons, scored_at) "
                "VALUES (:lead, 40, 'C', 'nurture', 'v1', '[]', :at)"), {"lead": lead, "at": DAY})
        migrate("scoring", url, "head")
        async with engine.begin() as conn:
            assert (await conn.execute(sa.text("SELECT rules_digest FROM scoring.scores"))).scalar_one() is None
