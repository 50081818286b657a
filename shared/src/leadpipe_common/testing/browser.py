"""Headless Chromium driven over the DevTools protocol, for tests that need a real browser session (cookies,
forms, navigation): Debian's ``chromium``, no browser download, no webdriver."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest


def chromium_or_skip() -> str:
    found = shutil.which("chromium") or shutil.which("chromium-browser")
    if found is None:
        if os.environ.get("LEADPIPE_REQUIRE_BROWSER"):
            pytest.fail("chromium is not installed (.ci/run installs Debian's chromium package)")
        pytest.skip("chromium is not installed; `apt-get install chromium` to run the browser tests")
    return found


class Page:
    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        call_id = next(self._ids)
        await self._ws.send_json({"id": call_id, "method": method, "params": params})
        while True:
            message = json.loads((await self._ws.receive(timeout=30)).data)
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})

    async def evaluate(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def goto(self, url: str) -> None:
        await self.call("Page.navigate", url=url)
        await self.wait_for(f"location.href.startsWith({json.dumps(url.split('?')[0])})")

    async def wait_for(self, condition: str, timeout: float = 30) -> None:
        async with asyncio.timeout(timeout):
            while not await self.evaluate(f"document.readyState === 'complete' && ({condition})"):
                await asyncio.sleep(0.1)

    async def html(self) -> str:
        return await self.evaluate("document.documentElement.outerHTML")

    async def sign_in(self, key: str) -> None:
        """On reporting's sign-in page: the key typed in and the form sent, as a person does; back on the
        dashboard, its funnel drawn."""
        await self.evaluate(f"document.getElementById('key').value = {json.dumps(key)};"
                            "document.querySelector('form[action=\"/dashboard/login\"]').submit()")
        await self.wait_for("location.pathname === '/dashboard' && !!document.getElementById('funnel-chart')")

    async def screenshot(self, path: Path, width: int = 1280, height: int = 1500) -> None:
        await self.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                        mobile=False)
        shot = await self.call("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))


@asynccontextmanager
async def chromium(profile: Path) -> AsyncIterator[Page]:
    """A fresh headless Chromium with one blank page; gone afterwards."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(
        [chromium_or_skip(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", f"--user-data-dir={profile}", "about:blank"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        async with asyncio.timeout(30):
            while not port_file.exists() or not port_file.read_text().strip():
                await asyncio.sleep(0.1)
        port = port_file.read_text().split()[0]
        async with aiohttp.ClientSession() as http:
            async with asyncio.timeout(30):
                while True:
                    targets = await (await http.get(f"http://127.0.0.1:{port}/json/list")).json()
                    pages = [t for t in targets if t.get("type") == "page"]
                    if pages:
                        break
                    await asyncio.sleep(0.1)
            async with http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Page(ws)
    finally:
        proc.kill()
        proc.wait()
