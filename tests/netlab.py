"""Network namespaces with NAT routers, for tests that run real players behind real NATs.

    with NetLab({"alice": "cone", "bob": "symmetric", "carol": "lan", "dave": "lan"}) as lab:
        lobby = lab.start_servers()               # lobby + coturn in the "internet"
        players = [Player(lab, name, lobby) for name in lab.spec]   # tests/nat_peer.py each
        connected = start_match(players)          # {name: its "connected" report}
        check_pairs(lab, players, connected)      # host on a LAN, relay if symmetric, else direct

Topology (every address exists only inside namespaces this module creates):

```
 "internet" 203.0.113.0/24 (TEST-NET-3), bridge inet0
   203.0.113.1   lobby (uvicorn, python -m signaling) and coturn (STUN + TURN, port 3478)
   203.0.113.1N  WAN address of router N (nftables NAT)
       router N: LAN bridge 192.168.N.1/24
           player: 192.168.N.2 (N.3, ... for more players on the same LAN)
```

Kinds of home network (one router each, except that every ``"lan"`` player shares one):

- ``"cone"``: ``masquerade`` (Linux keeps the source port, so the mapping is
  endpoint-independent) and conntrack's filtering (only replies from the exact address and
  port a packet went to come in): a port-restricted cone NAT, where STUN suffices.
- ``"symmetric"``: ``masquerade fully-random``: every new flow (destination address and port)
  gets a random port, so the mapping is endpoint-dependent and the port STUN saw is useless to
  anyone else: only TURN works. :meth:`NetLab.mapping` measures both behaviours.
- ``"lan"``: the players sit on one LAN segment (behind one cone router) and reach each other
  on their host addresses.

The "internet" drops packets to private addresses silently, as the real one does: routers
send them to the servers' namespace, which does not forward, and the servers' own default
route leads to a MAC address nobody has.

A namespace is held by a ``unshare -n sleep infinity`` process and entered with
``nsenter --net=/proc/PID/ns/net``; killing the holders frees every namespace, interface and
rule with them, so nothing is left on the machine (no ``/run/netns`` names) even when a test
crashes, and it works nested inside the suite's own ``unshare -n``. Needs root and the
``ip``, ``nsenter``, ``unshare``, ``nft``, ``conntrack`` and ``turnserver`` programs:
:func:`unavailable` says what is missing.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["KINDS", "NetLab", "Netns", "Player", "Seat", "check_pairs", "expected_kind",
           "pair_kinds", "start_match", "unavailable"]

KINDS = ("cone", "symmetric", "lan")
SERVER = "203.0.113.1"
SINK = "203.0.113.254"
LOBBY_PORT = 8000
TURN_PORT = 3478
TURN_SECRET = "netlab-turn-secret"
REPO = pathlib.Path(__file__).resolve().parent.parent
PEER = pathlib.Path(__file__).resolve().with_name("nat_peer.py")
PROGRAMS = ("ip", "nsenter", "unshare", "nft", "conntrack", "turnserver")


def unavailable() -> str | None:
    """Why NAT topologies cannot be built here, or ``None`` when they can."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "building network namespaces needs root (CI runs the suite as root)"
    missing = [p for p in PROGRAMS if shutil.which(p) is None]
    if missing:
        return (f"missing programs: {', '.join(missing)} (.ci/run installs iproute2, "
                f"util-linux, nftables, conntrack and coturn)")
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True)
    if probe.returncode != 0:
        return f"cannot create a network namespace: {probe.stderr.decode().strip()}"
    return None


