"""Link conditioner: pure scheduling decisions, configuration parsing, and real aiortc peers.

The integration tests connect two real ``RTCPeerConnection``s on 127.0.0.1 (SDP passed in
process) and impair their datagrams below SCTP, so the reliable channel must retransmit.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from aiortc import RTCConfiguration, RTCDataChannel, RTCPeerConnection

from netplay import _aiortc
from netplay.conditioner import (
    ConditionerConfig,
    LinkConditioner,
    LinkScheduler,
    attach,
)


def scheduler(seed: int = 1, **config: float) -> LinkScheduler:
    return LinkScheduler(ConditionerConfig(**config), random.Random(seed))  # type: ignore[arg-type]


# -- pure scheduler ---------------------------------------------------------------------------


def test_loss_ratio_is_close_to_configured() -> None:
    s = scheduler(loss=0.1)
    results = [s.schedule(i * 0.001, 200) for i in range(20_000)]
    lost = sum(1 for r in results if not r)
    assert 0.09 < lost / 20_000 < 0.11
    assert s.stats.dropped == lost
    assert s.stats.offered == 20_000


def test_same_seed_same_decisions_other_seed_differs() -> None:
    config = dict(latency_ms=20, jitter_ms=10, loss=0.2, duplicate=0.1, reorder=0.1)
    runs = []
    for seed in (7, 7, 8):
        s = scheduler(seed, **config)
        runs.append([s.schedule(i * 0.002, 300) for i in range(500)])
    assert runs[0] == runs[1]
    assert runs[0] != runs[2]


def test_latency_and_jitter_bounds_and_order() -> None:
    s = scheduler(latency_ms=50, jitter_ms=10)
    delays = []
    previous = 0.0
    for i in range(2_000):
        now = i * 0.001
        [when] = s.schedule(now, 200)
        delays.append(when - now)
        assert when >= previous  # jitter alone never reorders
        previous = when
    assert min(delays) >= 0.040 - 1e-9
    assert max(delays) <= 0.060 + 1e-9
    assert max(delays) - min(delays) > 0.015  # the jitter is really applied


def test_no_impairment_delivers_immediately() -> None:
    s = scheduler()
    assert [s.schedule(t, 100) for t in (0.0, 0.5, 0.7)] == [[0.0], [0.5], [0.7]]


def test_duplication_ratio() -> None:
    s = scheduler(latency_ms=10, duplicate=0.05)
    results = [s.schedule(i * 0.01, 200) for i in range(10_000)]
    doubled = [r for r in results if len(r) == 2]
    assert 0.04 < len(doubled) / 10_000 < 0.06
    assert s.stats.duplicated == len(doubled)
    assert all(r[1] >= r[0] for r in doubled)


def test_reordering_lets_later_packets_overtake() -> None:
    s = scheduler(latency_ms=20, reorder=0.1, reorder_ms=30)
    results = [s.schedule(i * 0.005, 200)[0] for i in range(5_000)]
    inversions = sum(1 for a, b in zip(results, results[1:], strict=False) if b < a)
    assert 0.08 < s.stats.reordered / 5_000 < 0.12
    assert inversions > 0.5 * s.stats.reordered
    # Without reordering the same traffic stays in order.
    plain = scheduler(latency_ms=20)
    times = [plain.schedule(i * 0.005, 200)[0] for i in range(5_000)]
    assert times == sorted(times)


def test_bandwidth_cap_spaces_packets_and_drops_when_queue_full() -> None:
    # 100 kbit/s = 12,500 B/s: a 1,000-byte packet takes 80 ms. Offer 10x that for 10 s.
    s = scheduler(bandwidth_kbps=100, queue_bytes=10_000)
    delivered: list[float] = []
    for i in range(1_000):
        delivered += s.schedule(i * 0.01, 1_000)
    gaps = [b - a for a, b in zip(delivered, delivered[1:], strict=False)]
    assert min(gaps) >= 0.08 - 1e-9
    assert s.stats.overflowed > 800
    # Everything delivered by 10 s fits the rate plus what the queue held.
    assert sum(1 for t in delivered if t <= 10.0) * 1_000 <= 12_500 * 10 + 10_000


# -- configuration ----------------------------------------------------------------------------


def test_parse_full_description() -> None:
    config = ConditionerConfig.parse(
        "latency=50,jitter=5,loss=0.05,dup=0.01,reorder=0.02,kbps=500,seed=1")
    assert config == ConditionerConfig(latency_ms=50, jitter_ms=5, loss=0.05, duplicate=0.01,
                                       reorder=0.02, bandwidth_kbps=500, seed=1)


def test_parse_preset_with_overrides_and_percent() -> None:
    assert ConditionerConfig.parse("mobile") == ConditionerConfig.preset("mobile")
    config = ConditionerConfig.parse("awful, loss=5%, latency=200ms")
    assert config.loss == pytest.approx(0.05)
    assert config.latency_ms == 200
    assert config.bandwidth_kbps == ConditionerConfig.PRESETS["awful"]["bandwidth_kbps"]


@pytest.mark.parametrize(("text", "message"), [
    ("", "empty"),
    ("latency=abc", "bad value 'abc'"),
    ("speed=3", "unknown conditioner key 'speed'"),
    ("latency", "expected key=value"),
    ("loss=0.5,mobile", "expected key=value"),
    ("loss=2", "probability"),
    ("latency=10,jitter=20", "must not exceed"),
    ("kbps=0", "bandwidth_kbps"),
    ("seed=1.5", "bad value"),
])
def test_parse_rejects_malformed(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConditionerConfig.parse(text)


def test_unknown_preset() -> None:
    with pytest.raises(ValueError, match="unknown conditioner preset 'lunar'"):
        ConditionerConfig.preset("lunar")


@pytest.mark.parametrize("kwargs", [
    {"latency_ms": -1}, {"jitter_ms": float("nan")}, {"loss": -0.1}, {"duplicate": 1.5},
    {"bandwidth_kbps": -5}, {"queue_bytes": 0},
])
def test_config_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="conditioner"):
        ConditionerConfig(**kwargs)  # type: ignore[arg-type]


def test_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NETPLAY_CONDITIONER", raising=False)
    assert ConditionerConfig.from_env() is None
    monkeypatch.setenv("NETPLAY_CONDITIONER", "  ")
    assert ConditionerConfig.from_env() is None
    monkeypatch.setenv("NETPLAY_CONDITIONER", "latency=30,loss=1%")
    assert ConditionerConfig.from_env() == ConditionerConfig(latency_ms=30, loss=0.01)
    monkeypatch.setenv("MY_LINK", "good")
    assert ConditionerConfig.from_env("MY_LINK") == ConditionerConfig.preset("good")


def test_from_env_malformed_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NETPLAY_CONDITIONER", "latency=fast")
    with pytest.raises(ValueError, match="NETPLAY_CONDITIONER.*bad value 'fast'"):
        ConditionerConfig.from_env()


# -- real aiortc peers on loopback ------------------------------------------------------------


@dataclass
class Peer:
    pc: RTCPeerConnection
    state: RTCDataChannel
    events: RTCDataChannel
    conditioner: LinkConditioner


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    try:
        async with asyncio.timeout(timeout):
            while not predicate():
                await asyncio.sleep(0.005)
    except TimeoutError:
        pytest.fail(f"timed out after {timeout} s waiting for {what}")


def make_peer(outbound: ConditionerConfig | None, inbound: ConditionerConfig | None,
              seed: int, attach_late: bool = False) -> Peer:
    """A peer with netplay's two channels; ``attach_late`` hooks once SCTP already exists."""
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    if not attach_late:
        conditioner = attach(pc, outbound, inbound, seed=seed)
    state = pc.createDataChannel("state", ordered=False, maxRetransmits=0, negotiated=True, id=0)
    events = pc.createDataChannel("events", negotiated=True, id=1)
    if attach_late:
        conditioner = attach(pc, outbound, inbound, seed=seed)
    return Peer(pc, state, events, conditioner)


