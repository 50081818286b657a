"""The dispatcher's HTTP transport: it connects only to the public addresses it checked.

Guarantees: the transport resolves a target's host itself, refuses the
connection when any address is link-local, a cloud metadata service's or
multicast (allowed private targets or not), or, unless private targets are
allowed, private, loopback or otherwise not global, or carries such an IPv4
address (mapped, NAT64, 6to4, Teredo), and connects to an address it
checked; a name
cannot resolve to a public address for a check and to an internal one for
the connection (DNS rebinding). TLS still verifies the certificate against
the host name. No proxy from the environment is used: a proxy would make the
connection, not us. Names are looked up on threads of the transport's own,
at most ``LOOKUPS_PER_HOST`` at a time for one host, counted until the
lookup's thread is free again (a lookup given up on keeps its thread until
the resolver answers): a receiver whose name servers are slow holds a few of
those threads, not the lookups of every other receiver.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import socket
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpcore
import httpx
from httpcore._backends.auto import AutoBackend

from delivery.domain import address_problem


#: Lookups of one host under way at once (each holds a thread until its resolver answers).
LOOKUPS_PER_HOST = 2
#: Threads for lookups, for every host together.
LOOKUP_THREADS = 32


class NotPublic(httpcore.ConnectError):
    """A receiver's name resolves to an address deliveries are not sent to: no retry changes that, so the
    dispatcher counts it as a refusal (``domain.after_attempt``'s ``refused_here``), not as an outage."""


class PublicOnlyBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, *, allow_private: bool, resolve: Any = socket.getaddrinfo) -> None:
        self._allow_private = allow_private
        self._inner = AutoBackend()
        self._resolve = resolve
        # Not the loop's default pool (min(32, CPUs + 4) threads, shared with everything else): there, one
        # receiver with slow name servers took every thread, and every other receiver's lookup timed out.
        self._lookups = ThreadPoolExecutor(LOOKUP_THREADS, thread_name_prefix="delivery-lookup")
        self._per_host: dict[str, asyncio.Semaphore] = {}

    async def lookup(self, host: str, port: int, timeout: float | None) -> list[Any]:
        """``getaddrinfo`` for ``host``, within ``timeout`` (waiting for one of the host's lookups included)."""
        gate = self._per_host.setdefault(host, asyncio.Semaphore(LOOKUPS_PER_HOST))
        async with asyncio.timeout(timeout):
            await gate.acquire()
            running = asyncio.get_running_loop().run_in_executor(
                self._lookups, functools.partial(self._resolve, host, port, type=socket.SOCK_STREAM))
            running.add_done_callback(lambda _: gate.release())  # when its thread is free, not when given up on
            return await asyncio.shield(running)

    async def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                          socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None) -> httpcore.AsyncNetworkStream:
        try:
            infos = await self.lookup(host, port, timeout)
        except (OSError, TimeoutError) as exc:
            raise httpcore.ConnectError(f"cannot resolve {host}: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        for address in addresses:
            problem = address_problem(ipaddress.ip_address(address.split("%")[0]), allow_private=self._allow_private)
            if problem:
                raise NotPublic(f"refused: {host} resolves to {address}, {problem}")
        failure: httpcore.ConnectError | None = None
        for address in addresses:
            try:
                return await self._inner.connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                failure = exc
        raise failure or httpcore.ConnectError(f"{host} resolves to no address")

    async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                  socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
                                  ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("webhooks are sent over TCP only")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)

    def close(self) -> None:
        self._lookups.shutdown(wait=False, cancel_futures=True)


class PublicOnlyTransport(httpx.AsyncHTTPTransport):
    def __init__(self, *, allow_private: bool, limits: httpx.Limits = httpx.Limits()) -> None:
        super().__init__(limits=limits, trust_env=False)
        # httpx takes no network backend; its pool does. Built as httpx builds it, with ours.
        self._backend = PublicOnlyBackend(allow_private=allow_private)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(), max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections, keepalive_expiry=limits.keepalive_expiry,
            network_backend=self._backend)

    async def aclose(self) -> None:
        await super().aclose()
        self._backend.close()
