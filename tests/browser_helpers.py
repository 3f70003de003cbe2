"""Real headless Chromium for the browser tests, driven by Python Playwright.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it), launched through
``executable_path``: Playwright never downloads a browser. Tests skip with a reason when either
is missing. Flags (docs/browser.md, "Testing"): ``--allow-loopback-in-peer-connection`` lets
WebRTC use 127.0.0.1, and a ``getUserMedia`` call under the fake-media flags makes Chromium
offer plain host candidates instead of mDNS ``.local`` names (which aiortc cannot resolve in a
loopback-only namespace); the mDNS feature is also switched off for good measure.

A :class:`Tab` is one page with the netplay client loaded from the lobby's ``/play/netplay/``
(signaling/play.py) and a :class:`Mesh` in ``window.mesh``; everything the page's mesh reports
is appended to ``window.log``, which the tests wait on with deadlines (``wait_for_function``).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--allow-loopback-in-peer-connection",
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
]


def chromium_path() -> str:
    """Debian's Chromium, or skip the test with the reason."""
    path = os.environ.get("NETPLAY_CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (apt-get install chromium; .ci/run does)")
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        pytest.skip("Python Playwright is not installed (pip install -e '.[dev]')")
    return path


# Installed in every tab: the client, a mesh, and a log of what it reports. Binary bodies are
# logged as {bin: length, sum: byte sum} so a 1 MiB message is checked without shipping it back.
_SETUP = """
async ({url, name, options}) => {
  const np = await import("/play/netplay/netplay.js");
  try {
    const stream = await navigator.mediaDevices.getUserMedia({audio: true});
    stream.getTracks().forEach((t) => t.stop());
  } catch (err) { console.warn("getUserMedia", err); }
  window.np = np;
  window.log = [];
  const summary = (body) => {
    if (body instanceof Uint8Array) {
      let sum = 0; for (const b of body) sum = (sum + b) % 1000000007;
      return {bin: body.length, sum};
    }
    return body;
  };
  const mesh = new np.Mesh({lobbyUrl: url, name, ...options});
  window.mesh = mesh;
  for (const type of ["peerJoined", "peerLeft", "hostChanged", "message"]) {
    mesh.on(type, (d) => window.log.push({type, ...d, body: summary(d.body),
                                          at: performance.now()}));
  }
  window.lastState = {};
  mesh.on("state", (d) => { window.lastState[d.peer] = d.state; });
  await mesh.open();
  return mesh.peerId;
}
"""


class Tab:
    """One browser page running a netplay Mesh."""

    def __init__(self, page: Any, peer_id: str) -> None:
        self.page = page
        self.peer_id = peer_id

    async def js(self, script: str, arg: Any = None) -> Any:
        """Evaluate ``script`` (a function expression) in the page."""
        return await self.page.evaluate(script, arg)

    async def wait(self, predicate: str, arg: Any = None, timeout: float = 15.0) -> Any:
        """Wait until the JavaScript function ``predicate`` returns something truthy."""
        handle = await self.page.wait_for_function(predicate, arg=arg, timeout=timeout * 1000,
                                                   polling=10)
        return await handle.json_value()

    async def wait_log(self, type: str, where: str = "true", timeout: float = 15.0) -> Any:
        """The first ``window.log`` entry of ``type`` for which ``where`` (on ``e``) holds."""
        return await self.wait(
            f"() => window.log.find((e) => e.type === {type!r} && ({where}))", timeout=timeout)

    async def messages(self, where: str, count: int, timeout: float = 15.0) -> list[Any]:
        """Wait for ``count`` logged messages for which ``where`` (on ``e``) holds; their
        bodies, in arrival order."""
        found = f"window.log.filter((e) => e.type === 'message' && ({where}))"
        await self.wait(f"() => {found}.length >= {count}", timeout=timeout)
        return list(await self.js(f"() => {found}.map((e) => e.body)"))

    async def peers(self) -> list[str]:
        return list(await self.js("() => window.mesh.peers"))


class Browser:
    """A headless Chromium with helpers to open tabs on a lobby."""

    def __init__(self, browser: Any, lobby: Any) -> None:
        self.browser = browser
        self.lobby = lobby
        self.console: list[str] = []

    async def tab(self, name: str, **options: Any) -> Tab:
        """A new page with the client loaded and a Mesh connected to the lobby."""
        page = await self.browser.new_page()
        page.on("console", lambda msg: self.console.append(f"{name}: {msg.type}: {msg.text}"))
        page.on("pageerror", lambda exc: self.console.append(f"{name}: pageerror: {exc}"))
        await page.goto(self.lobby.http_url + "/healthz")
        peer_id = await page.evaluate(_SETUP, {"url": self.lobby.url, "name": name,
                                               "options": options})
        return Tab(page, peer_id)


@asynccontextmanager
async def chromium(lobby: Any) -> AsyncIterator[Browser]:
    """Launch Debian's Chromium headless with the WebRTC loopback flags."""
    path = chromium_path()
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=path, headless=True,
                                           args=CHROMIUM_FLAGS)
        wrapper = Browser(browser, lobby)
        try:
            yield wrapper
        finally:
            if wrapper.console:
                print("\n".join(wrapper.console[-40:]))
            await browser.close()