async def connect(a: Peer, b: Peer) -> None:
    with _aiortc.host_addresses(["127.0.0.1"]):
        await a.pc.setLocalDescription(await a.pc.createOffer())
    offer = a.pc.localDescription
    candidates = [line for line in offer.sdp.splitlines() if line.startswith("a=candidate")]
    assert candidates and all(" 127.0.0.1 " in line for line in candidates)
    await b.pc.setRemoteDescription(offer)
    with _aiortc.host_addresses(["127.0.0.1"]):
        await b.pc.setLocalDescription(await b.pc.createAnswer())
    await a.pc.setRemoteDescription(b.pc.localDescription)
    channels = (a.state, a.events, b.state, b.events)
    await wait_for(lambda: all(c.readyState == "open" for c in channels), 20, "channels to open")


@pytest.fixture
async def pair_factory() -> AsyncIterator[Callable[..., object]]:
    peers: list[Peer] = []

    async def factory(outbound: ConditionerConfig | None, inbound: ConditionerConfig | None,
                      seed: int = 1, attach_late: bool = False) -> tuple[Peer, Peer]:
        a = make_peer(outbound, inbound, seed, attach_late)
        b = make_peer(outbound, inbound, seed + 1, attach_late)
        peers.extend((a, b))
        await connect(a, b)
        return a, b

    yield factory
    for peer in peers:
        await peer.pc.close()


