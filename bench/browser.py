"""Browser figures: the JavaScript client (clients/js) in headless Chromium against Python.

    unshare -n sh -c 'ip link set lo up && python -m bench.browser'

Prints, as Markdown rows for bench/RESULTS.md:

- page load to channels open: a fresh page (navigation start) imports the client, connects to
  the lobby, joins a Python host's lobby and waits for its channel to open; ``performance.now()``
  at ``peerJoined`` (ms since navigation start). Also the part from the first
  ``RTCPeerConnection`` to open;
- event round trip browser <-> Python: sequential pings on the reliable "events" lane, echoed
  by the other side (both directions);
- snapshot decode cost in the page: Python sends a 20-entity state at 60 Hz (delta-encoded);
  the page's time in ``onFrame`` from the datagram to the decoded state, per snapshot.

Needs Debian's chromium and Python Playwright (the dev extra), like tests/test_browser*.py.
Standalone (not in ``python -m bench``'s list), so it never runs where Chromium is absent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import netplay
from netplay.events import MessageReceived, PeerJoined

FLAGS = ["--no-sandbox", "--allow-loopback-in-peer-connection",
         "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
         # LocalNetworkAccessChecks: the timed page is served by Playwright (route.fulfill),
         # which Chromium counts as a public origin, barred from loopback otherwise.
         "--disable-features=WebRtcHideLocalIpsWithMdns,LocalNetworkAccessChecks"]

_PRELOAD = "".join(f'<link rel="modulepreload" href="/play/netplay/{m}">' for m in (
    "netplay.js",
    "src/mesh.js",
    "src/dataplane.js",
    "src/lobby.js",
    "src/wire.js",
    "src/lanes.js",
    "src/state.js",
    "src/pacer.js",
    "vendor/msgpack/msgpack.mjs",
))
_PAGE = """<!doctype html>""" + _PRELOAD + """<script type="module">
  const t = (name) => (window.marks[name] = performance.now());
  window.marks = {};
  const np = await import("/play/netplay/netplay.js");
  t("imported");
  const orig = window.RTCPeerConnection;
  window.RTCPeerConnection = function (...args) {
    if (window.marks.firstPc === undefined) t("firstPc");
    return new orig(...args);
  };
  const params = new URLSearchParams(location.search);
  const mesh = new np.Mesh({lobbyUrl: params.get("url"), name: "bench"});
  window.mesh = mesh;
  const joined = new Promise((resolve) => mesh.on("peerJoined", resolve));
  await mesh.open();
  t("lobbyOpen");
  await mesh.join(params.get("code"));
  t("inLobby");
  await joined;
  t("open");
