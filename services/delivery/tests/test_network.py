"""The dispatcher's transport connects only to public addresses, whatever a name resolves to at that moment."""

import httpx
import pytest

from delivery.network import PublicOnlyTransport

pytestmark = pytest.mark.asyncio


@pytest.mark.parametrize("target", ["http://localhost:9/hook", "http://127.0.0.1:9/hook", "http://[::1]:9/hook",
                                    "http://169.254.169.254/latest/meta-data",
                                    # IPv6 forms that carry an internal IPv4 address (NAT64, 6to4, compatible)
                                    "http://[64:ff9b::a9fe:a9fe]/latest/meta-data", "http://[64:ff9b:1::a00:1]:9/",
                                    "http://[2002:7f00:1::]:9/", "http://[::7f00:1]:9/"])
async def test_a_name_or_address_that_is_not_public_is_refused_before_connecting(target):
    async with httpx.AsyncClient(transport=PublicOnlyTransport(allow_private=False)) as client:
        with pytest.raises(httpx.ConnectError, match="not a public address"):
            await client.post(target, content=b"{}", timeout=2)


async def test_private_targets_are_reached_when_allowed():
    async with httpx.AsyncClient(transport=PublicOnlyTransport(allow_private=True)) as client:
        with pytest.raises(httpx.ConnectError) as refused:
            await client.post("http://127.0.0.1:9/hook", content=b"{}", timeout=2)  # nothing listens on port 9
    assert "not a public address" not in str(refused.value)
