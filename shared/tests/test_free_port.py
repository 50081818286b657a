"""The test stacks' port picks: outside the range outgoing connections borrow from, free, never twice."""

import socket

from leadpipe_common.local import infra


def test_a_picked_port_lies_below_the_ephemeral_range_with_its_replica_ports_free():
    low, _ = infra._ephemeral_range()
    offsets = (0, 100, 200)
    port = infra.free_port(offsets)
    assert port + max(offsets) < low
    for o in offsets:
        with socket.socket() as s:
            s.bind(("127.0.0.1", port + o))  # raises if the pick was not free


def test_no_port_is_handed_out_twice_even_as_another_pick_s_replica_port():
    picks = [infra.free_port((0, 100)) for _ in range(300)]
    taken = [p + o for p in picks for o in (0, 100)]
    assert len(set(taken)) == len(taken)


def test_a_port_in_use_is_never_picked(monkeypatch):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        used = busy.getsockname()[1]
        busy.listen()
        monkeypatch.setattr(infra, "_ephemeral_range", lambda: (used + 1, 60_999))
        monkeypatch.setattr(infra, "_LOWEST_PORT", used - 1)
        assert infra.free_port() == used - 1  # the only other candidate