</script>"""



@dataclass
class _Lobby:
    url: str
    http_url: str


@contextlib.contextmanager
def _lobby_process() -> Iterator[_Lobby]:
    """``netplay-lobby`` in its own process, as deployed (the page's files come from it)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "signaling", "--port", str(port),
                             "--log-level", "warning"])
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError("the lobby did not start")
            time.sleep(0.05)
        yield _Lobby(f"ws://127.0.0.1:{port}/ws", f"http://127.0.0.1:{port}")
    finally:
        proc.terminate()
        proc.wait(10)


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(pages: int, pings: int) -> dict[str, Any]:
    from playwright.async_api import async_playwright

    path = shutil.which("chromium") or "/usr/bin/chromium"
    out: dict[str, Any] = {}
    with _lobby_process() as lobby:
        config = netplay.MeshConfig(lobby_url=lobby.url, name="py",
                                    ice_host_addresses=("127.0.0.1",))
        async with netplay.Mesh(config) as py, async_playwright() as pw:
            info = await py.host(game="bench")
            browser = await pw.chromium.launch(executable_path=path, headless=True, args=FLAGS)
            opens, from_pc = [], []
            page = None
            for _ in range(pages):
                if page is not None:
                    await page.close()
                    await asyncio.sleep(0.3)  # let the Python side see the tab go
                page = await browser.new_page()
                page.on("pageerror", lambda exc: print("page error:", exc))
                await page.route(lambda url: "/bench.html" in url, lambda route: route.fulfill(
                    status=200, content_type="text/html", body=_PAGE))
                await page.goto(f"{lobby.http_url}/bench.html?url={lobby.url}&code={info.code}")
                handle = await page.wait_for_function("() => window.marks && window.marks.open",
                                                      timeout=20000)
                await handle.dispose()
                got = await page.evaluate("() => window.marks")
                got["fromPc"] = got["open"] - got["firstPc"]
                opens.append(got["open"])
                for key in ("imported", "lobbyOpen", "inLobby", "firstPc"):
                    out.setdefault(f"  {key} (ms since navigation)", []).append(got[key])
                from_pc.append(got["fromPc"])
            out["page load to channels open (ms)"] = opens
            out["RTCPeerConnection to channels open (ms)"] = from_pc

            # the last page stays: round trips both ways
            assert page is not None
            web = await page.evaluate("() => window.mesh.peerId")
            await py.wait_for(PeerJoined, 10, lambda e: e.peer_id == web)

            async def echo_python() -> None:
                async for ev in py.events():
                    if isinstance(ev, MessageReceived) and isinstance(ev.body, dict) \
                            and "ping" in ev.body:
                        py.send_event({"pong": ev.body["ping"]}, to=ev.peer_id)

            echo = asyncio.create_task(echo_python())
            rtts = await page.evaluate("""async (n) => {
                const mesh = window.mesh, out = [];
                let waiting = null;
                mesh.on("message", ({body}) => {
                  if (body && body.pong !== undefined && waiting) waiting();
                });
                for (let i = 0; i < n; i++) {
                  const t0 = performance.now();
                  await new Promise((resolve) => { waiting = resolve; mesh.sendEvent({ping: i}); });
                  out.push(performance.now() - t0);
                }
                return out;
            }""", pings)
            echo.cancel()
            out["event round trip, browser -> Python -> browser (ms)"] = rtts[5:]

            await page.evaluate("""() => window.mesh.on("message", ({peer, body}) => {
                if (body && body.ping !== undefined) window.mesh.sendEvent({pong: body.ping}, peer);
            })""")
            py_rtts = []
            for i in range(pings):
                t0 = time.perf_counter()
                py.send_event({"ping": i}, to=web)
                await py.wait_for(MessageReceived, 5, lambda e, i=i: isinstance(e.body, dict)
                                  and e.body.get("pong") == i)
                py_rtts.append((time.perf_counter() - t0) * 1000)
            out["event round trip, Python -> browser -> Python (ms)"] = py_rtts[5:]

            # snapshot decode cost: 20 entities at 60 Hz for 3 s, delta-encoded
            await page.evaluate("""() => {
                const mesh = window.mesh, original = mesh.onFrame.bind(mesh);
                window.frames = [];
                mesh.onFrame = (r, data) => {
                  window.frames.push(data.slice(0));
                  original(r, data);
                };
            }""")
            before = await page.evaluate(f"() => window.mesh.stats({py.peer_id!r})")
            for tick in range(180):
                py.send_state({"entities": {str(k): {"x": round(k * 10 + tick * 0.5, 1),
                                                     "y": round(k * 5 + tick * 0.25, 1),
                                                     "hp": 100, "name": f"unit{k}"}
                                            for k in range(20)}, "tick": tick})
                await asyncio.sleep(1 / 60)
            await asyncio.sleep(0.2)
            after = await page.evaluate(f"() => window.mesh.stats({py.peer_id!r})")
            n = after["snapshotsDecoded"] - before["snapshotsDecoded"]
            spent = after["decodeSeconds"] - before["decodeSeconds"]
            out["snapshots decoded"] = n
            out["decode per snapshot (us)"] = spent / max(n, 1) * 1e6
            replay = await page.evaluate("""async () => {
                // the same frames decoded again, 20 times, timed as a whole (performance.now()
                // is coarse in a page: 100 us steps)
                const np = await import("/play/netplay/netplay.js");
                const frames = window.frames.map((f) => new Uint8Array(f));
                let snapshots = 0, bytes = 0;
                const t0 = performance.now();
                for (let k = 0; k < 20; k++) {
                  const decoder = new np.DeltaDecoder();
                  for (const f of frames) {
                    const d = np.unpackDatagram(f);
                    if (!d.snapshot) continue;
                    decoder.decode(d.snapshot.seq, d.snapshot.baseline, d.snapshot.body);
                    snapshots++;
                    bytes += f.length;
                  }
                }
                return {us: (performance.now() - t0) * 1000 / snapshots, bytes: bytes / snapshots};
            }""")
            out["decode per snapshot, replayed (us)"] = replay["us"]
            out["snapshot datagram size (bytes)"] = replay["bytes"]
            out["delta bytes saved by Python"] = py.stats(web).delta_bytes_saved
            await browser.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.browser", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pages", type=int, default=10, help="fresh pages timed (default 10)")
    parser.add_argument("--pings", type=int, default=300, help="round trips each way")
    args = parser.parse_args(argv)
    out = asyncio.run(run(args.pages, args.pings))
    print("| figure | p50 | p95 | min-max | target |")
    print("|---|---|---|---|---|")
    targets = {"page load to channels open (ms)": "<= 500 ms",
               "event round trip, browser -> Python -> browser (ms)": "p50 <= 3 ms",
               "event round trip, Python -> browser -> Python (ms)": "p50 <= 3 ms"}
    for name, values in out.items():
        if isinstance(values, list):
            print(f"| {name} | {statistics.median(values):.2f} | {_pct(values, 0.95):.2f} | "
                  f"{min(values):.2f}-{max(values):.2f} | {targets.get(name, '')} |")
        else:
            print(f"| {name} | {values:.1f} | | | |" if isinstance(values, float)
                  else f"| {name} | {values} | | | |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
