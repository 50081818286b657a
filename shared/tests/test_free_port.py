"""The test stacks' port picks: outside the range outgoing connections borrow from, free, never twice."""

import socket

import pytest

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
        assert not infra._bindable(used)
        bindable = infra._bindable
        # Two candidates, the other one free whatever this machine runs on it.
        monkeypatch.setattr(infra, "_bindable", lambda port: port == used - 1 or bindable(port))
        monkeypatch.setattr(infra, "_ephemeral_range", lambda: (used + 1, 60_999))
        monkeypatch.setattr(infra, "_LOWEST_PORT", used - 1)
        assert infra.free_port() == used - 1


def test_no_room_below_the_ephemeral_range_is_said_not_papered_over(monkeypatch):
    monkeypatch.setattr(infra, "_ephemeral_range", lambda: (infra._LOWEST_PORT, 60_999))
    with pytest.raises(RuntimeError, match="no free port"):
        infra.free_port()
