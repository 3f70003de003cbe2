"""The demo page served by the lobby at /play (signaling/play.py, examples/squares/web) plays a
match with a Python bot (a real ``netplay-demo --headless`` process), judged by the page's own
state (``window.squares``) and the bot's JSON status; plus one screenshot."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from browser_helpers import chromium


class HeadlessBot:
    """``python -m netplay_demo --headless --json``: a bot player in its own process."""

    def __init__(self, lobby_url: str, *args: str) -> None:
        env = dict(os.environ, SDL_VIDEODRIVER="dummy", PYGAME_HIDE_SUPPORT_PROMPT="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netplay_demo", "--headless", "--json", "--lobby", lobby_url,
             *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True, env=env)
        self.lines: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("{"):
                self.lines.put(json.loads(line))

    def wait_line(self, check: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            if check(line):
                return line

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def test_the_lobby_serves_the_page_and_the_client(lobby: Any) -> None:
    with httpx.Client(base_url=lobby.http_url) as http:
        redirect = http.get("/play")
        assert redirect.is_redirect and redirect.headers["location"] == "/play/"
        page = http.get("/play/")
        assert page.status_code == 200 and "<canvas" in page.text
        client = http.get("/play/netplay/netplay.js")
        assert client.status_code == 200 and "export" in client.text
        assert http.get("/play/netplay/vendor/msgpack/msgpack.mjs").status_code == 200
        assert http.get("/play/nope.js").status_code == 404


async def test_the_demo_page_plays_a_match_with_a_bot(lobby: Any, tmp_path: Path) -> None:
    bot = HeadlessBot(lobby.url, "--name", "pybot", "--host", "--seconds", "40", "--seed", "3")
    try:
        announced = bot.wait_line(lambda line: "lobby" in line, 20)
        code, bot_id = announced["lobby"], announced["peer_id"]
        async with chromium(lobby) as browser:
            page = await browser.browser.new_page(viewport={"width": 1000, "height": 660})
            page.on("console", lambda msg: browser.console.append(f"page: {msg.text}"))
            page.on("pageerror", lambda exc: browser.console.append(f"page error: {exc}"))
            await page.goto(f"{lobby.http_url}/play/?join={code}&bot=1&name=web&seed=5")

            async def wait(predicate: str, timeout: float = 20) -> Any:
                try:
                    handle = await page.wait_for_function(predicate, timeout=timeout * 1000,
                                                          polling=50)
                except Exception:
                    seen = await page.evaluate(
                        "() => JSON.stringify({...window.squares, world: undefined, mesh: "
                        "undefined, players: [...(window.squares.world?.players.keys() ?? [])],"
                        " peers: window.squares.mesh?.peers})")
                    raise AssertionError(f"page never got there: {predicate}\n{seen}") from None
                return await handle.json_value()

            await wait("() => window.squares.status === 'playing' || window.squares.error")
            assert await page.evaluate("() => window.squares.error") is None
            web_id = await page.evaluate("() => window.squares.me")
            # both players in the page's world; the bot's snapshots and events arrive
            await wait(f"() => window.squares.world.players.size === 2 && "
                       f"window.squares.world.players.has({bot_id!r})")
            start = await page.evaluate(
                f"() => {{ const p = window.squares.world.players.get({bot_id!r}); "
                f"return [p.x, p.y]; }}")
            await wait(f"() => {{ const p = window.squares.world.players.get({bot_id!r}); "
                       f"return Math.abs(p.x - {start[0]}) + Math.abs(p.y - {start[1]}) > 20; }}")
            await wait(f"() => (window.squares.snapshots[{bot_id!r}] || 0) > 60")
            # the Python host owns the gems: its pickup announcements reach the page
            await wait("() => (window.squares.eventKinds.pickup || 0) + "
                       "(window.squares.eventKinds.pickups || 0) >= 1 && "
                       "window.squares.world.pickups.size + "
                       "(window.squares.eventKinds.taken || 0) >= 1")
            # the page's own bot plays: it moves and shoots (the Python bot sees the shots)
            mine = await page.evaluate(
                "() => { const p = window.squares.world.players.get(window.squares.me); "
                "return [p.x, p.y]; }")
            await wait(f"() => {{ const p = window.squares.world.players.get(window.squares.me); "
                       f"return Math.abs(p.x - {mine[0]}) + Math.abs(p.y - {mine[1]}) > 20; }}")
            status = bot.wait_line(
                lambda line: "status" in line
                and line["status"]["snapshots_received"].get(web_id, 0) > 30
                and line["status"]["events_by_kind"].get(web_id, {}).get("shot", 0) >= 1, 30)
            assert web_id in status["status"]["peers_connected"]
            assert status["status"]["events_by_kind"][web_id].get("chat", 0) >= 1  # its greeting
            shot = await page.screenshot(path=str(tmp_path / "squares.png"))
            assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
            colours = await page.evaluate("""() => {
                const c = document.getElementById('arena');
                const data = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                const seen = new Set();
                for (let i = 0; i < data.length; i += 4 * 97) {
                    seen.add(data[i] << 16 | data[i + 1] << 8 | data[i + 2]);
                }
                return seen.size;
            }""")
            assert colours >= 5  # arena, walls, players, text: not a blank canvas
    finally:
        bot.stop()


async def test_a_browser_hosts_the_demo_and_a_python_bot_joins(lobby: Any) -> None:
    async with chromium(lobby) as browser:
        page = await browser.browser.new_page()
        await page.goto(f"{lobby.http_url}/play/?host=1&bot=1&name=webhost&seed=9")
        handle = await page.wait_for_function(
            "() => window.squares.status === 'playing' || window.squares.error", timeout=20000)
        await handle.dispose()
        code, web_id = await page.evaluate("() => [window.squares.code, window.squares.me]")
        assert code, await page.evaluate("() => window.squares.error")
        bot = HeadlessBot(lobby.url, "--name", "pybot", "--join", code, "--seconds", "40",
                          "--seed", "4")
        try:
            # the page hosts: it owns the gems, the Python bot sees them and claims them from it
            status = bot.wait_line(
                lambda line: "status" in line
                and line["status"]["host"] == web_id
                and line["status"]["gems_spawned"].get(web_id, 0) >= 2
                and line["status"]["snapshots_received"].get(web_id, 0) > 30, 30)
            assert web_id in status["status"]["peers_connected"]
            handle = await page.wait_for_function(
                "() => window.squares.world.players.size === 2 "
                "&& (window.squares.world.gemsSpawned[window.squares.me] || 0) >= 2",
                timeout=20000)
            await handle.dispose()
        finally:
            bot.stop()
