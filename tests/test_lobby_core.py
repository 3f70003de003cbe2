"""The lobby core (signaling.backend's interface) on its own: no server, no WebSockets.

Every test runs against both backends: ``MemoryBackend``, and ``RedisBackend`` on a real
redis-server (tests/conftest.py). Both take the same injected clock, so grace periods and host
hand-offs are stepped, not waited for.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from conftest import unique_prefix
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from netplay.protocol import (
    ErrorCode,
    Host,
    Join,
    QuickMatch,
    Signal,
    parse_server,
)
from signaling.backend import (
    CODE_ALPHABET,
    HOST_GRACE,
    Backend,
    LobbyError,
    check_metadata,
    check_name,
    normalize_code,
)
from signaling.memory import MemoryBackend
from signaling.redis_backend import RedisBackend

OFFER = {"kind": "offer", "sdp": "v=0"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Peer:
    """A registered peer and everything the backend delivered to it."""

    def __init__(self, backend: Backend, name: str) -> None:
        self.backend = backend
        self.name = name
        self.inbox: list[dict[str, Any]] = []
        self.id = ""
        self.token = ""

    def deliver(self, frame: str) -> None:
        parse_server(frame)  # everything the core sends is a valid server message
        self.inbox.append(json.loads(frame))

    def take(self) -> list[dict[str, Any]]:
        inbox, self.inbox = self.inbox, []
        return inbox

    def types(self) -> list[str]:
        return [m["type"] for m in self.take()]


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def make_backend(backend_kind: str, clock: Clock, request: pytest.FixtureRequest) -> Any:
    """``await make_backend(**options)``: a backend of this test's kind on the test clock."""
    made: list[Backend] = []

    async def make(**options: Any) -> Backend:
        options.setdefault("clock", clock)
        backend: Backend
        if backend_kind == "memory":
            backend = MemoryBackend(**options)
        else:
            url = request.getfixturevalue("redis_server").url
            backend = RedisBackend(url, prefix=unique_prefix(), **options)
        await backend.start()
        made.append(backend)
        return backend

    yield make
    for backend in made:
        await backend.close()


@pytest.fixture
async def backend(make_backend: Any) -> Backend:
    return await make_backend(max_lobbies=50, max_metadata_bytes=200)  # type: ignore[no-any-return]


@pytest.fixture
def peers(backend: Backend) -> Any:
    async def make(*names: str) -> list[Peer]:
        made = []
        for name in names:
            peer = Peer(backend, name)
            session = await backend.connect(name, peer.deliver)
            peer.id, peer.token = session.peer_id, session.resume_token
            made.append(peer)
        return made
    return make


async def host(backend: Backend, peer: Peer, **fields: Any) -> str:
    fields.setdefault("game", "g")
    info = await backend.host(peer.id, Host(**fields))
    peer.take()
    return info.code


async def refused(code: ErrorCode, coro: Any) -> LobbyError:
    with pytest.raises(LobbyError) as caught:
        await coro
    assert caught.value.code == code, caught.value
    return caught.value


def test_codes_are_normalized() -> None:
    assert normalize_code(" ab-c 23x ") == "ABC23X"


def test_name_checks() -> None:
    assert check_name("  Ann  ", 10) == "Ann"
    assert check_name("Zoë 🎮", 10) == "Zoë 🎮"
    for bad in ("", "   ", "a\nb", "a\tb", "x\x00", "\u200bzero-width", "a" * 11):
        with pytest.raises(LobbyError) as caught:
            check_name(bad, 10)
        assert caught.value.code == ErrorCode.BAD_NAME


def test_metadata_size() -> None:
    check_metadata({"k": "v" * 10}, 20)
    with pytest.raises(LobbyError) as caught:
        check_metadata({"k": "v" * 20}, 20)
    assert caught.value.code == ErrorCode.METADATA_TOO_LARGE


async def test_lobby_codes_are_short_unique_and_unambiguous(backend: Backend,
                                                            peers: Any) -> None:
    codes = [await host(backend, p) for p in await peers(*[f"p{i}" for i in range(50)])]
    assert len(set(codes)) == 50
    for code in codes:
        assert re.fullmatch(f"[{CODE_ALPHABET}]{{6}}", code)
    assert not set("01ILO") & set(CODE_ALPHABET)


