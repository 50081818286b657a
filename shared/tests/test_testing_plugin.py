"""The test plugin's own promises to `make test`."""

import re

import pytest

pytest_plugins = ["pytester"]


def test_every_test_that_needs_the_stack_runs_on_one_xdist_worker_beside_the_others(pytester: pytest.Pytester) -> None:
    # Two session stacks at once would double the broker and Postgres on a small machine's cores, and each worker
    # starting its own would cost a stack start per worker: every stack test must land on one worker.
    pytester.makepyfile(test_mixed="""
        import pytest

        @pytest.fixture
        def stack():
            return "a stand-in: the plugin groups by the fixture's name"

        @pytest.mark.parametrize("n", range(6))
        def test_with_the_stack(stack, n):
            pass

        @pytest.mark.parametrize("n", range(6))
        def test_without_it(n):
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "leadpipe_common.testing.plugin", "-p", "no:cacheprovider",
                                           "-n", "2", "--dist", "loadgroup", "-v")
    result.assert_outcomes(passed=12)
    workers = {name: set(re.findall(rf"\[(gw\d)\] \[[ \d%]+\] PASSED test_mixed.py::{name}\b", result.stdout.str()))
               for name in ("test_with_the_stack", "test_without_it")}
    assert len(workers["test_with_the_stack"]) == 1, result.stdout.str()
    assert workers["test_without_it"], result.stdout.str()
