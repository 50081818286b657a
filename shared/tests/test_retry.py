from leadpipe_common.retry import backoff


def test_each_retry_waits_between_half_and_all_of_a_doubling_ceiling():
    for attempt, ceiling in enumerate([0.1, 0.2, 0.4, 0.8]):
        waits = [backoff(attempt) for _ in range(200)]
        assert ceiling / 2 <= min(waits) and max(waits) <= ceiling


def test_the_wait_is_capped():
    assert max(backoff(100, cap=5.0) for _ in range(200)) <= 5.0


def test_replicas_that_fail_together_do_not_retry_in_lockstep():
    assert len({backoff(3) for _ in range(50)}) > 40
