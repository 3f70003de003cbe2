"""Several lobby instances sharing one real redis-server (``RedisBackend``), in this process.

Each instance is a real uvicorn lobby on its own port (tests/conftest.py); the instances of one
test share a Redis key prefix, as instances behind one load balancer share ``--redis-url``.
Clients speak the raw protocol over real WebSockets. The suite in test_lobby_*.py already runs
every single-instance behaviour against Redis; these tests cross instances.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import httpx
import pytest
from conftest import LobbyServer, unique_prefix

from signaling.__main__ import settings_from_args
from signaling.settings import Settings

pytestmark = pytest.mark.timeout(120)

OFFER = {"kind": "offer", "sdp": "v=0"}


@pytest.fixture
def instances(redis_server: Any) -> Any:
    """``instances(n, **settings)``: n lobby instances on one Redis and one key prefix."""
    started: list[LobbyServer] = []

    def start(n: int, **overrides: Any) -> list[LobbyServer]:
        settings = Settings(redis_url=redis_server.url, redis_prefix=unique_prefix(),
                            **overrides)
        made = [LobbyServer(settings).start() for _ in range(n)]
        started.extend(made)
        return made

    yield start
    for server in started:
        server.stop()


async def healthz(server: LobbyServer) -> httpx.Response:
    async with httpx.AsyncClient(base_url=server.http_url) as http:
        return await http.get("/healthz")


async def test_host_on_one_instance_join_and_signal_through_another(
        instances: Any, connect: Any) -> None:
    one, two = instances(2)
    ann = await connect(one, "ann")
    bob = await connect(two, "bob")
    code = (await ann.request("host", game="cross", metadata={"map": "dust"}))["lobby"]["code"]
    async with httpx.AsyncClient(base_url=two.http_url) as http:  # listed on the other one
        listed = (await http.get("/lobbies", params={"game": "cross"})).json()["lobbies"]
    assert [(x["code"], x["host_name"]) for x in listed] == [(code, "ann")]

    joined = await bob.request("join", code=code.lower())
    assert joined["type"] == "lobby"
    assert [m["id"] for m in joined["lobby"]["members"]] == [ann.peer_id, bob.peer_id]
    await ann.expect("peer_joined", peer={"id": bob.peer_id, "name": "bob", "seq": 1})

    assert (await ann.request("signal", to=bob.peer_id, payload=OFFER))["type"] == "ok"
    relayed = await bob.expect("signal")
    assert relayed["from"] == ann.peer_id and relayed["payload"]["sdp"] == "v=0"
    await bob.send(type="signal", to=ann.peer_id,
                   payload={"kind": "answer", "sdp": "v=1", "attempt": 0})
    assert (await ann.expect("signal"))["from"] == bob.peer_id

    locked = await ann.request("lock")
    assert locked["lobby"]["locked"] is True
    assert (await bob.expect("lobby"))["lobby"]["locked"] is True
    carol = await connect(two, "carol")
    assert (await carol.request("join", code=code))["code"] == "lobby_locked"

    assert (await ann.request("leave"))["type"] == "ok"
    await bob.expect("peer_left", peer_id=ann.peer_id, reason="left")
    await bob.expect("host_changed", host=bob.peer_id)
    counts = (await healthz(one)).json()
    assert (counts["status"], counts["lobbies"], counts["members"]) == ("ok", 1, 1)


async def test_twenty_client_quick_match_race_over_three_instances(
        instances: Any, connect: Any) -> None:
    servers = instances(3)
    clients = [await connect(servers[i % 3], f"r{i}") for i in range(20)]
    replies = await asyncio.gather(*(
        c.request("quick_match", game="race", max_players=6) for c in clients))
    sizes = Counter(reply["lobby"]["code"] for reply in replies if reply["type"] == "lobby")
    assert sum(sizes.values()) == 20
    assert sorted(sizes.values()) == [2, 6, 6, 6]  # filled in order, none over max


async def test_twenty_joins_of_one_code_over_three_instances_fill_it_exactly(
        instances: Any, connect: Any) -> None:
    servers = instances(3)
    host = await connect(servers[0], "host")
    code = (await host.request("host", game="joins", max_players=8))["lobby"]["code"]
    clients = [await connect(servers[i % 3], f"j{i}") for i in range(20)]
    replies = await asyncio.gather(*(c.request("join", code=code) for c in clients))
    outcome = Counter(r["type"] if r["type"] == "lobby" else r["code"] for r in replies)
    assert outcome == {"lobby": 7, "lobby_full": 13}
    seqs = [(await host.expect("peer_joined"))["peer"]["seq"] for _ in range(7)]
    assert seqs == list(range(1, 8))  # every join seen once, in commit order
    await host.nothing()


async def test_sixteen_quick_matches_over_three_instances_meet_in_one_lobby(
        instances: Any, connect: Any) -> None:
    servers = instances(3)
    clients = [await connect(servers[i % 3], f"q{i}") for i in range(16)]
    replies = await asyncio.gather(*(
        c.request("quick_match", game="meet", max_players=16) for c in clients))
    assert {reply["lobby"]["code"] for reply in replies} == {replies[0]["lobby"]["code"]}
    # Every member learns of every later one, whichever instance it came through.
    final = max(replies, key=lambda r: len(r["lobby"]["members"]))["lobby"]["members"]
    assert sorted(m["seq"] for m in final) == list(range(16))
    for client in clients:  # leave, reading every event (a client that reads nothing
        await client.send(type="leave", id=99)  # cannot finish its close handshake)
        while (await client.recv())["type"] != "ok":
            pass


async def test_the_lobby_limit_holds_across_instances(instances: Any, connect: Any) -> None:
    servers = instances(2, max_lobbies=3)
    clients = [await connect(servers[i % 2], f"h{i}") for i in range(8)]
    replies = await asyncio.gather(*(c.request("host", game="limit") for c in clients))
    assert Counter(r["type"] if r["type"] == "lobby" else r["code"] for r in replies) == {
        "lobby": 3, "too_many_lobbies": 5}


async def test_resume_on_another_instance_keeps_seat_and_held_signals(
        instances: Any, connect: Any, members: Any) -> None:
    one, two = instances(2, resume_grace=10)
    code, (ann, bob) = await members(one, "ann", "bob")
    bob.ws.transport.abort()  # as if its instance or network died: no close frame
    async with httpx.AsyncClient(base_url=one.http_url) as http, asyncio.timeout(10):
        while (await http.get("/healthz")).json()["suspended"] != 1:
            await asyncio.sleep(0.02)
    await ann.send(type="signal", to=bob.peer_id, payload=OFFER)  # held in Redis for bob
    back = await connect(two, "bob", hello=False)
    welcome = await back.hello("bob", resume=bob.resume_token)
    assert welcome["resumed"] is True and welcome["peer_id"] == bob.peer_id
    assert welcome["lobby"]["code"] == code
    assert (await back.expect("signal"))["from"] == ann.peer_id
    await back.send(type="signal", to=ann.peer_id, payload=OFFER)
    assert (await ann.expect("signal"))["from"] == bob.peer_id
    await ann.nothing()  # ann never saw bob go


async def test_resume_on_another_instance_closes_the_old_connection(
        instances: Any, connect: Any, members: Any) -> None:
    one, two = instances(2)
    _, (ann, bob) = await members(one, "ann", "bob")
    twin = await connect(two, "bob", hello=False)
    welcome = await twin.hello("bob", resume=bob.resume_token)
    assert welcome["resumed"] and welcome["peer_id"] == bob.peer_id
    async with asyncio.timeout(10):
        await bob.ws.wait_closed()
    assert (bob.ws.close_code, bob.ws.close_reason) == (1008, "resumed elsewhere")
    await ann.send(type="signal", to=bob.peer_id, payload=OFFER)
    assert (await twin.expect("signal"))["from"] == ann.peer_id
    await ann.nothing()  # the move is invisible to the others: no peer_left
    assert (await healthz(one)).json()["peers"] == 1  # only ann is attached there now


async def test_dropped_host_hands_on_to_a_member_on_another_instance(
        instances: Any, connect: Any) -> None:
    one, two = instances(2, resume_grace=30)
    ann = await connect(one, "ann")
    code = (await ann.request("host", game="migrate"))["lobby"]["code"]
    bob, carol = await connect(two, "bob"), await connect(one, "carol")
    for joiner in (bob, carol):
        assert (await joiner.request("join", code=code))["type"] == "lobby"
    await bob.expect("peer_joined", peer={"id": carol.peer_id, "name": "carol", "seq": 2})
    ann.ws.transport.abort()  # as after kill -9 of ann's game: no close frame
    for other in (bob, carol):  # after the 1.5 s host grace, long before the 30 s grace
        await other.expect("host_changed", timeout=5, host=bob.peer_id)
    assert (await bob.request("lock"))["type"] == "lobby"  # bob hosts now, on instance two


async def test_redis_restart_reports_unavailable_then_recovers_with_lobbies(
        redis_factory: Any, connect: Any) -> None:
    redis = redis_factory(persistent=True)  # appendonly: a restart keeps the lobbies
    settings = Settings(redis_url=redis.url, redis_prefix=unique_prefix())
    one, two = LobbyServer(settings).start(), LobbyServer(settings).start()
    try:
        ann, bob = await connect(one, "ann"), await connect(two, "bob")
        code = (await ann.request("host", game="outage"))["lobby"]["code"]
        assert (await bob.request("join", code=code))["type"] == "lobby"
        await ann.expect("peer_joined")

        redis.stop()
        for server in (one, two):
            async with asyncio.timeout(20):
                while (reply := await healthz(server)).status_code != 503:
                    await asyncio.sleep(0.05)
            body = reply.json()
            assert body["status"] == "unavailable" and "redis" in body["reason"], body
        error = await ann.request("list")  # a typed error; the connection stays
        assert error["type"] == "error" and error["code"] == "internal"
        assert "Redis" in error["message"]
        async with httpx.AsyncClient(base_url=one.http_url) as http:
            listing = await http.get("/lobbies")
        assert listing.status_code == 503 and listing.json()["error"] == "internal"

        redis.start()
        for server in (one, two):
            async with asyncio.timeout(30):
                while (reply := await healthz(server)).status_code != 200:
                    await asyncio.sleep(0.05)
            assert server.thread.is_alive()
        # The lobby with live members survived, and relaying across instances works again.
        assert [x["code"] for x in (await ann.request("list", game="outage"))["lobbies"]] \
            == [code]
        await ann.send(type="signal", to=bob.peer_id, payload=OFFER)
        assert (await bob.expect("signal", timeout=10))["from"] == ann.peer_id
        carol = await connect(one, "carol")
        assert (await carol.request("join", code=code))["type"] == "lobby"
        for member in (ann, bob):
            assert (await member.expect("peer_joined"))["peer"]["name"] == "carol"
    finally:
        one.stop()
        two.stop()


async def test_redis_restarted_without_persistence_closes_lost_sessions(
        redis_factory: Any, connect: Any) -> None:
    redis = redis_factory(persistent=False)  # a restart forgets everything
    server = LobbyServer(Settings(redis_url=redis.url, redis_prefix=unique_prefix())).start()
    try:
        ann = await connect(server, "ann")
        await ann.request("host", game="forgotten")
        redis.stop()
        redis.start()
        # The instance finds ann's session gone and closes the connection with 1012, so the
        # client knows to start a new session (its resume token is unknown now).
        async with asyncio.timeout(30):
            await ann.ws.wait_closed()
        assert (ann.ws.close_code, ann.ws.close_reason) == (1012, "session lost")
        again = await connect(server, "ann", hello=False)
        welcome = await again.hello("ann", resume=ann.resume_token)
        assert welcome["type"] == "welcome" and welcome["resumed"] is False
        assert (await again.request("host", game="forgotten"))["type"] == "lobby"
        assert (await healthz(server)).status_code == 200
    finally:
        server.stop()


async def test_healthz_names_the_reason_when_redis_is_down_from_the_start(
        redis_factory: Any) -> None:
    redis = redis_factory()
    redis.stop()  # the URL of a Redis that is not running
    server = LobbyServer(Settings(redis_url=redis.url, redis_prefix=unique_prefix())).start()
    try:
        reply = await healthz(server)
        assert reply.status_code == 503
        assert reply.json()["status"] == "unavailable" and "redis" in reply.json()["reason"]
        redis.start()
        async with asyncio.timeout(30):
            while (await healthz(server)).status_code != 200:
                await asyncio.sleep(0.05)
    finally:
        server.stop()


def test_workers_setting_needs_redis() -> None:
    with pytest.raises(ValueError, match="workers=2 needs redis_url"):
        Settings(workers=2)
    assert Settings(workers=2, redis_url="redis://127.0.0.1:1/0").workers == 2


def test_redis_url_from_the_command_line_or_the_environment() -> None:
    url = "redis://127.0.0.1:6390/2"
    cli = settings_from_args(["--redis-url", url, "--workers", "3", "--redis-prefix", "g:"],
                             environ={})
    assert (cli.redis_url, cli.workers, cli.redis_prefix) == (url, 3, "g:")
    env = settings_from_args([], environ={"NETPLAY_LOBBY_REDIS_URL": url})
    assert (env.redis_url, env.workers, env.redis_prefix) == (url, 1, "netplay:")
    assert settings_from_args([], environ={}).redis_url is None  # memory: the default