async def test_reliable_survives_loss_unreliable_loses(pair_factory) -> None:  # type: ignore[no-untyped-def]
    lossy = ConditionerConfig(loss=0.05)
    a, b = await pair_factory(lossy, lossy, seed=3)
    reliable: list[bytes] = []
    unreliable: list[bytes] = []
    b.events.on("message", reliable.append)
    b.state.on("message", unreliable.append)
    n = 300
    for i in range(n):
        a.state.send(b"s%d" % i)
        a.events.send(b"e%d" % i)
        if i % 20 == 19:
            await asyncio.sleep(0)  # let the SCTP pump run between bursts
    await wait_for(lambda: len(reliable) >= n, 60, f"{n} reliable messages")
    assert reliable == [b"e%d" % i for i in range(n)]  # all, in order, exactly once
    assert 0 < len(unreliable) < n
    assert len(set(unreliable)) == len(unreliable)
    stats = a.conditioner.stats
    assert stats["outbound"].dropped > 0 and stats["inbound"].dropped > 0
    assert stats["outbound"].delivered + stats["outbound"].dropped == stats["outbound"].offered


async def test_latency_shows_in_round_trip_time(pair_factory) -> None:  # type: ignore[no-untyped-def]
    slow = ConditionerConfig(latency_ms=50)
    a, b = await pair_factory(slow, None, attach_late=True)  # also covers hooking late
    b.events.on("message", b.events.send)  # echo
    replies: list[bytes] = []
    a.events.on("message", replies.append)
    loop = asyncio.get_running_loop()
    rtts = []
    for i in range(5):
        start = loop.time()
        a.events.send(b"ping%d" % i)
        await wait_for(lambda i=i: len(replies) > i, 10, "the echo")
        rtts.append(loop.time() - start)
    # Lower bound only: each way is conditioned by 50 ms on its sender.
    assert min(rtts) >= 0.095
    assert replies == [b"ping%d" % i for i in range(5)]


async def test_set_at_runtime_and_close_discards_pending(pair_factory) -> None:  # type: ignore[no-untyped-def]
    a, b = await pair_factory(None, None)
    got: list[bytes] = []
    b.events.on("message", got.append)
    a.conditioner.set(outbound=ConditionerConfig(loss=1.0))
    assert a.conditioner.outbound == ConditionerConfig(loss=1.0)
    a.events.send(b"lost at first")
    await wait_for(lambda: a.conditioner.stats["outbound"].dropped >= 1, 10, "a dropped packet")
    assert got == []
    a.conditioner.set(outbound=None)
    await wait_for(lambda: got == [b"lost at first"], 30, "the retransmission")
    # A long delay leaves packets waiting; closing the connection discards them cleanly.
    a.conditioner.set(outbound=ConditionerConfig(latency_ms=10_000))
    a.events.send(b"never")
    await wait_for(lambda: a.conditioner.pending > 0, 10, "a waiting packet")
    await a.pc.close()
    assert a.conditioner.pending == 0


async def test_duplicates_and_reordering_keep_reliable_exact(pair_factory) -> None:  # type: ignore[no-untyped-def]
    messy = ConditionerConfig(latency_ms=5, duplicate=0.2, reorder=0.2, reorder_ms=20)
    a, b = await pair_factory(messy, None, seed=11)
    reliable: list[bytes] = []
    b.events.on("message", reliable.append)
    n = 200
    for i in range(n):
        a.events.send(b"e%d" % i)
        if i % 10 == 9:
            await asyncio.sleep(0.002)  # spread over several packets
    await wait_for(lambda: len(reliable) >= n, 60, f"{n} reliable messages")
    assert reliable == [b"e%d" % i for i in range(n)]
    stats = a.conditioner.stats["outbound"]
    assert stats.duplicated > 0 and stats.reordered > 0
    assert stats.dropped == 0 and stats.overflowed == 0


def test_a_stream_gives_another_sequence_of_decisions_for_the_same_seed() -> None:
    """netplay passes a link's connection attempt as the stream: a retry does not replay the
    drops that sank the attempt before it."""
    from netplay.conditioner import LinkConditioner

    config = ConditionerConfig(loss=0.5, seed=3)

    def drops(stream: str) -> list[bool]:
        scheduler = LinkConditioner(config, None, stream=stream)._schedulers["outbound"]
        assert scheduler is not None
        return [not scheduler.schedule(0.0, 100) for _ in range(64)]

    assert drops("") == drops("")  # reproducible
    assert drops("attempt 1/") == drops("attempt 1/")
    assert drops("attempt 1/") != drops("")
