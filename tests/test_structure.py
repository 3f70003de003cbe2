"""The package's shape: imports form a straight stack, the facades share typed signatures,
and the event stream (the one queue both facades read) holds bounded memory."""

from __future__ import annotations

import ast
import asyncio
import inspect
import threading
from pathlib import Path

import pytest

import netplay
from netplay.channels import Channel
from netplay.config import ChannelConfig
from netplay.errors import ChannelClosed
from netplay.events import LobbyUpdated, MessageReceived, PeerJoined, PeerLeft
from netplay.eventstream import UNREAD_LIMIT, EventStream
from netplay.mesh import Mesh
from netplay.sync import SyncMesh

PACKAGE = Path(netplay.__file__).resolve().parent


def import_graph() -> dict[str, set[str]]:
    """Module -> the netplay modules it imports, counting every import statement (also those
    under ``TYPE_CHECKING`` and inside functions: a cycle hidden there is still a cycle)."""
    modules = {path.stem for path in PACKAGE.glob("*.py")}
    graph: dict[str, set[str]] = {}
    for path in PACKAGE.glob("*.py"):
        deps: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                if node.level == 1:
                    names = [node.module] if node.module else [a.name for a in node.names]
                elif node.module and node.module.startswith("netplay."):
                    names = [node.module.removeprefix("netplay.")]
                else:
                    continue
                deps |= {n.split(".")[0] for n in names}
            elif isinstance(node, ast.Import):
                deps |= {a.name.split(".")[1] for a in node.names
                         if a.name.startswith("netplay.")}
        graph[path.stem] = {d for d in deps if d in modules and d != path.stem}
    return graph


def test_no_import_cycle_among_netplay_modules() -> None:
    graph = import_graph()
    assert graph["remote"], "the graph was not read"
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for dep in sorted(graph[module]):
            if state.get(dep) == 1:
                cycle = path[path.index(dep):] + [dep] if dep in path else [module, dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, [*path, dep])
        state[module] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_layers_import_downwards_only() -> None:
    """sync -> mesh -> dataplane -> remote -> channels -> state/peer, never back up."""
    graph = import_graph()
    stack = ["sync", "mesh", "dataplane", "remote", "channels"]
    for i, module in enumerate(stack):
        above = set(stack[:i])
        assert not graph[module] & above, f"{module} imports {graph[module] & above}"
    for low in ("state", "peer", "lanes", "wire"):
        assert not graph[low] & set(stack), f"{low} imports {graph[low] & set(stack)}"


@pytest.mark.parametrize("name", ["host", "join", "quick_match", "list_lobbies", "leave",
                                  "kick", "lock", "unlock", "set_metadata", "wait_for_peers",
                                  "send_state", "send_event", "states", "interpolated",
                                  "stats", "all_stats", "set_conditioner", "channel"])
def test_the_sync_facade_shares_the_async_signatures(name: str) -> None:
    ours = inspect.signature(getattr(SyncMesh, name))
    theirs = inspect.signature(getattr(Mesh, name))
    assert list(ours.parameters.values()) == list(theirs.parameters.values()), name
    assert not any(p.kind is p.VAR_KEYWORD for p in ours.parameters.values())


# --- EventStream (the queue both facades read) -------------------------------------------------


def stream() -> tuple[EventStream, list[bool]]:
    open_ = [True]
    return EventStream(max_queued=50, is_open=lambda: open_[0]), open_


def message(i: int) -> MessageReceived:
    return MessageReceived("p", "events", i)


def test_unread_stream_keeps_lifecycle_events_and_a_bounded_tail_of_messages() -> None:
    events, _ = stream()
    events.emit(PeerJoined("p", "alice"))
    for i in range(UNREAD_LIMIT * 3):
        events.emit(message(i))
    events.emit(PeerLeft("p", "left"))
    drained = events.drain()
    assert drained[0] == PeerJoined("p", "alice") and drained[-1] == PeerLeft("p", "left")
    bodies = [e.body for e in drained if isinstance(e, MessageReceived)]
    assert bodies == list(range(UNREAD_LIMIT * 2, UNREAD_LIMIT * 3))  # the newest
    assert events.dropped == 0  # nobody read it yet: dropping is silent


def test_once_read_the_stream_holds_max_queued_and_counts_drops(
        caplog: pytest.LogCaptureFixture) -> None:
    events, _ = stream()
    assert events.drain() == []
    for i in range(120):
        events.emit(message(i))
    bodies = [e.body for e in events.drain() if isinstance(e, MessageReceived)]
    assert bodies == list(range(70, 120))
    assert events.dropped == 70
    assert "unread MessageReceived events dropped" in caplog.text


def test_drain_is_safe_from_another_thread() -> None:
    events, _ = stream()
    events.drain()
    got: list[object] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set() or len(events):
            got.extend(events.drain())

    thread = threading.Thread(target=reader)
    thread.start()
    for i in range(20_000):
        events.emit(message(i) if i % 2 else LobbyUpdated(None))
    done.set()
    thread.join(10)
    got.extend(events.drain())
    lifecycle = [e for e in got if isinstance(e, LobbyUpdated)]
    assert len(lifecycle) == 10_000  # lifecycle events are never dropped
    bodies = [e.body for e in got if isinstance(e, MessageReceived)]
    assert bodies == sorted(bodies) and len(set(bodies)) == len(bodies)


async def test_wait_for_takes_one_event_and_leaves_the_rest() -> None:
    events, open_ = stream()
    events.emit(message(1))
    events.emit(PeerJoined("p", "alice"))
    assert await events.wait_for(PeerJoined, timeout=1) == PeerJoined("p", "alice")
    assert events.peek(MessageReceived) == [message(1)]
    waiter = asyncio.ensure_future(events.wait_for(PeerLeft, timeout=5))
    await asyncio.sleep(0)
    events.emit(PeerLeft("p", "left"))
    assert await waiter == PeerLeft("p", "left")
    with pytest.raises(TimeoutError):
        await events.wait_for(PeerLeft, timeout=0.01)
    open_[0] = False
    with pytest.raises(ChannelClosed):
        await events.wait_for(PeerLeft, timeout=1)


async def test_events_iterates_in_order_and_ends_on_close() -> None:
    events, open_ = stream()
    for i in range(3):
        events.emit(message(i))

    async def later() -> None:
        await asyncio.sleep(0.01)
        events.emit(message(3))
        open_[0] = False
        events.wake()

    task = asyncio.ensure_future(later())
    seen = [e.body async for e in events.events() if isinstance(e, MessageReceived)]
    await task
    assert seen == [0, 1, 2, 3]


async def test_wait_until_checks_on_every_event() -> None:
    events, open_ = stream()
    count = [0]
    waiter = asyncio.ensure_future(events.wait_until(lambda: count[0] >= 2, timeout=5))
    for _ in range(2):
        await asyncio.sleep(0)
        count[0] += 1
        events.emit(LobbyUpdated(None))
    await waiter
    open_[0] = False
    with pytest.raises(ChannelClosed):
        await events.wait_until(lambda: False, timeout=5)


def test_a_channel_queue_is_bounded_before_and_after_its_first_read() -> None:
    channel = Channel(1, ChannelConfig.reliable("events"), 50, lambda body, to: True)
    for i in range(UNREAD_LIMIT + 10):
        channel._deliver("p", i)
    assert [b for _, b in channel.receive()] == list(range(10, UNREAD_LIMIT + 10))
    assert channel.dropped == 0  # unread: silent
    for i in range(60):
        channel._deliver("p", i)
    assert [b for _, b in channel.receive()] == list(range(10, 60))
    assert channel.dropped == 10
