"""Hostile clients against a real lobby (uvicorn on an ephemeral port, real websockets clients):
frames that once crashed the connection, per-address limits, floods, and the HTTP listing.

Clients from "other addresses" bind their side of the TCP connection to 127.0.0.2, 127.0.0.3, ...
(all of 127.0.0.0/8 is loopback), so the server sees distinct client IPs.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from netplay.protocol import MAX_REQUEST_ID, PROTOCOL_VERSION
from signaling.auth import mint_token
from signaling.lobby import MemoryBackend
from signaling.redis_backend import RedisBackend
from signaling.settings import Settings

BACKENDS = (MemoryBackend, RedisBackend)
"""Where a test plants a bug: both, since the lobby tests run on each backend."""

from conftest import WsClient

SECRET = "hostile-secret"
DEPTH = 20_000  # 40 KB of brackets: under max_message_bytes, far over any parser's recursion


@pytest.fixture
def server_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """Every record the lobby (and uvicorn) logs at INFO or above during the test."""
    caplog.set_level(logging.INFO)
    yield caplog
    for record in caplog.records:
        assert record.exc_info is None, f"traceback logged: {record.getMessage()}"
        assert "Traceback" not in record.getMessage()
        assert not record.name.startswith("uvicorn") or record.levelno < logging.ERROR, \
            record.getMessage()


@pytest.fixture
async def open_client() -> Any:
    """``await open_client(server, address="127.0.0.1", hello=False, name=..., **hello)``: a
    real WebSocket client whose side of the connection is bound to ``address``. All are closed
    after the test."""
    opened: list[WsClient] = []

    async def factory(server: Any, address: str = "127.0.0.1", *, hello: bool = False,
                      name: str = "p", **fields: Any) -> WsClient:
        ws = await ws_connect(server.url, open_timeout=10, max_size=None, max_queue=None,
                              ping_interval=None, local_addr=(address, 0))
        client = WsClient(ws)
        opened.append(client)
        if hello:
            reply = await client.hello(name, **fields)
            assert reply["type"] == "welcome", reply
        return client

    yield factory
    for client in opened:
        await client.ws.close()


async def closed_with(client: WsClient, timeout: float = 10.0) -> int | None:
    """Read until the server closes the connection; its close code."""
    try:
        async with asyncio.timeout(timeout):
            while True:
                await client.ws.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd else None


# --- frames that used to abort the connection with a traceback --------------------------------

NASTY = [
    '{"type": "ping", "id": 1, "t": ' + "[" * DEPTH + "]" * DEPTH + "}",
    "[" * DEPTH + "]" * DEPTH,
    '{"a":' * (DEPTH // 2) + "1" + "}" * (DEPTH // 2),
    '{"type": "ping", "id": %d}' % (MAX_REQUEST_ID + 1),
    '{"type": "ping", "id": %d}' % 2**64,
    '{"type": "ping", "id": 1%s}' % ("0" * 4000),
    '{"type": "ping", "id": -%d}' % 2**70,
    '{"type": "hello", "id": %d, "v": 1, "name": "x"}' % 2**63,
    '{"type": "hello", "v": %d, "name": "x", "surprise": 1}' % 2**90,
    '{"type": "host", "id": 3, "game": "g", "max_players": %d}' % 2**80,
    '{"type": "ping", "id": 1e400}',
    '{"type": "ping", "id": 5, "t": "\\ud800"}',
]


@pytest.mark.parametrize("frame", NASTY, ids=range(len(NASTY)))
async def test_nasty_frames_get_bad_message_and_the_connection_stays(
        open_client: Any, lobby: Any, server_log: Any, frame: str) -> None:
    client = await open_client(lobby)
    await client.send_raw(frame)
    error = await client.expect("error", code="bad_message")
    rid = error.get("id")
    assert rid is None or 0 <= rid <= MAX_REQUEST_ID
    assert (await client.request("ping"))["type"] == "pong"
    assert (await client.hello("after"))["type"] == "welcome"
    await client.close()


async def test_huge_float_time_in_ping_is_echoed_as_null(open_client: Any,
                                                        lobby: Any) -> None:
    client = await open_client(lobby)
    await client.send_raw('{"type": "ping", "id": 4, "t": 1e400}')
    assert await client.expect("pong", id=4) == {"type": "pong", "id": 4, "t": None}
    await client.close()


@pytest.mark.parametrize("token", ["tökén.sïg", "ключ", "a.b\u200b", "\U0001f600." * 10])
async def test_non_ascii_tokens_get_bad_token_and_close(
        open_client: Any, lobby_factory: Any, server_log: Any, token: str) -> None:
    server = lobby_factory(auth_secret=SECRET)
    client = await open_client(server)
    error = await client.hello("mallory", token=token)
    assert error["type"] == "error" and error["code"] == "bad_token", error
    assert await closed_with(client) == 1008


async def test_a_flood_of_bad_frames_is_closed_with_bounded_log(
        open_client: Any, lobby_factory: Any, server_log: Any) -> None:
    server = lobby_factory(max_strikes=5, hello_timeout=0.5)
    flooders = [await open_client(server, f"127.0.0.{10 + i}") for i in range(20)]

    async def flood(client: WsClient) -> int | None:
        for frame in NASTY * 3:
            try:
                await client.send_raw(frame)
            except ConnectionClosed:
                break
        return await closed_with(client)

    codes = await asyncio.gather(*(flood(c) for c in flooders))
    assert codes == [1008] * len(flooders)
    idle = [await open_client(server, "127.0.0.9") for _ in range(30)]  # never say hello
    assert [await closed_with(c) for c in idle] == [1008] * len(idle)
    lines = [r for r in server_log.records if r.name == "signaling"]
    # 20 strike-outs and 30 missed hellos: one line for each kind (rate-limited), not 50.
    assert 1 <= len(lines) <= 4, [r.getMessage() for r in lines]


async def test_a_server_bug_is_one_line_and_an_internal_error(
        open_client: Any,
        lobby_factory: Any, server_log: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Any, *args: Any, **kwargs: Any) -> Any:
        raise KeyError("planted bug")

    for backend in BACKENDS:  # whichever this run of the test uses
        monkeypatch.setattr(backend, "list_lobbies", broken)
    server = lobby_factory()
    client = await open_client(server, hello=True)
    for _ in range(30):
        error = await client.request("list")
        assert error["type"] == "error" and error["code"] == "internal"
    assert (await client.request("ping"))["type"] == "pong"
    errors = [r for r in server_log.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1, [r.getMessage() for r in errors]
    assert "planted bug" in errors[0].getMessage() and "in broken" in errors[0].getMessage()


async def test_a_backend_failing_on_disconnect_is_one_line_and_the_server_goes_on(
        open_client: Any, lobby_factory: Any, server_log: Any,
        monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("store unreachable")

    for backend in BACKENDS:  # whichever this run of the test uses
        monkeypatch.setattr(backend, "disconnect", broken)
    server = lobby_factory()
    for _ in range(5):
        client = await open_client(server, hello=True)
        await client.close()
    async with asyncio.timeout(10):
        while not any(r.levelno >= logging.ERROR for r in server_log.records):
            await asyncio.sleep(0.02)
    assert (await (await open_client(server, hello=True)).request("ping"))["type"] == "pong"
    errors = [r.getMessage() for r in server_log.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and "store unreachable" in errors[0], errors


# --- per-address limits -----------------------------------------------------------------------


async def test_1500_idle_connections_from_one_address_are_cut_at_the_limit(
        open_client: Any, lobby_factory: Any, server_log: Any) -> None:
    limit = Settings().max_connections_per_ip
    assert limit == 64  # the documented default
    server = lobby_factory(hello_timeout=120)  # they stay idle while the test looks at them
    address = "127.0.0.20"
    clients: list[WsClient] = []
    for _ in range(15):
        clients += await asyncio.gather(*(open_client(server, address) for _ in range(100)))

    async def refused(client: WsClient) -> bool:
        try:
            message = await client.recv(timeout=3)
        except TimeoutError:
            return False
        assert message["type"] == "error" and message["code"] == "rate_limited", message
        assert await closed_with(client) == 1013
        return True

    outcomes = await asyncio.gather(*(refused(c) for c in clients))
    admitted = [c for c, out in zip(clients, outcomes, strict=True) if not out]
    assert len(admitted) == limit
    assert httpx.get(server.http_url + "/healthz").json()["connections"] == limit
    # Another address is not affected, and a freed slot can be taken again.
    other = await open_client(server, "127.0.0.21", hello=True)
    await admitted[0].close()
    async with asyncio.timeout(10):
        while True:
            again = await open_client(server, address)
            try:
                await again.recv(timeout=0.3)
            except TimeoutError:
                break  # admitted: no refusal arrived
            await closed_with(again)
    assert (await again.hello("back"))["type"] == "welcome"
    for client in (*admitted[1:], other, again):
        await client.close()
    assert len([r for r in server_log.records if r.name == "signaling"]) <= 3


async def test_configured_connection_limit(open_client: Any, lobby_factory: Any) -> None:
    server = lobby_factory(max_connections_per_ip=3)
    kept = [await open_client(server, hello=True) for _ in range(3)]
    extra = await open_client(server)
    assert (await extra.expect("error", code="rate_limited"))["message"]
    assert await closed_with(extra) == 1013
    health = httpx.get(server.http_url + "/healthz").json()
    assert health["connections"] == 3
    for client in kept:
        assert (await client.request("ping"))["type"] == "pong"


async def test_hello_deadline(open_client: Any, lobby_factory: Any) -> None:
    server = lobby_factory(hello_timeout=0.5)
    silent = await open_client(server)
    pinger = await open_client(server)
    polite = await open_client(server, hello=True)

    async def keep_pinging() -> None:
        while True:
            await pinger.send(type="ping")
            await asyncio.sleep(0.1)

    task = asyncio.create_task(keep_pinging())
    error = await silent.expect("error", code="not_authenticated", timeout=10)
    assert "hello" in error["message"]
    assert await closed_with(silent) == 1008
    # Pings before hello do not extend the deadline.
    assert await closed_with(pinger) == 1008
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert (await polite.request("ping"))["type"] == "pong"


async def test_lobbies_hosted_per_address(open_client: Any, lobby_factory: Any) -> None:
    server = lobby_factory(max_lobbies_per_ip=2)
    hosts = [await open_client(server, "127.0.0.30", hello=True) for _ in range(4)]
    for host in hosts[:2]:
        assert (await host.request("host", game="g"))["type"] == "lobby"
    refused = await hosts[2].request("host", game="g")
    assert refused["type"] == "error" and refused["code"] == "too_many_lobbies"
    assert "address" in refused["message"]
    refused = await hosts[3].request("quick_match", game="other")
    assert refused["type"] == "error" and refused["code"] == "too_many_lobbies"
    # Another address may still host, and joining is not hosting.
    other = await open_client(server, "127.0.0.31", hello=True)
    code = (await other.request("host", game="g", public=False))["lobby"]["code"]
    assert (await hosts[2].request("join", code=code))["type"] == "lobby"
    # A host that leaves frees its slot; one that disconnects does too.
    assert (await hosts[0].request("leave"))["type"] == "ok"
    assert (await hosts[3].request("host", game="g"))["type"] == "lobby"
    await hosts[1].close()
    async with asyncio.timeout(10):
        while (reply := await hosts[0].request("host", game="g"))["type"] != "lobby":
            assert reply["code"] == "too_many_lobbies"
            await asyncio.sleep(0.05)


async def test_a_dropped_host_keeps_counting_for_its_resume_grace(
        open_client: Any, lobby_factory: Any) -> None:
    server = lobby_factory(max_lobbies_per_ip=1, resume_grace=30)
    host = await open_client(server, "127.0.0.32", hello=True)
    assert (await host.request("host", game="g"))["type"] == "lobby"
    host.ws.transport.abort()  # a dropped connection, not a close: the lobby waits for it
    second = await open_client(server, "127.0.0.32", hello=True)
    await asyncio.sleep(0.3)
    refused = await second.request("host", game="g")
    assert refused["type"] == "error" and refused["code"] == "too_many_lobbies"
    # The host resumes: still one lobby, still counted once.
    back = await open_client(server, "127.0.0.32", hello=True, resume=host.resume_token)
    assert back.welcome["resumed"] and back.welcome["lobby"]["host"] == back.peer_id
    assert (await back.request("leave"))["type"] == "ok"


async def test_password_guesser_is_throttled_the_same_way_for_any_code(
        open_client: Any,
        lobby_factory: Any) -> None:
    server = lobby_factory(password_attempts=5)
    owner = await open_client(server, "127.0.0.40", hello=True)
    code = (await owner.request("host", game="g", password="hunter2"))["lobby"]["code"]
    guesser = await open_client(server, "127.0.0.41", hello=True)
    for attempt in range(5):
        reply = await guesser.request("join", code=code, password=f"guess{attempt}")
        assert reply["code"] == "bad_password", reply
    throttled = [await guesser.request("join", code=code, password="guess5"),
                 await guesser.request("join", code=code, password="hunter2"),
                 await guesser.request("join", code="ZZZZZZ", password="x"),
                 await guesser.request("join", code="ZZZZZZ")]
    assert {r["code"] for r in throttled} == {"rate_limited"}
    assert len({r["message"] for r in throttled}) == 1  # nothing tells the codes apart
    # Unknown codes spend the same allowance (code guessing), and other addresses are free.
    prober = await open_client(server, "127.0.0.42", hello=True)
    for _ in range(5):
        assert (await prober.request("join", code="QQQQQQ"))["code"] == "lobby_not_found"
    assert (await prober.request("join", code=code, password="hunter2"))["code"] == "rate_limited"
    friend = await open_client(server, "127.0.0.43", hello=True)
    assert (await friend.request("join", code=code, password="hunter2"))["type"] == "lobby"


FLOODER = r"""
import asyncio, json, sys
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

