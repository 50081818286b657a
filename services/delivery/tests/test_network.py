"""The dispatcher's transport connects only to public addresses, whatever a name resolves to at that moment."""

import asyncio
import socket
import threading
import time

import httpcore
import httpx
import pytest

from delivery.network import LOOKUPS_PER_HOST, PublicOnlyBackend, PublicOnlyTransport

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("target", ["http://localhost:9/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/hook",
                                    # IPv6 forms that carry an internal IPv4 address (NAT64, 6to4, compatible,
                                    # translated)
                                    "http://[64:ff9b:1::a00:1]:9/", "http://[2002:7f00:1::]:9/",
                                    "http://[::7f00:1]:9/", "http://[::ffff:0:7f00:1]:9/", "http://[fec0::1]:9/"])
async def test_a_name_or_address_that_is_not_public_is_refused_before_connecting(target):
    async with httpx.AsyncClient(transport=PublicOnlyTransport(allow_private=False)) as client:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await client.post(target, content=b"{}", timeout=2)


@pytest.mark.parametrize("allow_private", [False, True])
@pytest.mark.parametrize("resolved", ["169.254.169.254", "fe80::1%eth0", "fd00:ec2::254", "::ffff:169.254.169.254",
                                      "64:ff9b::a9fe:a9fe", "224.0.0.251", "ff02::1"])
async def test_a_name_resolving_to_a_metadata_link_local_or_multicast_address_is_refused_even_when_private_is_allowed(
        resolved, allow_private):
    """With DELIVERY_ALLOW_PRIVATE_TARGETS=true a name could resolve to the instance's metadata service, and a
    webhook ask it from inside."""
    def resolve(host: str, port: int, type: int) -> list:  # noqa: A002 (getaddrinfo's own name)
        return [(socket.AF_INET6 if ":" in resolved else socket.AF_INET, socket.SOCK_STREAM, 6, "", (resolved, port))]

    class NoNetwork:  # were the check to let it through, nothing is reached: the test says so and fails
        async def connect_tcp(self, address: str, *args: object) -> None:
            raise httpcore.ConnectError(f"connected to {address}")

    backend = PublicOnlyBackend(allow_private=allow_private, resolve=resolve)
    backend._inner = NoNetwork()
    try:
        with pytest.raises(httpcore.ConnectError, match="refused even with DELIVERY_ALLOW_PRIVATE_TARGETS=true"):
            await backend.connect_tcp("hooks.example.com", 80, timeout=2)
    finally:
        backend.close()


async def test_private_targets_are_reached_when_allowed():
    async with httpx.AsyncClient(transport=PublicOnlyTransport(allow_private=True)) as client:
        with pytest.raises(httpx.ConnectError) as refused:
            await client.post("http://127.0.0.1:9/hook", content=b"{}", timeout=2)  # nothing listens on port 9
    assert "not a public address" not in str(refused.value)


async def test_a_receiver_whose_name_servers_are_slow_holds_up_no_other_receivers_lookups():
    """Eight attempts to a receiver whose name takes seconds to look up, given up on after 0.2 s each: their
    lookups went on in the loop's six default threads, and another receiver's lookup waited for one."""
    started, release = [], threading.Event()

    def resolve(host: str, port: int, type: int) -> list:  # noqa: A002 (getaddrinfo's own name)
        if host == "slow.example":
            started.append(host)
            release.wait(10)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port))]

    backend = PublicOnlyBackend(allow_private=False, resolve=resolve)
    try:
        slow = await asyncio.gather(*(backend.lookup("slow.example", 443, 0.2) for _ in range(8)),
                                    return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in slow)
        t0 = time.monotonic()
        [info] = await backend.lookup("crm.example.com", 443, 1.0)
        assert info[4][0] == "93.184.216.34" and time.monotonic() - t0 < 1.0
        assert len(started) == LOOKUPS_PER_HOST  # the others waited for those, and gave up
    finally:
        release.set()
        backend.close()
