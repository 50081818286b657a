"""Rates and the paced lingers of a relay and of capture's writer, with no IO: time is given, never read."""

import pytest

from leadpipe_common.outbox import BackgroundLoop
from leadpipe_common.pacing import Linger, Rate


def test_a_steady_rate_is_learnt_within_a_few_time_constants_and_decays_when_nothing_comes():
    rate = Rate(tau_s=1.0)
    for i in range(1, 101):  # 300 items a second, in rounds 50 ms apart
        rate.observe(15, i * 0.05)
    assert rate.per_s == pytest.approx(300, rel=0.01)
    for i in range(1, 6):
        rate.observe(0, 5.0 + i)
    assert rate.per_s < 300 * 0.01


def test_a_relay_lingers_as_long_as_its_round_target_takes_to_arrive_but_never_longer_than_its_linger():
    loop = BackgroundLoop(batch_max=500, idle_s=1.0, linger_s=0.1, round_target=20)
    assert loop.linger_s() == 0  # nothing came before: none would come in it either
    for i in range(1, 101):  # 600 messages a second
        loop.note_round(30, i * 0.05)
    assert loop.linger_s() == pytest.approx(20 / 600, rel=0.01)
    for i in range(1, 101):  # 100 messages a second: the target would take 200 ms
        loop.note_round(5, 5 + i * 0.05)
    assert loop.linger_s() == 0.1
    for i in range(1, 11):  # a trickle, one message every 2 s: a linger would only delay it
        loop.note_round(1, 10 + i * 2)
    assert loop.linger_s() == 0


def test_a_relay_without_a_round_target_always_lingers_its_linger():
    loop = BackgroundLoop(batch_max=500, idle_s=1.0, linger_s=0.05)
    for i in range(1, 101):
        loop.note_round(30, i * 0.05)
    assert loop.linger_s() == 0.05


def test_an_unpaced_linger_always_waits_its_longest_and_a_paced_one_follows_the_rate():
    assert Linger(0.05).seconds() == 0.05
    paced = Linger(0.02, target=4)
    assert paced.seconds() == 0  # nothing came before
    for i in range(1, 101):  # 100 submissions a second, one a round
        paced.note(1, i * 0.01)
    assert paced.seconds() == 0.02  # 4 take 40 ms at that rate: the longest wait
    for i in range(1, 501):  # then 1,000 a second, for five time constants
        paced.note(10, 1 + i * 0.01)
    assert paced.seconds() == pytest.approx(4 / 1000, rel=0.01)


def test_a_linger_asked_after_a_quiet_spell_does_not_wait_for_company_that_stopped_coming():
    linger = Linger(0.02, target=4)
    for i in range(1, 101):  # 100 submissions a second until t = 1 s, then nothing
        linger.note(1, i * 0.01)
    assert linger.seconds(now=1.0) == 0.02
    assert linger.seconds(now=6.0) == 0  # five quiet seconds later the rate has decayed below one a linger
    assert linger.seconds() == 0.02  # asking changed nothing