async def test_a_code_already_in_use_is_never_handed_out_again(
        backend: Backend, peers: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = await peers("a", "b")
    taken = await host(backend, a)
    # The random draw repeats the open lobby's code first; the core must draw again.
    import signaling.backend as lobby_module

    real_choice = lobby_module.secrets.choice
    repeated = iter(taken)
    drawn: list[str] = []

    def choice(alphabet: str) -> str:
        pick = next(repeated, None) or real_choice(alphabet)
        drawn.append(pick)
        return pick

    monkeypatch.setattr(lobby_module.secrets, "choice", choice)
    fresh = await host(backend, b)
    assert "".join(drawn[:6]) == taken and len(drawn) >= 12  # the collision was drawn, then more
    assert fresh != taken and re.fullmatch(f"[{CODE_ALPHABET}]{{6}}", fresh)


async def test_join_order_seq_and_host_migration(backend: Backend, peers: Any) -> None:
    a, b, c, d = await peers("a", "b", "c", "d")
    code = await host(backend, a)
    for p in (b, c, d):
        await backend.join(p.id, Join(code=code))
    for p in (b, c, d):
        p.take()
    a.take()
    await backend.leave(a.id)
    for p in (b, c, d):
        assert [(m["type"], m.get("peer_id"), m.get("host")) for m in p.take()] == [
            ("peer_left", a.id, None), ("host_changed", None, b.id)]
    # A rejoin gets a new, later seq; the earliest remaining member (c) is next in line.
    await backend.join(a.id, Join(code=code))
    a.take()
    await backend.leave(b.id)
    assert [m.get("host") for m in a.take() if m["type"] == "host_changed"] == [c.id]
    await backend.leave(c.id)
    assert [m.get("host") for m in a.take() if m["type"] == "host_changed"] == [d.id]


async def test_lobby_closes_when_last_member_leaves(backend: Backend, peers: Any) -> None:
    a, b = await peers("a", "b")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    await backend.leave(a.id)
    await backend.leave(b.id)
    assert (await backend.stats())["lobbies"] == 0
    await refused(ErrorCode.LOBBY_NOT_FOUND, backend.join(a.id, Join(code=code)))


async def test_join_refusals_change_nothing(backend: Backend, peers: Any) -> None:
    a, b, c, d = await peers("a", "b", "c", "d")
    code = await host(backend, a, max_players=2, password="pw")
    await refused(ErrorCode.LOBBY_NOT_FOUND, backend.join(b.id, Join(code="ZZZZZZ")))
    await refused(ErrorCode.BAD_PASSWORD, backend.join(b.id, Join(code=code)))
    await refused(ErrorCode.BAD_PASSWORD, backend.join(b.id, Join(code=code, password="PW")))
    await backend.join(b.id, Join(code=code, password="pw"))
    await refused(ErrorCode.LOBBY_FULL, backend.join(c.id, Join(code=code, password="pw")))
    await refused(ErrorCode.ALREADY_IN_LOBBY, backend.join(b.id, Join(code=code, password="pw")))
    await refused(ErrorCode.ALREADY_IN_LOBBY, backend.host(b.id, Host(game="g")))
    await backend.leave(b.id)
    await backend.set_locked(a.id, True)
    await refused(ErrorCode.LOBBY_LOCKED, backend.join(c.id, Join(code=code, password="pw")))
    await backend.set_locked(a.id, False)
    await backend.join(d.id, Join(code=code, password="pw"))
    assert (await backend.stats())["members"] == 2


async def test_host_only_requests(backend: Backend, peers: Any) -> None:
    a, b, c = await peers("a", "b", "c")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    await refused(ErrorCode.NOT_HOST, backend.kick(b.id, a.id))
    await refused(ErrorCode.NOT_HOST, backend.set_locked(b.id, True))
    await refused(ErrorCode.NOT_HOST, backend.set_metadata(b.id, {}))
    await refused(ErrorCode.NOT_IN_LOBBY, backend.kick(c.id, a.id))
    await refused(ErrorCode.NOT_IN_LOBBY, backend.leave(c.id))
    await refused(ErrorCode.UNKNOWN_PEER, backend.kick(a.id, c.id))
    await refused(ErrorCode.UNKNOWN_PEER, backend.kick(a.id, a.id))
    await refused(ErrorCode.METADATA_TOO_LARGE, backend.set_metadata(a.id, {"x": "y" * 300}))
    a.take()
    b.take()
    info = await backend.set_metadata(a.id, {"mode": "ctf"}, request_id=7)
    assert info.metadata == {"mode": "ctf"}
    assert a.take() == [{"type": "lobby", "id": 7, "lobby": info.model_dump(mode="json")}]
    assert b.take() == [{"type": "lobby", "lobby": info.model_dump(mode="json")}]


async def test_kick(backend: Backend, peers: Any) -> None:
    a, b, c = await peers("a", "b", "c")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    await backend.join(c.id, Join(code=code))
    for p in (a, b, c):
        p.take()
    await backend.kick(a.id, b.id, request_id=3)
    assert b.take() == [{"type": "peer_left", "peer_id": b.id, "reason": "kicked"}]
    assert c.take() == [{"type": "peer_left", "peer_id": b.id, "reason": "kicked"}]
    assert a.take() == [{"type": "peer_left", "peer_id": b.id, "reason": "kicked"},
                        {"type": "ok", "id": 3}]
    await refused(ErrorCode.NOT_IN_LOBBY, backend.relay(b.id, Signal(to=a.id, payload=OFFER)))
    await backend.join(b.id, Join(code=code))  # a kicked peer may come back unless locked


async def test_relay_only_within_the_lobby(backend: Backend, peers: Any) -> None:
    a, b, c, d = await peers("a", "b", "c", "d")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    await host(backend, c)
    for p in (a, b, c):
        p.take()
    await backend.relay(a.id, Signal(to=b.id, payload=OFFER))
    assert b.take() == [{"type": "signal", "from": a.id,
                         "payload": {"kind": "offer", "sdp": "v=0", "attempt": 0}}]
    await refused(ErrorCode.UNKNOWN_PEER, backend.relay(a.id, Signal(to=c.id, payload=OFFER)))
    await refused(ErrorCode.UNKNOWN_PEER, backend.relay(a.id, Signal(to=a.id, payload=OFFER)))
    await refused(ErrorCode.UNKNOWN_PEER, backend.relay(a.id, Signal(to="nobody", payload=OFFER)))
    await refused(ErrorCode.NOT_IN_LOBBY, backend.relay(d.id, Signal(to=a.id, payload=OFFER)))
    assert c.take() == [] and a.take() == []


async def test_quick_match_prefers_fullest_matching_lobby(backend: Backend,
                                                          peers: Any) -> None:
    ps = await peers(*"abcdefgh")
    small = await host(backend, ps[0], game="g", game_version="1", metadata={"mode": "ffa"})
    big = await host(backend, ps[1], game="g", game_version="1", metadata={"mode": "ffa"})
    await backend.join(ps[2].id, Join(code=big))
    await host(backend, ps[3], game="g", game_version="2", metadata={"mode": "ffa"})  # version
    await host(backend, ps[4], game="g", game_version="1", public=False, metadata={"mode": "ffa"})
    await host(backend, ps[5], game="g", game_version="1", password="x", metadata={"mode": "ffa"})
    info = await backend.quick_match(ps[6].id, QuickMatch(game="g", game_version="1",
                                                          filter={"mode": "ffa"}))
    assert info.code == big
    info = await backend.quick_match(ps[7].id, QuickMatch(game="g", game_version="1",
                                                          filter={"mode": "ctf"}))
    assert info.code not in (small, big) and info.metadata == {"mode": "ctf"}
    assert info.host == ps[7].id and info.public


async def test_concurrent_quick_matches_fill_lobbies_exactly(backend: Backend,
                                                             peers: Any) -> None:
    ps = await peers(*[f"p{i}" for i in range(23)])
    infos = await asyncio.gather(*(
        backend.quick_match(p.id, QuickMatch(game="race", max_players=4)) for p in ps))
    sizes = sorted((await backend.list_lobbies("race")), key=lambda s: s.code)
    assert [s.players for s in sizes] == [3]  # only the non-full lobby is listed
    assert len({i.code for i in infos}) == 6  # 5 full lobbies of 4 + one of 3


async def test_list_lobbies(backend: Backend, peers: Any) -> None:
    a, b, c, d, e = await peers(*"abcde")
    one = await host(backend, a, game="g", metadata={"m": 1})
    two = await host(backend, b, game="g", metadata={"m": 2}, max_players=2)
    await backend.join(c.id, Join(code=one))
    await host(backend, d, game="other")
    assert [s.code for s in await backend.list_lobbies("g")] == [one, two]  # fullest first
    assert [s.code for s in await backend.list_lobbies("g", {"m": 2})] == [two]
    assert len(await backend.list_lobbies()) == 3
    await backend.join(e.id, Join(code=two))  # now full: not listed
    assert [s.code for s in await backend.list_lobbies("g")] == [one]
    summary = (await backend.list_lobbies("g"))[0]
    assert (summary.players, summary.host_name, summary.has_password) == (2, "a", False)


async def test_too_many_lobbies(make_backend: Any) -> None:
    backend = await make_backend(max_lobbies=2)
    made = []
    for name in "abc":
        p = Peer(backend, name)
        p.id = (await backend.connect(name, p.deliver)).peer_id
        made.append(p)
    await backend.host(made[0].id, Host(game="g"))
    await backend.quick_match(made[1].id, QuickMatch(game="h"))
    await refused(ErrorCode.TOO_MANY_LOBBIES, backend.host(made[2].id, Host(game="g")))
    await refused(ErrorCode.TOO_MANY_LOBBIES, backend.quick_match(made[2].id,
                                                                  QuickMatch(game="x")))


async def test_resume_within_grace_keeps_id_and_seat(backend: Backend, peers: Any,
                                                     clock: Clock) -> None:
    a, b = await peers("a", "b")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    a.take()
    b.take()
    await backend.disconnect(b.id, "disconnected", grace=5)
    await backend.relay(a.id, Signal(to=b.id, payload=OFFER))  # held for b
    clock.now += 4
    await backend.expire()
    assert a.take() == []  # the others see nothing while b may come back
    again = Peer(backend, "b")
    session = await backend.resume(b.token, again.deliver)
    assert session is not None and session.resumed
    assert session.peer_id == b.id and session.resume_token != b.token
    assert session.lobby is not None and session.lobby.code == code
    assert [json.loads(f)["from"] for f in session.backlog] == [a.id]
    assert await backend.resume(b.token, again.deliver) is None  # tokens are single-use
    await backend.relay(a.id, Signal(to=b.id, payload=OFFER))
    assert again.types() == ["signal"]


async def test_grace_expiry_announces_peer_left(backend: Backend, peers: Any,
                                                clock: Clock) -> None:
    a, b = await peers("a", "b")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    b.take()
    await backend.disconnect(a.id, "timed_out", grace=5)
    clock.now += HOST_GRACE
    await backend.expire()
    assert b.take() == [{"type": "host_changed", "host": b.id}]  # long before the grace ends
    clock.now += 5 - HOST_GRACE
    await backend.expire()
    assert b.take() == [{"type": "peer_left", "peer_id": a.id, "reason": "timed_out"}]
    assert await backend.resume(a.token, a.deliver) is None
    assert (await backend.stats()) == {"lobbies": 1, "peers": 1, "suspended": 0, "members": 1}


async def test_dropped_host_hands_on_at_once_and_resumes_as_a_member(
        backend: Backend, peers: Any, clock: Clock) -> None:
    a, b, c = await peers("a", "b", "c")
    code = await host(backend, a)
    for p in (b, c):
        await backend.join(p.id, Join(code=code))
    for p in (a, b, c):
        p.take()
    await backend.disconnect(a.id, "disconnected", grace=5)
    clock.now += HOST_GRACE - 0.1
    await backend.expire()
    assert b.take() == c.take() == []  # a may still come back as the host
    clock.now += 0.1
    await backend.expire()
    for p in (b, c):  # no peer_left: a keeps its seat for the grace period
        assert p.take() == [{"type": "host_changed", "host": b.id}]
    await refused(ErrorCode.NOT_HOST, backend.set_locked(a.id, True))
    clock.now += 2
    again = Peer(backend, "a")
    session = await backend.resume(a.token, again.deliver)
    assert session is not None and session.lobby is not None
    assert session.lobby.host == b.id
    assert [m.id for m in session.lobby.members] == [a.id, b.id, c.id]
    assert b.take() == c.take() == []  # a came back as an ordinary member: nothing changes
    await backend.disconnect(b.id, "disconnected", grace=5)  # a is the earliest connected
    clock.now += HOST_GRACE
    await backend.expire()
    assert again.take() == c.take() == [{"type": "host_changed", "host": a.id}]


async def test_host_that_resumes_within_host_grace_stays_host(
        backend: Backend, peers: Any, clock: Clock) -> None:
    a, b = await peers("a", "b")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    b.take()
    await backend.disconnect(a.id, "disconnected", grace=5)  # a network blip
    clock.now += HOST_GRACE / 2
    session = await backend.resume(a.token, a.deliver)
    assert session is not None and session.lobby is not None and session.lobby.host == a.id
    clock.now += HOST_GRACE
    await backend.expire()
    assert b.take() == []  # nobody noticed
    await backend.set_locked(a.id, True)


async def test_without_host_grace_the_role_moves_at_the_drop(make_backend: Any) -> None:
    backend = await make_backend(host_grace=0)
    a, b = Peer(backend, "a"), Peer(backend, "b")
    for p in (a, b):
        p.id = (await backend.connect(p.name, p.deliver)).peer_id
    code = (await backend.host(a.id, Host(game="g"))).code
    await backend.join(b.id, Join(code=code))
    b.take()
    await backend.disconnect(a.id, "disconnected", grace=5)
    assert b.take() == [{"type": "host_changed", "host": b.id}]


async def test_next_host_is_the_earliest_member_still_connected(
        backend: Backend, peers: Any, clock: Clock) -> None:
    a, b, c, d = await peers("a", "b", "c", "d")
    code = await host(backend, a)
    for p in (b, c, d):
        await backend.join(p.id, Join(code=code))
    for p in (a, b, c, d):
        p.take()
    await backend.disconnect(b.id, "disconnected", grace=5)  # b is away, not the host: quiet
    assert a.take() == c.take() == d.take() == []
    await backend.disconnect(a.id, "disconnected", grace=5)
    clock.now += HOST_GRACE
    await backend.expire()
    assert c.take() == d.take() == [{"type": "host_changed", "host": c.id}]
    again = Peer(backend, "b")
    session = await backend.resume(b.token, again.deliver)
    assert session is not None and session.lobby is not None and session.lobby.host == c.id
    await backend.leave(c.id)  # a and b are seated earlier, but only b is connected
    assert again.take() == d.take() == [
        {"type": "peer_left", "peer_id": c.id, "reason": "left"},
        {"type": "host_changed", "host": b.id}]


async def test_host_stays_while_nobody_is_connected_to_take_over(
        backend: Backend, peers: Any, clock: Clock) -> None:
    a, b, c = await peers("a", "b", "c")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    await backend.disconnect(b.id, "disconnected", grace=5)
    await backend.disconnect(a.id, "disconnected", grace=5)
    clock.now += HOST_GRACE
    await backend.expire()
    assert [s.host_name for s in await backend.list_lobbies()] == ["a"]
    # The first member back takes over; the one that joins an all-away lobby hosts it.
    again = Peer(backend, "b")
    session = await backend.resume(b.token, again.deliver)
    assert session is not None and session.lobby is not None and session.lobby.host == b.id
    assert again.take() == []  # its welcome carries the new state; no event before it
    await backend.disconnect(b.id, "disconnected", grace=5)
    clock.now += HOST_GRACE
    info = await backend.join(c.id, Join(code=code))
    assert info.host == c.id
    assert [m["type"] for m in c.take()] == ["lobby"]


async def test_clean_leave_is_immediate(backend: Backend, peers: Any) -> None:
    a, b = await peers("a", "b")
    code = await host(backend, a)
    await backend.join(b.id, Join(code=code))
    a.take()
    await backend.disconnect(b.id, "left", grace=5)
    assert a.take() == [{"type": "peer_left", "peer_id": b.id, "reason": "left"}]
    assert await backend.resume(b.token, b.deliver) is None


# --- stateful property test: random request sequences keep every invariant ---------------------


class _View:
    """What one peer believes about its lobby, rebuilt only from the messages it received."""

    def __init__(self) -> None:
        self.code: str | None = None
        self.host: str | None = None
        self.members: set[str] = set()

    def apply(self, me: str, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "lobby":
            self.code = message["lobby"]["code"]
            self.host = message["lobby"]["host"]
            self.members = {m["id"] for m in message["lobby"]["members"]}
        elif kind == "peer_joined":
            self.members.add(message["peer"]["id"])
        elif kind == "peer_left":
            if message["peer_id"] == me:
                self.code, self.host, self.members = None, None, set()
            else:
                self.members.discard(message["peer_id"])
        elif kind == "host_changed":
            self.host = message["host"]
        elif kind == "ok" and message.get("id") == 1:  # the reply to our leave (id 1)
            self.code, self.host, self.members = None, None, set()


class LobbyMachine(RuleBasedStateMachine):
    """Drives one MemoryBackend with random requests; after each step, the state is consistent
    and every connected peer's view (from events alone) matches the real lobby."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.loop = asyncio.new_event_loop()
        self.backend = self.make_backend()
        self.views: dict[str, _View] = {}
        self.tokens: dict[str, str] = {}
        self.connected: set[str] = set()

    def make_backend(self) -> Any:
        return MemoryBackend(max_lobbies=6, clock=self.clock)

    def known(self, peer: str) -> bool:
        """Whether the backend still has a session for ``peer``."""
        return peer in self.backend._peers

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Any) -> Any:
        try:
            return self.loop.run_until_complete(coro)
        except LobbyError:
            return None

    def request(self, peer: str, make: Any) -> None:
        """A request from ``peer``, which needs a connection to send it."""
        if peer in self.connected:
            self.run(make())

    def deliver_to(self, peer_id: str) -> Any:
        def deliver(frame: str) -> None:
            parse_server(frame)
            self.views[peer_id].apply(peer_id, json.loads(frame))
        return deliver

    peers = Bundle("peers")

    @rule(target=peers, name=st.sampled_from(["ann", "bob", "cy", "dee"]))
    def connect(self, name: str) -> str:
        holder: dict[str, str] = {}
        session = self.run(self.backend.connect(
            name, lambda frame: self.deliver_to(holder["id"])(frame)))
        holder["id"] = session.peer_id
        self.views[session.peer_id] = _View()
        self.tokens[session.peer_id] = session.resume_token
        self.connected.add(session.peer_id)
        return str(session.peer_id)

    @rule(peer=peers, max_players=st.integers(2, 4), public=st.booleans(),
          password=st.sampled_from([None, "pw"]), game=st.sampled_from(["g", "g", "h"]))
    def host(self, peer: str, max_players: int, public: bool, password: str | None,
             game: str) -> None:
        request = Host(game=game, max_players=max_players, public=public, password=password)
        self.request(peer, lambda: self.backend.host(peer, request))

    @rule(peer=peers, other=peers, password=st.sampled_from([None, "pw"]))
    def join_lobby_of(self, peer: str, other: str, password: str | None) -> None:
        code = self.views[other].code if self.known(other) else None
        self.request(peer, lambda: self.backend.join(peer, Join(code=(code or "NOCODE").lower(),
                                              password=password)))

    @rule(peer=peers, game=st.sampled_from(["g", "g", "h"]), max_players=st.integers(3, 4))
    def quick_match(self, peer: str, game: str, max_players: int) -> None:
        request = QuickMatch(game=game, max_players=max_players)
        self.request(peer, lambda: self.backend.quick_match(peer, request))

    @rule(peer=peers)
    def leave(self, peer: str) -> None:
        self.request(peer, lambda: self.backend.leave(peer, request_id=1))

    @rule(peer=peers, victim=peers)
    def kick(self, peer: str, victim: str) -> None:
        self.request(peer, lambda: self.backend.kick(peer, victim))

    @rule(peer=peers, locked=st.booleans())
    def lock(self, peer: str, locked: bool) -> None:
        self.request(peer, lambda: self.backend.set_locked(peer, locked))

    @rule(peer=peers, to=peers)
    def signal(self, peer: str, to: str) -> None:
        self.request(peer, lambda: self.backend.relay(peer, Signal(to=to, payload=OFFER)))

    @rule(peer=peers, reason=st.sampled_from(["left", "disconnected", "timed_out"]),
          grace=st.sampled_from([0.0, 5.0]))
    def disconnect(self, peer: str, reason: Any, grace: float) -> None:
        if peer in self.connected:
            self.connected.discard(peer)
            self.run(self.backend.disconnect(peer, reason, grace))

    @rule(peer=peers)
    def resume(self, peer: str) -> None:
        if peer in self.connected:
            return
        self.views[peer] = _View()
        session = self.run(self.backend.resume(self.tokens[peer], self.deliver_to(peer)))
        if session is not None:
            self.connected.add(peer)
            self.tokens[peer] = session.resume_token
            if session.lobby is not None:
                self.views[peer].apply(peer, {"type": "lobby",
                                              "lobby": session.lobby.model_dump(mode="json")})

    @rule(seconds=st.sampled_from([1.0, HOST_GRACE, 6.0]))
    def time_passes(self, seconds: float) -> None:
        self.clock.now += seconds
        self.run(self.backend.expire())

    @invariant()
    def consistent(self) -> None:
        backend = self.backend
        seen: set[str] = set()
        for code, lobby in backend._lobbies.items():
            assert code == lobby.code and re.fullmatch(f"[{CODE_ALPHABET}]{{6}}", code)
            assert 1 <= len(lobby.members) <= lobby.max_players
            assert lobby.host.id in lobby.members
            connected = [p for p in lobby.members.values() if p.deliver is not None]
            if connected and lobby.host.deliver is None:  # a dropped host may come back...
                assert lobby.handover is not None and lobby.handover > self.clock.now
                # ...within HOST_GRACE; then it hands on to the earliest connected member
            assert len({p.seq for p in lobby.members.values()}) == len(lobby.members)
            for peer_id, peer in lobby.members.items():
                assert peer.lobby is lobby and peer_id not in seen
                seen.add(peer_id)
        assert len(backend._lobbies) <= 6
        for peer_id, peer in backend._peers.items():
            assert (peer.lobby is not None) == (peer_id in seen)
            if peer_id in self.connected:
                view = self.views[peer_id]
                if peer.lobby is None:
                    assert view.code is None
                else:
                    assert (view.code, view.host, view.members) == (
                        peer.lobby.code, peer.lobby.host.id, set(peer.lobby.members))


LobbyMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40,
                                          deadline=None)
test_lobby_state_machine = LobbyMachine.TestCase


class RedisLobbyMachine(LobbyMachine):
    """The same random requests against a RedisBackend on a real redis-server; the state
    checked is what Redis holds (the stored peer and lobby records)."""

    url = ""

    def make_backend(self) -> Any:
        backend = RedisBackend(self.url, prefix=unique_prefix(), max_lobbies=6,
                               clock=self.clock)
        self.loop.run_until_complete(backend.start())
        return backend

    def known(self, peer: str) -> bool:
        return bool(self.run(self.backend.node.redis.exists(self.backend.key("peer", peer))))

    def teardown(self) -> None:
        self.loop.run_until_complete(self.backend.close())
        super().teardown()

    async def records(self) -> tuple[dict[str, Any], dict[str, Any]]:
        """Every lobby record the index lists, and the record of every peer ever connected."""
        redis, key = self.backend.node.redis, self.backend.key
        codes = await redis.zrange(key("lobbies"), 0, -1)
        raw_lobbies = await redis.mget([key("lobby", c) for c in codes]) if codes else []
        assert None not in raw_lobbies, "the index lists a lobby that has no record"
        ids = list(self.views)
        raw_peers = await redis.mget([key("peer", p) for p in ids]) if ids else []
        return ({c: json.loads(raw) for c, raw in zip(codes, raw_lobbies, strict=True)},
                {p: json.loads(raw) for p, raw in zip(ids, raw_peers, strict=True) if raw})

    @invariant()
    def consistent(self) -> None:
        lobbies, peers = self.run(self.records())
        seen: set[str] = set()
        for code, lobby in lobbies.items():
            assert code == lobby["code"] and re.fullmatch(f"[{CODE_ALPHABET}]{{6}}", code)
            members = {m["id"]: m for m in lobby["members"]}
            assert 1 <= len(members) <= lobby["max_players"]
            assert lobby["host"] in members
            connected = [m for m in members.values() if not m["away"]]
            if connected and members[lobby["host"]]["away"]:
                assert lobby["handover"] is not None and lobby["handover"] > self.clock.now
            assert len({m["seq"] for m in members.values()}) == len(members)
            for peer_id in members:
                assert peers[peer_id]["lobby"] == code and peer_id not in seen
                assert members[peer_id]["away"] == (peers[peer_id]["instance"] == "")
                seen.add(peer_id)
        assert len(lobbies) <= 6
        for peer_id, peer in peers.items():
            assert bool(peer["lobby"]) == (peer_id in seen)
            if peer_id in self.connected:
                view = self.views[peer_id]
                lobby = lobbies.get(peer["lobby"])
                if lobby is None:
                    assert view.code is None
                else:
                    assert (view.code, view.host, view.members) == (
                        lobby["code"], lobby["host"], {m["id"] for m in lobby["members"]})


def test_lobby_state_machine_on_redis(redis_server: Any) -> None:
    RedisLobbyMachine.url = redis_server.url
    run_state_machine_as_test(RedisLobbyMachine, settings=settings(
        max_examples=100, stateful_step_count=30, deadline=None))
