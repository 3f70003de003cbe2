"""Bad input, limits and liveness against a real lobby server: every refusal has its own code."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import ConnectionClosed

from netplay.protocol import PROTOCOL_VERSION
from signaling.app import TokenBucket

OFFER = {"kind": "offer", "sdp": "v=0\r\n"}

MALFORMED: list[tuple[str | bytes, int | None]] = [
    ("{not json", None),
    ("[1, 2, 3]", None),
    ('"just a string"', None),
    ("{}", None),
    ('{"type": "teleport", "id": 5}', 5),
    ('{"type": "join", "id": 6}', 6),  # missing code
    ('{"type": "join", "id": 7, "code": 123}', 7),  # wrong type
    ('{"type": "host", "id": 8, "game": "g", "max_players": 99}', 8),  # out of range
    ('{"type": "host", "id": 9, "game": "g", "surprise": true}', 9),  # unknown field
    ('{"type": "signal", "id": 10, "to": "x", "payload": {"kind": "telepathy"}}', 10),
    ('{"type": "ping", "id": -1}', None),  # not a valid id: not echoed
    ('{"type": "ping", "id": "11"}', None),
    (b'{"type": "ping"}', None),  # binary frames are refused
]


async def lobby_state(client: Any) -> dict[str, Any]:
    """The lobby as ``client`` sees it now (a no-op metadata write by the host)."""
    listed = await client.request("list", game="test")
    return {x["code"]: x for x in listed["lobbies"]}


@pytest.mark.parametrize(("frame", "request_id"), MALFORMED)
async def test_malformed_messages_get_bad_message_and_the_connection_stays(
        lobby: Any, connect: Any, frame: str | bytes, request_id: int | None) -> None:
    client = await connect(lobby)
    await client.send_raw(frame)
    error = await client.expect("error", code="bad_message")
    assert error.get("id") == request_id
    assert error["message"]
    assert (await client.request("ping"))["type"] == "pong"


async def test_bad_message_changes_nothing(lobby: Any, members: Any) -> None:
    code, (host, guest) = await members(lobby, "h", "g")
    before = await lobby_state(host)
    for frame, _ in MALFORMED:
        await guest.send_raw(frame)
        await guest.expect("error", code="bad_message")
    await host.nothing()
    assert await lobby_state(host) == before


async def test_requests_before_hello_and_double_hello(lobby: Any, connect: Any) -> None:
    client = await connect(lobby, hello=False)
    error = await client.request("join", code="ABCDEF")
    assert error["code"] == "not_authenticated"
    assert (await client.request("ping"))["type"] == "pong"  # ping needs no hello
    assert (await client.hello("late"))["type"] == "welcome"
    again = await client.hello("again")
    assert again["type"] == "error" and again["code"] == "bad_message"


async def test_version_mismatch_names_both_versions_and_closes(lobby: Any,
                                                               connect: Any) -> None:
    client = await connect(lobby, hello=False)
    error = await client.hello("future", v=PROTOCOL_VERSION + 41)
    assert error["type"] == "error" and error["code"] == "unsupported_version"
    assert str(PROTOCOL_VERSION) in error["message"]
    assert str(PROTOCOL_VERSION + 41) in error["message"]
    await client.ws.wait_closed()
    assert client.ws.close_code == 1008


async def test_a_future_hello_with_new_fields_still_gets_unsupported_version(
        lobby: Any, connect: Any) -> None:
    client = await connect(lobby, hello=False)
    await client.send(type="hello", id=3, v=PROTOCOL_VERSION + 1, name="x", features=["zstd"])
    error = await client.expect("error", code="unsupported_version", id=3)
    assert f"version {PROTOCOL_VERSION + 1}" in error["message"]
    await client.ws.wait_closed()
    assert client.ws.close_code == 1008


@pytest.mark.parametrize("name", ["x" * 33, "   ", "tab\there", "bell\x07", "a\u202eb"])
async def test_bad_display_names(lobby: Any, connect: Any, name: str) -> None:
    client = await connect(lobby, hello=False)
    error = await client.hello(name)
    assert error["type"] == "error" and error["code"] == "bad_name"
    assert (await client.hello("fine name"))["type"] == "welcome"  # the connection stays


async def test_name_length_is_configurable(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(max_name_length=4)
    client = await connect(server, hello=False)
    assert (await client.hello("abcde"))["code"] == "bad_name"
    assert (await client.hello("abcd"))["type"] == "welcome"


async def test_oversized_message(lobby_factory: Any, members: Any) -> None:
    server = lobby_factory(max_message_bytes=1024)
    code, (a, b) = await members(server, "a", "b")
    huge = {"kind": "offer", "sdp": "é" * 600}  # 1,200 bytes of UTF-8 in 600 characters
    await a.send(type="signal", id=4, to=b.peer_id, payload=huge)
    await a.expect("error", code="too_large")
    await a.send_raw(b"\x00" * 2000)
    await a.expect("error", code="too_large")
    await b.nothing()
    await a.send(type="signal", to=b.peer_id, payload=OFFER)  # still connected
    await b.expect("signal")


async def test_default_size_limit_is_64_kib(lobby: Any, connect: Any) -> None:
    client = await connect(lobby)
    await client.send(type="ping", t=1.0, pad="x" * (64 * 1024))
    await client.expect("error", code="too_large")


def test_token_bucket_spends_bursts_and_refills_at_its_rate() -> None:
    now = [100.0]
    bucket = TokenBucket(rate=5, capacity=10, clock=lambda: now[0])
    assert [bucket.take() for _ in range(12)] == [True] * 10 + [False] * 2
    now[0] += 0.2  # one token back at 5 per second
    assert bucket.take() and not bucket.take()
    now[0] += 60  # never more than the capacity
    assert sum(bucket.take() for _ in range(20)) == 10


async def test_rate_limit(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(rate=5, burst=10, max_strikes=100)
    client = await connect(server)  # hello used one token
    for i in range(20):
        await client.send(type="ping", id=i)
    replies = [await client.recv() for _ in range(20)]
    pongs = [r for r in replies if r["type"] == "pong"]
    limited = [r for r in replies if r["type"] == "error"]
    # The burst (9 tokens left after hello) always passes; refills during the loop may add some.
    assert len(pongs) >= 9 and limited
    assert {r["code"] for r in limited} == {"rate_limited"}
    assert {r["id"] for r in limited} == set(range(20)) - {r["id"] for r in pongs}
    async with asyncio.timeout(10):  # the bucket refills at 5 per second
        while (reply := await client.request("ping"))["type"] != "pong":
            assert reply["code"] == "rate_limited"
            await asyncio.sleep(0.05)


async def test_repeated_abuse_closes_with_1008(lobby_factory: Any, members: Any) -> None:
    server = lobby_factory(max_strikes=5)
    code, (a, b) = await members(server, "a", "b")
    with pytest.raises(ConnectionClosed):
        for _ in range(50):
            await a.send_raw("garbage")
            await a.expect("error", code="bad_message")
    assert a.ws.close_code == 1008
    # Abuse forfeits the seat at once (no resume grace).
    await b.expect("peer_left", peer_id=a.peer_id, reason="disconnected")


async def test_a_thousand_malformed_messages(lobby_factory: Any, members: Any) -> None:
    server = lobby_factory(max_strikes=5000, rate=10_000, burst=5000)
    code, (x, y) = await members(server, "x", "y")
    before = await lobby_state(x)
    (_, (abuser,)) = await members(server, "abuser")
    frames = [frame for frame, _ in MALFORMED]
    for i in range(1000):
        await abuser.send_raw(frames[i % len(frames)])
    for _ in range(1000):
        await abuser.expect("error", code="bad_message")
    assert (await abuser.request("ping"))["type"] == "pong"  # still connected
    await x.nothing()
    await y.nothing()
    assert {k: v for k, v in (await lobby_state(x)).items() if k == code} == {
        k: v for k, v in before.items() if k == code}
    await x.send(type="signal", to=y.peer_id, payload=OFFER)
    assert (await y.expect("signal"))["from"] == x.peer_id
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        health = (await http.get("/healthz")).json()
    assert health["status"] == "ok" and health["lobbies"] == 2 and health["members"] == 3


async def test_a_thousand_malformed_messages_with_default_limits(
        lobby_factory: Any, connect: Any, members: Any) -> None:
    server = lobby_factory()
    code, (x, y) = await members(server, "x", "y")
    abuser = await connect(server, "abuser")
    errors = 0
    with pytest.raises(ConnectionClosed):
        for _ in range(1000):
            await abuser.send_raw("{bad")
        while True:
            await abuser.expect("error", code="bad_message")
            errors += 1
    assert abuser.ws.close_code == 1008
    assert errors <= 30  # closed after about max_strikes (20) errors
    await x.send(type="signal", to=y.peer_id, payload=OFFER)
    assert (await y.expect("signal"))["from"] == x.peer_id
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        assert (await http.get("/healthz")).json()["status"] == "ok"


async def test_too_many_lobbies(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(max_lobbies=1)
    a, b = await connect(server, "a"), await connect(server, "b")
    await a.request("host", game="g")
    assert (await b.request("host", game="g"))["code"] == "too_many_lobbies"
    assert (await b.request("quick_match", game="other"))["code"] == "too_many_lobbies"
    assert (await b.request("quick_match", game="g"))["type"] == "lobby"  # joins a's lobby


async def test_metadata_too_large(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(max_metadata_bytes=64)
    a = await connect(server, "a")
    big = {"description": "x" * 64}
    assert (await a.request("host", game="g", metadata=big))["code"] == "metadata_too_large"
    assert (await a.request("quick_match", game="g", filter=big))["code"] == \
        "metadata_too_large"
    await a.request("host", game="g", metadata={"ok": 1})
    assert (await a.request("set_metadata", metadata=big))["code"] == "metadata_too_large"


async def test_every_lobby_error_code_over_the_wire(lobby: Any, connect: Any, members: Any) -> None:
    code, (host, guest) = await members(lobby, "h", "g")
    outsider = await connect(lobby, "o")
    assert (await outsider.request("join", code="ZZZZZZ"))["code"] == "lobby_not_found"
    assert (await host.request("join", code=code))["code"] == "already_in_lobby"
    assert (await guest.request("kick", peer=host.peer_id))["code"] == "not_host"
    assert (await guest.request("lock"))["code"] == "not_host"
    assert (await outsider.request("leave"))["code"] == "not_in_lobby"
    assert (await outsider.request("unlock"))["code"] == "not_in_lobby"
    assert (await host.request("kick", peer=outsider.peer_id))["code"] == "unknown_peer"
    assert (await host.request("signal", to=outsider.peer_id, payload=OFFER))["code"] == \
        "unknown_peer"
    small_host = await connect(lobby, "s")
    private = (await small_host.request("host", game="g", max_players=2, password="pw",
                                        public=False))["lobby"]["code"]
    assert (await outsider.request("join", code=private))["code"] == "bad_password"
    assert (await outsider.request("join", code=private, password="nope"))["code"] == \
        "bad_password"
    assert (await outsider.request("join", code=private, password="pw"))["type"] == "lobby"
    assert (await guest.request("leave"))["type"] == "ok"
    assert (await guest.request("join", code=private, password="pw"))["code"] == "lobby_full"
    await host.expect("peer_left")


async def test_internal_errors_are_reported_and_survived(lobby_factory: Any, connect: Any,
                                                         monkeypatch: Any) -> None:
    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("boom")

    server = lobby_factory()
    monkeypatch.setattr(type(server.app.state.backend), "list_lobbies", broken)
    client = await connect(server)
    error = await client.request("list")
    assert error["code"] == "internal" and "boom" not in error["message"]
    assert (await client.request("ping"))["type"] == "pong"


async def test_idle_connections_are_dropped(lobby_factory: Any, members: Any) -> None:
    server = lobby_factory(idle_timeout=0.5, resume_grace=0)
    code, (talker, sleeper) = await members(server, "talker", "sleeper")

    async def keep_pinging() -> dict[str, Any]:
        while True:
            await talker.send(type="ping")
            message = await talker.recv()
            if message["type"] != "pong":
                return message
            await asyncio.sleep(0.1)

    left = await asyncio.wait_for(keep_pinging(), timeout=5)
    assert left == {"type": "peer_left", "peer_id": sleeper.peer_id, "reason": "timed_out"}
    await sleeper.ws.wait_closed()
    assert sleeper.ws.close_code == 1001


async def test_idle_timeout_then_resume(lobby_factory: Any, connect: Any, members: Any) -> None:
    server = lobby_factory(idle_timeout=0.3, resume_grace=5)
    code, (sleeper,) = await members(server, "sleeper")
    await sleeper.ws.wait_closed()
    back = await connect(server, hello=False)
    welcome = await back.hello("sleeper", resume=sleeper.resume_token)
    assert welcome["resumed"] and welcome["lobby"]["code"] == code


async def test_allowed_origins(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(allowed_origins=("https://game.example",))
    # Refused with a close frame a page can read (code 1008 and a reason), not an HTTP 403
    # that a browser reports only as a generic error.
    async with ws_connect(server.url, origin="https://evil.example") as refused:  # type: ignore[arg-type]
        with pytest.raises(ConnectionClosed) as closed:
            await refused.recv()
    assert closed.value.rcvd is not None
    assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "origin not allowed")
    async with ws_connect(server.url, origin="https://game.example") as ws:  # type: ignore[arg-type]
        await ws.send(json.dumps({"type": "ping", "id": 1}))
        assert json.loads(await ws.recv())["type"] == "pong"
    await connect(server)  # native clients send no Origin header


async def test_frames_beyond_the_transport_limit_close_with_1009(lobby_factory: Any,
                                                               connect: Any) -> None:
    server = lobby_factory(max_message_bytes=1024)
    assert server.settings.ws_max_size == 1 << 20
    client = await connect(server)
    await client.send(type="ping", pad="x" * 4096)  # over the app's limit: a polite error
    await client.expect("error", code="too_large")
    with pytest.raises(ConnectionClosed):
        await client.send_raw("x" * ((1 << 20) + 1))  # over uvicorn's: the socket closes
        await client.recv()
    assert client.ws.close_code == 1009