class Netns:
    """One network namespace, held open by a sleeping ``unshare -n`` process."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._holder = subprocess.Popen(["unshare", "-n", "sleep", "infinity"],
                                        stdin=subprocess.DEVNULL)
        self.path = f"/proc/{self._holder.pid}/ns/net"
        mine = os.readlink("/proc/self/ns/net")
        deadline = time.monotonic() + 10
        while True:  # the holder enters its namespace before it execs sleep
            with contextlib.suppress(OSError):
                if (os.readlink(self.path) != mine
                        and pathlib.Path(f"/proc/{self._holder.pid}/comm").read_text()
                        .strip() == "sleep"):
                    break
            if self._holder.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"namespace {name}: unshare -n failed")
            time.sleep(0.005)
        self.pid = self._holder.pid
        self.run("ip", "link", "set", "lo", "up")

    def argv(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` run inside this namespace."""
        return ["nsenter", f"--net={self.path}", *cmd]

    def run(self, *cmd: str, input: str | None = None) -> str:
        """Run ``cmd`` here; its stdout. ``RuntimeError`` (with stderr) if it fails."""
        done = subprocess.run(self.argv(cmd), capture_output=True, text=True, input=input)
        if done.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(cmd)}: {done.stderr.strip()}")
        return done.stdout

    def popen(self, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` inside this namespace."""
        return subprocess.Popen(self.argv(cmd), **kwargs)

    def close(self) -> None:
        if self._holder.poll() is None:
            self._holder.kill()
        self._holder.wait()


@dataclass
class Seat:
    """Where one player sits."""

    name: str
    kind: str
    ns: Netns
    address: str
    router: str


NAT_RULES = """
table ip netlab {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "wan" {action}
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "wan" ct state != {{ established, related }} drop
    }}
}}
"""
"""The router's NAT: ``action`` is ``masquerade`` (cone) or ``masquerade fully-random``
(symmetric), or ``snat to ADDRESS`` after :meth:`NetLab.remap`. Unsolicited packets to the
router itself are dropped, as home routers do."""

ACTIONS = {"cone": "masquerade", "lan": "masquerade", "symmetric": "masquerade fully-random"}


class NetLab:
    """A topology of namespaces built from ``{player: kind}``; a context manager."""

    def __init__(self, players: Mapping[str, str]) -> None:
        bad = {name: kind for name, kind in players.items() if kind not in KINDS}
        if bad:
            raise ValueError(f"unknown NAT kinds {bad}; choose from {KINDS}")
        self.spec = dict(players)
        self.namespaces: list[Netns] = []
        self.processes: list[subprocess.Popen[Any]] = []
        self.routers: dict[str, Netns] = {}
        self.router_kind: dict[str, str] = {}
        self.players: dict[str, Seat] = {}
        self.tmp = pathlib.Path(tempfile.mkdtemp(prefix="netlab-"))
        self.inet: Netns | None = None

    # -- building ------------------------------------------------------------------------

    def __enter__(self) -> NetLab:
        try:
            self._build()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _ns(self, name: str) -> Netns:
        ns = Netns(name)
        self.namespaces.append(ns)
        return ns

    def _veth(self, a: Netns, a_name: str, b: Netns, b_name: str) -> None:
        """A veth pair between two namespaces (made in ``a``, one end moved to ``b``)."""
        a.run("ip", "link", "add", a_name, "type", "veth", "peer", "name", "tmp-peer")
        a.run("ip", "link", "set", "tmp-peer", "netns", str(b.pid))
        b.run("ip", "link", "set", "tmp-peer", "name", b_name)
        a.run("ip", "link", "set", a_name, "up")
        b.run("ip", "link", "set", b_name, "up")

    def _build(self) -> None:
        inet = self.inet = self._ns("internet")
        inet.run("ip", "link", "add", "inet0", "type", "bridge")
        inet.run("ip", "addr", "add", f"{SERVER}/24", "dev", "inet0")
        inet.run("ip", "link", "set", "inet0", "up")
        # Private destinations vanish, as on the real internet: the servers' default route
        # leads to a MAC address nobody has (without a route, coturn's sends to players'
        # private addresses would fail with ENETUNREACH, and coturn drops the session).
        inet.run("ip", "neigh", "add", SINK, "lladdr", "02:00:00:00:00:fe", "dev", "inet0",
                 "nud", "permanent")
        inet.run("ip", "route", "add", "default", "via", SINK)
        homes: dict[str, str] = {}  # player -> router name
        for name, kind in self.spec.items():
            homes[name] = "lan" if kind == "lan" else f"r-{name}"
        hosts: dict[str, int] = {}
        for index, router in enumerate(dict.fromkeys(homes.values()), start=1):
            kind = next(self.spec[p] for p, r in homes.items() if r == router)
            ns = self.routers[router] = self._ns(router)
            self.router_kind[router] = kind
            self._veth(inet, f"wan{index}", ns, "wan")
            inet.run("ip", "link", "set", f"wan{index}", "master", "inet0")
            ns.run("ip", "addr", "add", f"203.0.113.{10 + index}/24", "dev", "wan")
            ns.run("ip", "route", "add", "default", "via", SERVER)
            ns.run("ip", "link", "add", "lan0", "type", "bridge")
            ns.run("ip", "addr", "add", f"192.168.{index}.1/24", "dev", "lan0")
            ns.run("ip", "link", "set", "lan0", "up")
            ns.run("sysctl", "-qw", "net.ipv4.ip_forward=1")
            ns.run("nft", "-f", "-", input=NAT_RULES.format(action=ACTIONS[kind]))
            hosts[router] = index
        for name, router in homes.items():
            index = hosts[router]
            host = sum(1 for p in self.players.values() if p.router == router) + 2
            ns = self._ns(name)
            rns = self.routers[router]
            port = f"p-{name}"[:15]
            self._veth(rns, port, ns, "eth0")
            rns.run("ip", "link", "set", port, "master", "lan0")
            address = f"192.168.{index}.{host}"
            ns.run("ip", "addr", "add", f"{address}/24", "dev", "eth0")
            ns.run("ip", "route", "add", "default", "via", f"192.168.{index}.1")
            self.players[name] = Seat(name, self.spec[name], ns, address, router)

    # -- servers -------------------------------------------------------------------------

    def start_servers(self, *, stun: bool = True, turn: bool = True) -> str:
        """Start coturn (when ``stun`` or ``turn``) and the lobby in the internet namespace;
        the lobby hands players ``stun:`` / ``turn:`` URLs of it (TURN credentials minted from
        the shared secret). Returns the lobby's WebSocket URL."""
        inet = self.inet
        assert inet is not None
        env = dict(os.environ)
        if stun or turn:
            with (self.tmp / "turnserver.log").open("w") as log:
                self.processes.append(inet.popen(
                    ["turnserver", "-n", f"--listening-ip={SERVER}", f"--relay-ip={SERVER}",
                     f"--listening-port={TURN_PORT}", "--min-port=49152", "--max-port=49407",
                     "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
                     "--realm=netlab.test", "--no-tls", "--no-dtls", "--no-tcp", "--no-cli",
                     "--fingerprint", "--no-multicast-peers", "--log-file=stdout",
                     "--simple-log"],
                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL))
            self._wait(lambda: self._stun_answers(), "turnserver", "turnserver.log")
        if stun:
            env["NETPLAY_LOBBY_STUN_URLS"] = f"stun:{SERVER}:{TURN_PORT}"
        if turn:
            env["NETPLAY_LOBBY_TURN_URLS"] = f"turn:{SERVER}:{TURN_PORT}?transport=udp"
            env["NETPLAY_LOBBY_TURN_SECRET"] = TURN_SECRET
            env["NETPLAY_LOBBY_TURN_TTL"] = "600"
        with (self.tmp / "lobby.log").open("w") as log:
            self.processes.append(inet.popen(
                [sys.executable, "-m", "signaling", "--host", SERVER, "--port",
                 str(LOBBY_PORT)],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                cwd=REPO))
        self._wait(self._lobby_answers, "lobby", "lobby.log")
        return f"ws://{SERVER}:{LOBBY_PORT}/ws"

    def _wait(self, ready: Any, what: str, log: str) -> None:
        deadline = time.monotonic() + 20
        while not ready():
            if self.processes[-1].poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start:\n"
                                   f"{(self.tmp / log).read_text()[-2000:]}")
            time.sleep(0.05)

    def _probe(self, script: str) -> bool:
        assert self.inet is not None
        done = subprocess.run(self.inet.argv([sys.executable, "-c", script]),
                              capture_output=True, text=True)
        return done.returncode == 0

    def _stun_answers(self) -> bool:
        return self._probe(
            "import os,socket,struct\n"
            "r=struct.pack('!HHI12s',1,0,0x2112A442,os.urandom(12))\n"
            "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM);s.settimeout(0.3)\n"
            f"s.sendto(r,('{SERVER}',{TURN_PORT}))\n"
            "d=s.recv(2048);assert d[8:20]==r[8:20]\n")

    def _lobby_answers(self) -> bool:
        return self._probe(
            "import socket\n"
            f"socket.create_connection(('{SERVER}',{LOBBY_PORT}),timeout=0.3).close()\n")

    # -- players -------------------------------------------------------------------------

    def popen(self, player: str, cmd: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start ``cmd`` in ``player``'s namespace (killed at :meth:`close` if still running)."""
        proc = self.players[player].ns.popen(cmd, **kwargs)
        self.processes.append(proc)
        return proc

    def remap(self, player: str) -> None:
        """Give ``player``'s router a new public address and forget every NAT mapping
        (conntrack flushed): each flow gets a new public address and port, as after a router
        reboot or a carrier-grade NAT's timeout."""
        router = self.routers[self.players[player].router]
        index = list(self.routers).index(self.players[player].router) + 1
        new = f"203.0.113.{110 + index}"
        router.run("ip", "addr", "add", f"{new}/24", "dev", "wan")
        router.run("nft", "flush", "chain", "ip", "netlab", "postrouting")
        router.run("nft", "add", "rule", "ip", "netlab", "postrouting", "oifname", "wan",
                   "snat", "to", new)
        router.run("conntrack", "-F")

    def mapping(self, player: str, ports: Sequence[int] = (3479, 3480)) -> list[tuple[str, int]]:
        """The public (address, port) the internet sees for one UDP socket of ``player``
        sending to ``SERVER`` on each of ``ports``: one value for an endpoint-independent
        mapping, one per destination for a symmetric NAT."""
        assert self.inet is not None
        echo = self.inet.popen(
            [sys.executable, "-c",
             "import socket,sys\n"
             "socks=[]\n"
             f"for p in {list(ports)}:\n"
             "    s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
             f"    s.bind(('{SERVER}',p)); s.settimeout(10); socks.append(s)\n"
             "print('ready',flush=True)\n"
             "for s in socks:\n"
             "    d,a=s.recvfrom(100); print(a[0],a[1],flush=True)\n"],
            stdout=subprocess.PIPE, text=True)
        try:
            assert echo.stdout is not None
            assert echo.stdout.readline().strip() == "ready"
            self.players[player].ns.run(
                sys.executable, "-c",
                "import socket\n"
                "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM); s.bind(('0.0.0.0',40000))\n"
                f"for p in {list(ports)}: s.sendto(b'x',('{SERVER}',p))\n")
            seen = []
            for _ in ports:
                host, port = echo.stdout.readline().split()
                seen.append((host, int(port)))
            return seen
        finally:
            echo.kill()
            echo.wait()
            assert echo.stdout is not None
            echo.stdout.close()

    # -- teardown ------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process started here and free every namespace (idempotent)."""
        for proc in reversed(self.processes):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.processes):
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        self.processes.clear()
        for ns in reversed(self.namespaces):
            ns.close()
        self.namespaces.clear()
        shutil.rmtree(self.tmp, ignore_errors=True)  # logs: a failing test quotes them first


# -- players: tests/nat_peer.py processes --------------------------------------------------

class Player:
    """One ``nat_peer.py`` process: JSON commands in, JSON reports out."""

    def __init__(self, lab: NetLab, name: str, lobby: str) -> None:
        self.name = name
        self.reports: queue.Queue[dict[str, Any]] = queue.Queue()
        self.seen: list[dict[str, Any]] = []
        self.log = lab.tmp / f"{name}.log"
        self.proc = lab.popen(name, [sys.executable, str(PEER), "--lobby", lobby, "--name",
                                     name, "--log", str(self.log)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        threading.Thread(target=self._read, daemon=True).start()
        self.peer_id = self.expect("ready", timeout=30)["peer_id"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.reports.put(json.loads(line))

    def send(self, **command: Any) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command) + "\n")
        self.proc.stdin.flush()

    def expect(self, event: str, timeout: float = 30,
               where: Callable[[dict[str, Any]], bool] = lambda r: True) -> dict[str, Any]:
        """The next report ``event`` (matching ``where``); earlier ones are kept in ``seen``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                report = self.reports.get(timeout=max(left, 0.01))
            except queue.Empty:
                tail = self.log.read_text()[-3000:] if self.log.exists() else ""
                raise AssertionError(f"{self.name}: no {event} within {timeout} s; "
                                     f"seen {self.seen[-5:]}\n{tail}") from None
            self.seen.append(report)
            if report["event"] == event and where(report):
                return report

    def drain(self) -> list[dict[str, Any]]:
        """Every report that arrived so far (also kept in ``seen``)."""
        out = []
        while True:
            try:
                out.append(self.reports.get_nowait())
            except queue.Empty:
                self.seen += out
                return out


def start_match(players: list[Player], timeout: float = 30) -> dict[str, dict[str, Any]]:
    """The first player hosts, the others join; each waits for all. Returns each player's
    ``connected`` report."""
    players[0].send(op="host")
    code = players[0].expect("lobby")["code"]
    for player in players[1:]:
        player.send(op="join", code=code)
        player.expect("lobby")
    for player in players:
        player.send(op="wait", peers=len(players) - 1, timeout=timeout)
    return {p.name: p.expect("connected", timeout=timeout + 5) for p in players}


def pair_kinds(connected: dict[str, Any], ids: dict[str, str]) -> dict[tuple[str, str], str]:
    """``{(player, other): kind}`` from ``connected`` reports; ``ids``: peer id -> name."""
    return {(name, ids[peer]): pair["kind"]
            for name, report in connected.items() for peer, pair in report["pairs"].items()}


def expected_kind(lab: NetLab, a: str, b: str) -> str:
    """What ICE should select between two players: host candidates on one LAN, a relay when
    either is behind a symmetric NAT, a direct (server- or peer-reflexive) pair otherwise."""
    pa, pb = lab.players[a], lab.players[b]
    if pa.router == pb.router:
        return "host"
    if "symmetric" in (pa.kind, pb.kind):
        return "relay"
    return "direct"


def check_pairs(lab: NetLab, players: list[Player],
                connected: dict[str, dict[str, Any]]) -> dict[tuple[str, str], str]:
    ids = {p.peer_id: p.name for p in players}
    kinds = pair_kinds(connected, ids)
    for (name, other), kind in kinds.items():
        want = expected_kind(lab, name, other)
        if want == "direct":
            assert kind in ("srflx", "prflx"), (name, other, kind, connected[name]["pairs"])
        else:
            assert kind == want, (name, other, kind, connected[name]["pairs"])
    assert len(kinds) == len(players) * (len(players) - 1)
    return kinds