async def main(url, address, count, version):
    clients = [await connect(url, local_addr=(address, 0), max_queue=None, ping_interval=None)
               for _ in range(count)]
    ids = []
    for i, ws in enumerate(clients):
        await ws.send(json.dumps({"type": "hello", "id": 1, "v": version, "name": f"f{i}"}))
        while (m := json.loads(await ws.recv()))["type"] != "welcome":
            pass
        ids.append(m["peer_id"])
        await ws.send(json.dumps({"type": "host", "id": 2, "game": "g", "public": False}
                                 if i == 0 else {"type": "join", "id": 2, "code": code}))
        while (m := json.loads(await ws.recv()))["type"] != "lobby":
            pass
        code = m["lobby"]["code"]
    print("ready", flush=True)

    async def flood(ws, target):
        frame = json.dumps({"type": "signal", "to": target,
                            "payload": {"kind": "candidate", "candidate": "x" * 500}})
        try:
            while True:
                await ws.send(frame)
                await asyncio.sleep(0)
        except ConnectionClosed as closed:
            return closed.rcvd.code if closed.rcvd else None

    codes = await asyncio.gather(*(flood(ws, ids[(i + 1) % count])
                                   for i, ws in enumerate(clients)))
    print(json.dumps(codes), flush=True)

asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])))
"""


async def test_flooders_are_shed_and_healthy_clients_keep_going(
        open_client: Any, lobby_factory: Any, server_log: Any) -> None:
    server = lobby_factory(rate=50, burst=50, max_strikes=10)
    healthy = [await open_client(server, "127.0.0.50", hello=True, name=f"h{i}")
               for i in range(4)]
    code = (await healthy[0].request("host", game="g", public=False))["lobby"]["code"]
    for i, client in enumerate(healthy[1:], start=1):
        assert (await client.request("join", code=code))["type"] == "lobby"
        for earlier in healthy[:i]:
            await earlier.expect("peer_joined")
    # Six flooders in another process (as another machine would be) send signals to each
    # other as fast as they can.
    flooders = await asyncio.create_subprocess_exec(
        sys.executable, "-c", FLOODER, server.url, "127.0.0.51", "6", str(PROTOCOL_VERSION),
        stdout=asyncio.subprocess.PIPE)
    try:
        assert flooders.stdout is not None
        assert (await asyncio.wait_for(flooders.stdout.readline(), 30)).strip() == b"ready"
        counts = {c.peer_id: 0 for c in healthy}
        for _ in range(20):  # each healthy member relays to the next one at 20 Hz for a second
            for i, client in enumerate(healthy):
                await client.send(type="signal", to=healthy[(i + 1) % 4].peer_id,
                                  payload={"kind": "candidate", "candidate": "ok"})
            await asyncio.sleep(0.05)
        for client in healthy:
            while counts[client.peer_id] < 20:
                message = await client.recv(timeout=20)
                assert message["type"] == "signal", message
                counts[client.peer_id] += 1
            assert (await client.request("ping"))["type"] == "pong"
        out = await asyncio.wait_for(flooders.stdout.readline(), 60)
        assert json.loads(out) == [1008] * 6  # each flooder struck out on rate_limited
    finally:
        if flooders.returncode is None:
            flooders.kill()
        await flooders.wait()
    strikes = [r for r in server_log.records if "too many bad messages" in r.getMessage()]
    assert 1 <= len(strikes) <= 2  # six strike-outs, one rate-limited warning line


# --- GET /lobbies: CORS and auth ----------------------------------------------------------------


def test_lobbies_cors_headers_follow_allowed_origins(lobby_factory: Any) -> None:
    server = lobby_factory(allowed_origins=("https://game.example",))
    url = server.http_url + "/lobbies"
    allowed = httpx.get(url, headers={"Origin": "https://game.example"})
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://game.example"
    other = httpx.get(url, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = httpx.options(url, headers={
        "Origin": "https://game.example", "Access-Control-Request-Method": "GET",
        "Access-Control-Request-Headers": "authorization"})
    assert preflight.status_code == 200
    assert "authorization" in preflight.headers["access-control-allow-headers"].lower()
    assert "GET" in preflight.headers["access-control-allow-methods"]


def test_lobbies_without_allowed_origins_has_no_cors_headers(lobby_factory: Any) -> None:
    server = lobby_factory()
    reply = httpx.get(server.http_url + "/lobbies", headers={"Origin": "https://a.example"})
    assert reply.status_code == 200 and "access-control-allow-origin" not in reply.headers
    star = lobby_factory(allowed_origins=("*",))
    reply = httpx.get(star.http_url + "/lobbies", headers={"Origin": "https://a.example"})
    assert reply.headers["access-control-allow-origin"] == "*"


def test_lobbies_needs_a_token_when_the_lobby_has_an_auth_secret(lobby_factory: Any) -> None:
    server = lobby_factory(auth_secret=SECRET, allowed_origins=("https://game.example",))
    url = server.http_url + "/lobbies"
    missing = httpx.get(url)
    assert missing.status_code == 401 and missing.json()["error"] == "not_authenticated"
    assert missing.headers["www-authenticate"] == "Bearer"
    for bad in ("forged.token", "ключ", mint_token("other", "p")):
        reply = httpx.get(url, headers={b"Authorization": f"Bearer {bad}".encode()})
        assert reply.status_code == 401 and reply.json()["error"] == "bad_token", bad
        reply = httpx.get(url, params={"token": bad})
        assert reply.status_code == 401 and reply.json()["error"] == "bad_token", bad
    token = mint_token(SECRET, "player-1", ttl=60)
    reply = httpx.get(url, headers={"Authorization": f"Bearer {token}",
                                    "Origin": "https://game.example"})
    assert reply.status_code == 200 and reply.json() == {"lobbies": []}
    assert reply.headers["access-control-allow-origin"] == "https://game.example"
    assert httpx.get(url, params={"token": token}).status_code == 200
    assert httpx.get(server.http_url + "/healthz").status_code == 200  # probes need no token
    open_lobby = lobby_factory()
    assert httpx.get(open_lobby.http_url + "/lobbies").status_code == 200


async def test_a_client_that_stops_reading_is_closed_and_the_others_keep_going(
        open_client: Any, lobby_factory: Any, server_log: Any) -> None:
    server = lobby_factory(rate=10_000, burst=10_000, resume_grace=0)
    stalled = WsClient(await ws_connect(server.url, max_queue=1, ping_interval=None))
    try:
        assert (await stalled.hello("stalled"))["type"] == "welcome"
        code = (await stalled.request("host", game="g", public=False))["lobby"]["code"]
        sender = await open_client(server, hello=True, name="sender")
        assert (await sender.request("join", code=code))["type"] == "lobby"
        # From here on the stalled client reads nothing: its TCP window fills, then the
        # lobby's queue for it (2 MiB), and the lobby closes it; nobody waits for its timeout.
        offer = {"kind": "offer", "sdp": "v=0\r\n" + "a" * 50_000}
        async with asyncio.timeout(20):  # well before its idle timeout (30 s)
            for _ in range(600):  # 30 MB: more than the socket buffers and the 2 MiB
                await sender.send(type="signal", to=stalled.peer_id, payload=offer)
            await sender.send(type="ping", id=99)
            seen = []
            while (message := await sender.recv(timeout=20))["type"] != "pong":
                seen.append(message)
        assert {"type": "peer_left", "peer_id": stalled.peer_id,
                "reason": "disconnected"} in seen
        assert {"type": "host_changed", "host": sender.peer_id} in seen
        others = [m for m in seen if m["type"] not in ("peer_left", "host_changed")]
        assert all(m["type"] == "error" and m["code"] == "unknown_peer" for m in others)
        assert any("too slow" in r.getMessage() for r in server_log.records)
    finally:
        stalled.ws.transport.abort()
        await stalled.ws.close()


def _fuzz_frames(count: int, seed: int) -> list[str]:
    """Mutations of valid requests: wrong types, huge and odd numbers, deep nesting, stray
    unicode and surrogates, truncation, unknown fields. Seeded, so a failure reproduces."""
    rng = random.Random(seed)
    base: list[dict[str, Any]] = [
        {"type": "hello", "v": PROTOCOL_VERSION, "name": "fuzz"},
        {"type": "host", "game": "g", "max_players": 4, "metadata": {"a": 1}},
        {"type": "join", "code": "ABCDEF", "password": "pw"},
        {"type": "quick_match", "game": "g", "filter": {"m": "x"}},
        {"type": "list", "game": "g"},
        {"type": "signal", "to": "nobody", "payload": {"kind": "candidate", "candidate": "c"}},
        {"type": "kick", "peer": "x"}, {"type": "lock"}, {"type": "set_metadata",
                                                          "metadata": {"k": "v"}},
        {"type": "ping", "t": 1.5}, {"type": "leave"},
    ]
    odd_values: list[Any] = [
        2**53 + 1, -(2**63), 10**30, 1e308, -0.0, True, None, "", "\u0000", "\ud800",
        "é" * 300, [], {}, [[[[[]]]]], "x" * 70_000, 0.1, "12",
    ]
    frames = []
    for _ in range(count):
        message = dict(rng.choice(base))
        roll = rng.random()
        if roll < 0.3:
            message[rng.choice([*message, "id", "extra"])] = rng.choice(odd_values)
        elif roll < 0.4:
            depth = rng.choice([100, 1_000, 20_000])
            key = rng.choice([*message, "id"])
            text = json.dumps(message)[:-1] + f', "{key}x": ' + "[" * depth + "]" * depth + "}"
            frames.append(text)
            continue
        elif roll < 0.5:
            message["type"] = rng.choice(["", "HELLO", "pong", "welcome", "error", 5, None])
        message["id"] = rng.choice([rng.randrange(2**53), rng.randrange(2**64), -1, "1"])
        text = json.dumps(message, ensure_ascii=rng.random() < 0.5)
        if not text.isascii() and any("\ud800" <= ch <= "\udfff" for ch in text):
            text = json.dumps(message)  # a lone surrogate travels escaped (text frames are UTF-8)
        if rng.random() < 0.1:
            text = text[:rng.randrange(len(text))]
        frames.append(text)
    return frames


async def test_fuzzed_frames_each_get_a_typed_answer_or_a_documented_close(
        lobby_factory: Any, server_log: Any) -> None:
    from netplay.protocol import parse_server

    server = lobby_factory(max_strikes=100_000, rate=100_000, burst=100_000)
    documented = {1000, 1001, 1007, 1008, 1009, 1011, 1013}
    client = WsClient(await ws_connect(server.url, max_size=None, ping_interval=None))
    closes: list[int | None] = []
    try:
        for i, frame in enumerate(_fuzz_frames(1_500, seed=11)):
            try:
                await client.send_raw(frame)
                await client.send(type="ping", id=10**6 + i)
                while (reply := await client.recv(timeout=10)).get("id") != 10**6 + i:
                    parse_server(json.dumps(reply))  # every answer is a valid server message
            except ConnectionClosed as closed:
                code = closed.rcvd.code if closed.rcvd else None
                assert code in documented, (code, frame[:200])
                closes.append(code)
                await client.ws.close()
                client = WsClient(await ws_connect(server.url, max_size=None,
                                                   ping_interval=None))
    finally:
        await client.ws.close()
    assert len(closes) < 300  # most frames are answered, not fatal
    assert httpx.get(server.http_url + "/healthz").status_code == 200
