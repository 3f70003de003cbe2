"""Browser peers in the same match as Python peers: the JavaScript client (clients/js) in real
headless Chromium against real aiortc meshes and a real lobby, on loopback only.

See tests/browser_helpers.py for how Chromium is launched. Each test starts one Chromium.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from browser_helpers import Browser, Tab, chromium
from mesh_helpers import assert_loopback_only, config, eventually

from netplay.conditioner import ConditionerConfig
from netplay.events import HostChanged, MessageReceived, PeerLeft
from netplay.mesh import Mesh


@pytest.fixture
async def browser(lobby: Any) -> AsyncIterator[Browser]:
    async with chromium(lobby) as b:
        yield b


@contextlib.asynccontextmanager
async def python_peers(lobby: Any, *names: str, **overrides: Any) -> AsyncIterator[list[Mesh]]:
    async with contextlib.AsyncExitStack() as stack:
        meshes = [await stack.enter_async_context(Mesh(config(lobby, name, **overrides)))
                  for name in names]
        yield meshes


@contextlib.asynccontextmanager
async def python_host_and_tab(browser: Browser, lobby: Any) -> AsyncIterator[tuple[Mesh, Tab]]:
    """A Python peer hosting and one tab joined, connected both ways."""
    tab = await browser.tab("web")
    async with python_peers(lobby, "py") as (py,):
        info = await py.host(game="browser-test")
        await tab.js("async (code) => { await window.mesh.join(code); }", info.code)
        await py.wait_for_peers(1, timeout=15)
        await tab.wait("() => window.mesh.peers.length === 1")
        yield py, tab


async def message_from(mesh: Mesh, peer: str, where: Any = None, timeout: float = 15.0
                       ) -> MessageReceived:
    return await mesh.wait_for(
        MessageReceived, timeout,
        lambda e: e.peer_id == peer and (where is None or where(e.body)))


async def test_browser_hosts_and_two_python_peers_join(browser: Browser, lobby: Any) -> None:
    tab = await browser.tab("web-host")
    code = await tab.js("async () => (await window.mesh.host({game: 'browser-test'})).code")
    async with python_peers(lobby, "py1", "py2") as (py1, py2):
        await py1.join(code)
        await py2.join(code)
        for py in (py1, py2):
            assert set(await py.wait_for_peers(2, timeout=15)) >= {tab.peer_id}
        await tab.wait("() => window.mesh.peers.length === 2")
        assert set(await tab.peers()) == {py1.peer_id, py2.peer_id}
        assert_loopback_only(py1)

        # events both ways, in order, exactly once
        await tab.js("() => { for (let i = 0; i < 20; i++) window.mesh.sendEvent({i, t: 'e'}); }")
        for py in (py1, py2):
            got = [(await message_from(py, tab.peer_id)).body["i"] for _ in range(20)]
            assert got == list(range(20))
        for i in range(20):
            py1.send_event({"i": i, "from": "py1"})
        got_web = await tab.messages("e.body.from === 'py1'", 20)
        assert [body["i"] for body in got_web] == list(range(20))

        # states both ways; Python's are delta-encoded once the browser acknowledges them
        # the page's states are delta-encoded too, once Python acknowledges them
        await tab.js("""() => { let n = 0; window.stateTimer = setInterval(() => {
            n++;
            window.mesh.sendState({pos: {x: window.np.f64(n), y: 2.5}, who: 'web', n,
                                   tags: [1, 2, 3, n % 2 ? 'odd' : 'even'],
                                   ...(n % 3 ? {extra: true} : {})});
            if (n === 120) clearInterval(window.stateTimer);
        }, 10); }""")
        state = await eventually(lambda: py1.states().get(tab.peer_id, {}).get("n") == 120
                                 and py1.states()[tab.peer_id], timeout=15)
        assert state == {"pos": {"x": 120.0, "y": 2.5}, "who": "web", "n": 120,
                         "tags": [1, 2, 3, "even"]}
        assert type(state["pos"]["x"]) is float  # f64() kept it a float through the deltas
        saved = await tab.js(f"() => window.mesh.stats({py1.peer_id!r}).deltaBytesSaved")
        assert saved > 0 and py1.stats(tab.peer_id).bad_packets == 0
        for n in range(60):
            py1.send_state({"pos": {"x": float(n), "y": 2.0}, "hp": 100, "name": "py1", "n": n})
            await asyncio.sleep(1 / 60)
        await tab.wait(f"() => window.lastState && window.lastState[{py1.peer_id!r}]?.n === 59")
        last = await tab.js(f"() => window.lastState[{py1.peer_id!r}]")
        assert last == {"pos": {"x": 59, "y": 2}, "hp": 100, "name": "py1", "n": 59}
        assert py1.stats(tab.peer_id).delta_bytes_saved > 0  # deltas went to the browser
        stats = await tab.js(f"() => window.mesh.stats({py1.peer_id!r})")
        assert stats["badPackets"] == 0 and stats["snapshotsDecoded"] >= 30
        # clock sync: the page's offset is Python's monotonic clock minus the page's clock
        # (both in seconds), and Python measured the opposite
        page_now = await tab.js("() => performance.now() / 1000")
        expected = time.monotonic() - page_now
        assert abs(stats["clockOffset"] - expected) < 0.25, (stats, expected)
        assert 0 < stats["rtt"] < 0.5
        py_offset = py1.stats(tab.peer_id).clock_offset_ms
        assert py_offset is not None and abs(py_offset / 1000 + expected) < 0.25
        # interpolated() renders py1 from its snapshots, mapped through the synced clock
        rendered = await tab.wait(f"() => window.mesh.interpolated()[{py1.peer_id!r}]?.pos.x >= 50")
        assert rendered is True
        assert py2.peer_id not in await tab.js("() => window.mesh.interpolated()")  # sent none
        assert py1.stats(tab.peer_id).bad_packets == 0


async def test_python_hosts_and_two_tabs_join(browser: Browser, lobby: Any) -> None:
    async with python_peers(lobby, "py-host") as (host,):
        info = await host.host(game="browser-test")
        tab1 = await browser.tab("web1")
        tab2 = await browser.tab("web2")
        for tab in (tab1, tab2):
            await tab.js("async (code) => { await window.mesh.join(code); }", info.code)
        await host.wait_for_peers(2, timeout=15)
        # the two tabs connect to each other too (the earlier-joined one offers)
        await tab1.wait("() => window.mesh.peers.length === 2")
        await tab2.wait("() => window.mesh.peers.length === 2")
        assert set(await tab1.peers()) == {host.peer_id, tab2.peer_id}
        # the offer rule: the earlier-joined member offers, the later one answers
        offers = "(tab) => window.mesh.remotes.get(tab).offerer"
        assert await tab1.js(offers, tab2.peer_id) is True
        assert await tab2.js(offers, tab1.peer_id) is False
        assert await tab1.js(offers, host.peer_id) is False
        await tab1.js("() => window.mesh.sendEvent({hello: 'from tab1'})")
        await tab2.wait_log("message", "e.body.hello === 'from tab1'")
        got = await message_from(host, tab1.peer_id)
        assert got.body == {"hello": "from tab1"}
        host.send_event({"hello": "from python"})
        for tab in (tab1, tab2):
            await tab.wait_log("message",
                               f"e.peer === {host.peer_id!r} && e.body.hello === 'from python'")


async def test_numbers_cross_as_the_wire_rules_say(browser: Browser, lobby: Any) -> None:
    async with python_host_and_tab(browser, lobby) as (py, tab):
        await tab.js("""() => window.mesh.sendEvent({
            integral: 2.0, float: window.np.f64(2.0), half: 2.5, big: 2 ** 40,
            big64: 18446744073709551615n, bytes: new Uint8Array([1, 2, 3])})""")
        got = (await message_from(py, tab.peer_id)).body
        assert got == {"integral": 2, "float": 2.0, "half": 2.5, "big": 2**40,
                       "big64": 2**64 - 1, "bytes": b"\x01\x02\x03"}
        assert type(got["integral"]) is int and type(got["float"]) is float
        refused = await tab.js("""() => { try { window.mesh.sendEvent({n: 2 ** 60}); return null; }
                                         catch (err) { return err.name + ': ' + err.message; } }""")
        assert refused is not None and refused.startswith("RangeError") and "2^53" in refused
        py.send_event({"huge": 2**63 + 5, "small": 7, "f": 1.0})
        kinds = await tab.wait(f"""() => {{
            const e = window.log.find((e) => e.type === 'message' && e.peer === {py.peer_id!r});
            return e && {{huge: typeof e.body.huge, hugeText: String(e.body.huge),
                          small: typeof e.body.small, f: e.body.f}};
        }}""")
        assert kinds == {"huge": "bigint", "hugeText": str(2**63 + 5), "small": "number", "f": 1}


async def test_big_events_both_ways_and_reliable_lane_under_loss(browser: Browser,
                                                                  lobby: Any) -> None:
    async with python_host_and_tab(browser, lobby) as (py, tab):

        # 1 MiB each way, on the reliable lane (cut into pieces, reassembled)
        mib = bytes(i * 7 % 251 for i in range(1 << 20))
        await tab.js("""() => { const b = new Uint8Array(1 << 20);
            for (let i = 0; i < b.length; i++) b[i] = i * 7 % 251;
            window.mesh.sendEvent(b); }""")
        got = await message_from(py, tab.peer_id, lambda body: isinstance(body, bytes))
        assert got.body == mib
        py.send_event(mib)
        entry = await tab.wait_log("message", "e.body && e.body.bin === 1048576", timeout=30)
        assert entry["body"]["sum"] == sum(mib) % 1000000007

        # the reliable lane with 5% loss each way on the Python side's link
        py.set_conditioner(ConditionerConfig(loss=0.05, seed=13))
        # (400-byte events: two per datagram, so about 150 datagrams each way meet the loss)
        await tab.js("""() => { for (let i = 0; i < 300; i++)
            window.mesh.sendEvent({lossy: i, pad: 'x'.repeat(400)}); }""")
        for i in range(300):
            py.send_event({"lossy": i, "pad": "x" * 400})
        got_py = [(await message_from(py, tab.peer_id, lambda b: isinstance(b, dict)
                                      and "lossy" in b, timeout=30)).body["lossy"]
                  for _ in range(300)]
        assert got_py == list(range(300))
        got_web = await tab.messages("e.body.lossy !== undefined", 300, timeout=30)
        assert [body["lossy"] for body in got_web] == list(range(300))
        link = py._remotes[tab.peer_id].link
        assert link is not None and link.conditioner is not None
        lost = link.conditioner.stats
        assert lost["outbound"].dropped > 0 and lost["inbound"].dropped > 0  # loss really happened


async def test_a_tab_closed_abruptly_is_gone_within_3_s(browser: Browser, lobby: Any) -> None:
    async with python_host_and_tab(browser, lobby) as (py, tab):
        closed_at = time.monotonic()
        await tab.page.close()  # no leave(), no bye from the page's code
        left = await py.wait_for(PeerLeft, 5.0, lambda e: e.peer_id == tab.peer_id)
        assert time.monotonic() - closed_at < 3.0, left


async def test_a_crashed_or_frozen_tab_is_gone_within_3_s(browser: Browser, lobby: Any) -> None:
    async with python_host_and_tab(browser, lobby) as (py, tab):
        # crashed renderer: nothing is said on the data channel; the lobby sees the socket go
        cdp = await tab.page.context.new_cdp_session(tab.page)
        crashed_at = time.monotonic()
        crash = asyncio.ensure_future(cdp.send("Page.crash"))  # never answered: it crashed
        left = await py.wait_for(PeerLeft, 5.0, lambda e: e.peer_id == tab.peer_id)
        took = time.monotonic() - crashed_at
        crash.cancel()
        with contextlib.suppress(BaseException):
            await crash
        assert took < 3.0, left

        # frozen page (its JavaScript paused): the lobby connection stays up, so only the
        # silence on the link tells, and it must within 3 s
        frozen = await browser.tab("frozen")
        await frozen.js("async (code) => { await window.mesh.join(code); }", py.lobby.code)
        await py.wait_for_peers(1, timeout=15)
        debugger = await frozen.page.context.new_cdp_session(frozen.page)
        await debugger.send("Debugger.enable")
        frozen_at = time.monotonic()
        await debugger.send("Debugger.pause")
        left = await py.wait_for(PeerLeft, 5.0, lambda e: e.peer_id == frozen.peer_id)
        assert left.reason == "timed_out" and time.monotonic() - frozen_at < 3.0, left
        await debugger.send("Debugger.resume")


async def test_host_migration_from_and_to_a_browser(browser: Browser, lobby: Any) -> None:
    # from: the browser hosts, then its tab dies; the Python peer becomes host
    host_tab = await browser.tab("web-host")
    code = await host_tab.js("async () => (await window.mesh.host({game: 'browser-test'})).code")
    async with python_peers(lobby, "py") as (py,):
        await py.join(code)
        await py.wait_for_peers(1, timeout=15)
        joiner = await browser.tab("web-joiner")
        await joiner.js("async (code) => { await window.mesh.join(code); }", code)
        await joiner.wait("() => window.mesh.peers.length === 2")
        await host_tab.page.close()
        changed = await py.wait_for(HostChanged, 10.0)
        assert changed.host == py.peer_id and changed.is_me and py.is_host
        await joiner.wait_log("hostChanged", f"e.host === {py.peer_id!r}", timeout=10)

        # to: the Python host leaves; the browser that joined next becomes host
        await py.leave()
        entry = await joiner.wait_log("hostChanged", f"e.host === {joiner.peer_id!r}", timeout=10)
        assert entry["isMe"] is True
        assert await joiner.js("() => window.mesh.isHost") is True


async def test_a_refused_origin_gives_the_page_a_close_code_and_reason(
        browser: Browser, lobby_factory: Any) -> None:
    strict = lobby_factory(allowed_origins=("https://game.example",))
    page = await browser.browser.new_page()
    await page.goto(browser.lobby.http_url + "/healthz")
    outcome = await page.evaluate("""async (url) => {
        const np = await import("/play/netplay/netplay.js");
        try { await new np.Mesh({lobbyUrl: url}).open(); return null; }
        catch (err) { return {name: err.name, code: err.closeCode, reason: err.reason}; }
    }""", strict.url)
    assert outcome == {"name": "LobbyClosed", "code": 1008, "reason": "origin not allowed"}


async def test_a_failed_link_is_re_offered_and_nothing_reliable_is_lost(browser: Browser,
                                                                         lobby: Any) -> None:
    tab = await browser.tab("web-host")  # joined first, so the browser offers
    code = await tab.js("async () => (await window.mesh.host({game: 'browser-test'})).code")
    async with python_peers(lobby, "py") as (py,):
        await py.join(code)
        await py.wait_for_peers(1, timeout=15)
        await tab.wait("() => window.mesh.peers.length === 1")
        py.set_conditioner(ConditionerConfig(loss=1.0))  # the link goes silent both ways
        await tab.js("() => { for (let i = 0; i < 5; i++) window.mesh.sendEvent({during: i}); }")
        left = await py.wait_for(PeerLeft, 10.0, lambda e: e.peer_id == tab.peer_id)
        assert left.reason == "timed_out"
        py.set_conditioner(None)
        await tab.wait_log("peerLeft", f"e.peer === {py.peer_id!r}", timeout=10)
        # the browser offers again (a higher attempt), Python answers, the link is back
        await py.wait_for_peers(1, timeout=15)
        await tab.wait("() => window.log.filter((e) => e.type === 'peerJoined').length === 2")
        got = [(await message_from(py, tab.peer_id)).body["during"] for _ in range(5)]
        assert got == list(range(5))  # sent while the link was down, delivered once, in order
        assert await tab.js("() => window.mesh.remotes.values().next().value.attempt") >= 1


async def test_lobby_requests_from_pages_quick_match_list_ping_leave_resume(
        browser: Browser, lobby: Any) -> None:
    tab1 = await browser.tab("web1")
    tab2 = await browser.tab("web2")
    quick = "async () => (await window.mesh.quickMatch({game: 'qm-test', gameVersion: '7'})).code"
    first = await tab1.js(quick)
    listed = await tab2.js("async () => await window.mesh.listLobbies('qm-test')")
    assert [(row["code"], row["players"], row["game_version"]) for row in listed] \
        == [(first, 1, "7")]
    second = await tab2.js(quick)
    assert second == first  # quick match found the open lobby
    await tab1.wait("() => window.mesh.peers.length === 1")
    rtt = await tab1.js("async () => await window.mesh.ping()")
    assert 0 < rtt < 5

    # resume: the WebSocket drops (not a clean close); the client comes back with its token,
    # same peer id, same seat; the other member sees nothing
    before = await tab2.js("() => window.mesh.peerId")
    await tab2.js("() => window.mesh.lobbyClient.ws.close(4000, 'network blip')")
    await tab2.wait("() => window.mesh.lobbyClient.connected "
                    "&& window.mesh.lobbyClient.welcome.resumed")
    assert await tab2.js("() => window.mesh.lobbyClient.peerId") == before
    assert await tab2.js("() => window.mesh.lobby.code") == first
    assert await tab1.js("() => window.log.filter((e) => e.type === 'peerLeft').length") == 0

    # leave: the other page sees the peer go, with the reason "left"
    await tab2.js("async () => { await window.mesh.leave(); }")
    entry = await tab1.wait_log("peerLeft", f"e.peer === {before!r}")
    assert entry["reason"] == "left"
    assert await tab2.js("() => window.mesh.lobby") is None
    join = """async (code) => { try { await window.mesh.join(code); return null; }
                                 catch (err) { return [err.name, err.code]; } }"""
    assert await tab2.js(join, "ZZZZZZ") == ["LobbyError", "lobby_not_found"]

    # host-only requests from the hosting page: lock, unlock, metadata, kick
    await tab1.js("async () => { await window.mesh.lock(); }")
    assert await tab2.js(join, first) == ["LobbyError", "lobby_locked"]
    await tab1.js("async () => { await window.mesh.unlock(); }")
    await tab1.js("async () => { await window.mesh.setMetadata({round: 2}); }")
    assert await tab2.js(join, first) is None
    assert await tab2.js("() => window.mesh.lobby.metadata") == {"round": 2}
    await tab1.wait(f"() => window.mesh.peers.includes({before!r})")
    await tab1.js("async (peer) => { await window.mesh.kick(peer); }", before)
    kicked = await tab1.wait_log("peerLeft", f"e.peer === {before!r} && e.reason === 'kicked'")
    assert kicked["reason"] == "kicked"
    await tab2.wait("() => window.mesh.lobby === null")


async def test_bad_datagrams_from_a_peer_are_counted_and_the_page_keeps_working(
        browser: Browser, lobby: Any) -> None:
    from netplay import wire

    async with python_host_and_tab(browser, lobby) as (py, tab):
        raw = py._remotes[tab.peer_id].link.channel  # type: ignore[union-attr]
        for frame in (b"\x03" + b"\x90", b"\x02\xc1", b"\x02\xdd\xff\xff\xff\xff",
                      wire.pack_head(0, 1.0, None, None) + b"\x2a\xc0\x91\x91\x01", "text"):
            raw.send(frame)
        await tab.wait(f"() => window.mesh.stats({py.peer_id!r}).badPackets === 5")
        py.send_event("still works")
        await tab.wait_log("message", "e.body === 'still works'")
        assert await tab.peers() == [py.peer_id]


async def test_a_restarted_lobby_then_a_rejoin_keeps_the_browser_link(browser: Browser,
                                                                     lobby_factory: Any) -> None:
    server = lobby_factory(resume_grace=30.0)
    port = server.port
    tab = await browser.tab("web", lobbyUrl=server.url)
    async with python_peers(server, "py", lobby_reconnect_delay=0.05) as (py,):
        info = await py.host(game="browser-test")
        await tab.js("async (code) => { await window.mesh.join(code); }", info.code)
        await py.wait_for_peers(1, timeout=15)
        await tab.wait("() => window.mesh.peers.length === 1")
        server.stop()
        lobby_factory(port=port)  # a fresh lobby at the same address: it forgot everyone
        # both come back with new lobby ids and tell each other over the link ("alias")
        await tab.wait("() => window.mesh.lobbyClient.connected "
                       f"&& window.mesh.lobbyClient.peerId !== {tab.peer_id!r}", timeout=20)
        web_lobby_id = await tab.js("() => window.mesh.lobbyClient.peerId")
        await eventually(lambda: py.lobby_connected and py.lobby_peer_id != py.peer_id, 20)
        await eventually(lambda: py._remotes[tab.peer_id].lobby_id == web_lobby_id, 10)
        await tab.wait(f"() => window.mesh.remotes.get({py.peer_id!r}).lobbyId "
                       f"=== {py.lobby_peer_id!r}", timeout=10)
        # rejoin: the existing link is recognised on both sides, no second connection
        info = await py.host(game="browser-test")
        await tab.js("async (code) => { await window.mesh.join(code); }", info.code)
        await eventually(lambda: py.lobby is not None and len(py.lobby.members) == 2, 10)
        py.send_event("after the restart")
        await tab.wait_log("message", "e.body === 'after the restart'")
        assert await tab.peers() == [py.peer_id] and py.peers == [tab.peer_id]
        assert await tab.js("() => window.mesh.remotes.size") == 1 and len(py._remotes) == 1
        assert await tab.js("() => window.log.filter((e) => e.type === 'peerJoined').length") == 1
        assert not py._stream.peek(PeerLeft)
