"""The lobby wire schema (netplay.protocol): round trips, strictness, and no crash on any input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netplay import protocol as p
from netplay.errors import ProtocolError

ids = st.none() | st.integers(min_value=0, max_value=2**53)
short = st.text(min_size=1, max_size=16)
json_scalars = (st.none() | st.booleans() | st.integers(min_value=-(2**53), max_value=2**53)
                | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=10,
)
metadata = st.dictionaries(st.text(max_size=8), json_values, max_size=5)
attempts = st.integers(min_value=0, max_value=1000)
payloads = st.one_of(
    st.builds(p.OfferPayload, sdp=st.text(max_size=200), attempt=attempts),
    st.builds(p.AnswerPayload, sdp=st.text(max_size=200), attempt=attempts),
    st.builds(p.CandidatePayload, candidate=st.text(max_size=100),
              sdp_mid=st.none() | st.text(max_size=4),
              sdp_mline_index=st.none() | st.integers(0, 16), attempt=attempts),
)
players = st.integers(min_value=2, max_value=16)

client_messages = st.one_of(
    st.builds(p.Hello, id=ids, v=st.integers(0, 100), name=short,
              token=st.none() | st.text(max_size=50), resume=st.none() | st.text(max_size=50)),
    st.builds(p.Host, id=ids, max_players=players, public=st.booleans(),
              password=st.none() | st.text(max_size=10), game=short, game_version=st.text(
                  max_size=8), metadata=metadata),
    st.builds(p.Join, id=ids, code=short, password=st.none() | st.text(max_size=10)),
    st.builds(p.QuickMatch, id=ids, game=short, game_version=st.text(max_size=8),
              filter=metadata, max_players=players),
    st.builds(p.ListLobbies, id=ids, game=st.none() | short, filter=metadata),
    st.builds(p.Leave, id=ids),
    st.builds(p.Signal, id=ids, to=short, payload=payloads),
    st.builds(p.Kick, id=ids, peer=short),
    st.builds(p.Lock, id=ids),
    st.builds(p.Unlock, id=ids),
    st.builds(p.SetMetadata, id=ids, metadata=metadata),
    st.builds(p.Ping, id=ids, t=st.none() | st.floats(allow_nan=False, allow_infinity=False)),
)

members = st.builds(p.Member, id=short, name=short, seq=st.integers(0, 1000))
lobby_infos = st.builds(
    p.LobbyInfo, code=short, host=short, members=st.lists(members, max_size=4),
    max_players=players, public=st.booleans(), locked=st.booleans(), has_password=st.booleans(),
    game=short, game_version=st.text(max_size=8), metadata=metadata)
server_messages = st.one_of(
    st.builds(p.Welcome, id=ids, peer_id=short, resume_token=short,
              ice_servers=st.lists(st.builds(p.IceServerInfo, urls=st.lists(short, max_size=2),
                                             username=st.none() | short,
                                             credential=st.none() | short), max_size=2),
              resumed=st.booleans(), lobby=st.none() | lobby_infos),
    st.builds(p.LobbyState, id=ids, lobby=lobby_infos),
    st.builds(p.PeerJoined, peer=members),
    st.builds(p.PeerLeft, peer_id=short,
              reason=st.sampled_from(["left", "kicked", "disconnected", "timed_out"])),
    st.builds(p.HostChanged, host=short),
    st.builds(p.LobbyList, id=ids, lobbies=st.lists(st.builds(
        p.LobbySummary, code=short, players=players, max_players=players, game=short,
        game_version=st.text(max_size=8), metadata=metadata, has_password=st.booleans(),
        host_name=short), max_size=3)),
    st.builds(p.RelayedSignal, from_=short, payload=payloads),
    st.builds(p.Pong, id=ids, t=st.none() | st.floats(allow_nan=False, allow_infinity=False)),
    st.builds(p.Ok, id=ids),
    st.builds(p.Error, id=ids, code=st.sampled_from(list(p.ErrorCode)), message=st.text()),
)


@given(client_messages)
def test_client_messages_round_trip(message: Any) -> None:
    frame = p.encode(message)
    assert json.loads(frame)["type"] == message.type
    assert p.parse_client(frame) == message


@given(server_messages)
def test_server_messages_round_trip(message: Any) -> None:
    assert p.parse_server(p.encode(message)) == message


@settings(max_examples=300)
@given(st.text(max_size=200) | st.binary(max_size=200))
def test_any_frame_parses_or_raises_protocol_error(frame: str | bytes) -> None:
    for parse in (p.parse_client, p.parse_server):
        try:
            parse(frame)
        except ProtocolError:
            pass


@settings(max_examples=300)
@given(st.dictionaries(st.sampled_from(["type", "id", "v", "name", "code", "to", "payload",
                                        "game", "metadata", "max_players", "from", "peer"]),
                       json_values | st.sampled_from(["hello", "join", "signal", "host"])))
def test_any_json_object_parses_or_raises_protocol_error(obj: dict[str, Any]) -> None:
    frame = json.dumps(obj)
    try:
        message = p.parse_client(frame)
    except ProtocolError as exc:
        assert str(exc).startswith("invalid message")
        return
    assert message.type == obj["type"]


@given(client_messages)
def test_request_id_of_finds_the_id(message: Any) -> None:
    assert p.request_id_of(p.encode(message)) == message.id


@pytest.mark.parametrize("frame", [
    '{"type": "ping", "id": "1"}',
    '{"type": "ping", "id": true}',
    '{"type": "host", "game": "g", "public": "yes"}',
    '{"type": "host", "game": "g", "max_players": "8"}',
    '{"type": "host", "game": "g", "max_players": 1}',
    '{"type": "host", "game": "g", "max_players": 33}',
    '{"type": "quick_match", "game": "g", "max_players": 33}',
    '{"type": "host", "game": ""}',
    '{"type": "hello", "v": 1, "name": ""}',
    '{"type": "signal", "to": "x", "payload": {"kind": "offer", "sdp": "s"}, "from": "y"}',
    '{"type": "set_metadata", "metadata": {' + ",".join(f'"k{i}": 0' for i in range(33)) + "}}",
])
def test_strict_schema_refuses(frame: str) -> None:
    with pytest.raises(ProtocolError):
        p.parse_client(frame)


def test_a_lobby_holds_up_to_max_players() -> None:
    for kind in ("host", "quick_match"):
        message = p.parse_client(f'{{"type": "{kind}", "game": "g", "max_players": 32}}')
        assert message.max_players == p.MAX_PLAYERS == 32  # type: ignore[union-attr]


def test_relayed_signal_uses_from_on_the_wire() -> None:
    frame = p.encode(p.RelayedSignal(from_="a", payload=p.OfferPayload(sdp="s")))
    assert json.loads(frame) == {"type": "signal", "from": "a",
                                 "payload": {"kind": "offer", "sdp": "s", "attempt": 0}}


def test_issue_error_codes_exist() -> None:
    for code in ("bad_message", "unsupported_version", "lobby_not_found", "lobby_full",
                 "lobby_locked", "bad_password", "not_host", "not_in_lobby", "unknown_peer",
                 "rate_limited", "too_large"):
        assert p.ErrorCode(code).value == code


@given(st.lists(members, min_size=2, max_size=6, unique_by=lambda m: (m.seq, m.id)))
def test_exactly_one_side_offers(group: list[p.Member]) -> None:
    for a in group:
        for b in group:
            if a is not b:
                assert p.offers_to(a, b) != p.offers_to(b, a)


@pytest.mark.parametrize(("frame", "version"), [
    ('{"type": "hello", "v": 7, "name": "x", "new_field": 1}', 7),
    ('{"type": "hello", "v": true}', None),
    ('{"type": "ping", "v": 7}', None),
    ("[]", None),
    ("{nope", None),
])
def test_hello_version_of(frame: str, version: int | None) -> None:
    assert p.hello_version_of(frame) == version
