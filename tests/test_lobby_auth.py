"""Auth tokens and TURN REST API credentials: unit tests and against a real lobby."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

import pytest

from netplay.protocol import ErrorCode
from signaling.app import ice_servers
from signaling.auth import mint_token, turn_credentials, verify_token
from signaling.lobby import LobbyError
from signaling.settings import Settings

SECRET = "s3cret"


def test_token_round_trip() -> None:
    token = mint_token(SECRET, "player-42", ttl=60)
    assert verify_token(SECRET, token) == "player-42"


@pytest.mark.parametrize("tamper", [
    lambda t: t + "x",
    lambda t: t.replace(".", ""),
    lambda t: "A" + t[1:],
    lambda t: mint_token("other secret", "player-42", 60),
    lambda t: "",
    lambda t: "not.a-token",
])
def test_forged_tokens_are_refused(tamper: Any) -> None:
    token = tamper(mint_token(SECRET, "player-42", ttl=60))
    with pytest.raises(LobbyError) as caught:
        verify_token(SECRET, token)
    assert caught.value.code == ErrorCode.BAD_TOKEN


def test_expired_token() -> None:
    token = mint_token(SECRET, "p", ttl=10, now=1000)
    assert verify_token(SECRET, token, now=1009) == "p"
    with pytest.raises(LobbyError, match="expired"):
        verify_token(SECRET, token, now=1010)


def test_signed_garbage_is_malformed() -> None:
    body = base64.urlsafe_b64encode(b'{"sub": 5}').rstrip(b"=").decode()
    sig = base64.urlsafe_b64encode(
        hmac.new(SECRET.encode(), body.encode(), hashlib.sha256).digest()).rstrip(b"=").decode()
    with pytest.raises(LobbyError, match="malformed"):
        verify_token(SECRET, f"{body}.{sig}")


def test_mint_needs_a_secret() -> None:
    with pytest.raises(ValueError):
        mint_token("", "p")


def test_turn_credentials_follow_the_turn_rest_api() -> None:
    username, credential = turn_credentials("turnsecret", "peer1", ttl=3600, now=1_700_000_000)
    assert username == "1700003600:peer1"
    expected = base64.b64encode(
        hmac.new(b"turnsecret", b"1700003600:peer1", hashlib.sha1).digest()).decode()
    assert credential == expected


def test_ice_servers_default_to_none() -> None:
    assert ice_servers(Settings(), "p") == []


def test_ice_servers_with_stun_and_turn() -> None:
    settings = Settings(stun_urls=("stun:127.0.0.1:3478",),
                        turn_urls=("turn:127.0.0.1:3478?transport=udp",),
                        turn_secret="t", turn_ttl=600)
    stun, turn = ice_servers(settings, "peer", now=1000)
    assert stun.urls == ["stun:127.0.0.1:3478"] and stun.username is None
    assert turn.urls == ["turn:127.0.0.1:3478?transport=udp"]
    assert (turn.username, turn.credential) == turn_credentials("t", "peer", 600, now=1000)


async def test_lobby_with_auth_secret(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(auth_secret=SECRET)
    missing = await connect(server, hello=False)
    error = await missing.hello("anon")
    assert error["type"] == "error" and error["code"] == "not_authenticated"
    await missing.ws.wait_closed()
    assert missing.ws.close_code == 1008

    for bad in (mint_token("wrong", "p", 60), mint_token(SECRET, "p", ttl=-1)):
        client = await connect(server, hello=False)
        error = await client.hello("p", token=bad)
        assert error["code"] == "bad_token"
        await client.ws.wait_closed()

    ok = await connect(server, "p", token=mint_token(SECRET, "p", ttl=60))
    assert ok.peer_id


async def test_welcome_carries_fresh_turn_credentials(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(turn_urls=("turn:127.0.0.1:3478",), turn_secret="ts", turn_ttl=120,
                           stun_urls=("stun:127.0.0.1:3478",))
    before = int(time.time())
    client = await connect(server)
    stun, turn = client.welcome["ice_servers"]
    assert stun == {"urls": ["stun:127.0.0.1:3478"]}
    expiry, peer = turn["username"].split(":")
    assert peer == client.peer_id
    assert before + 120 <= int(expiry) <= int(time.time()) + 120
    digest = hmac.new(b"ts", turn["username"].encode(), hashlib.sha1).digest()
    assert turn["credential"] == base64.b64encode(digest).decode()


async def test_resume_needs_no_new_auth_token(lobby_factory: Any, connect: Any) -> None:
    server = lobby_factory(auth_secret=SECRET, resume_grace=5)
    client = await connect(server, "p", token=mint_token(SECRET, "p", ttl=60))
    client.ws.transport.abort()
    back = await connect(server, hello=False)
    welcome = await back.hello("p", resume=client.resume_token)  # no token: the resume proves it
    assert welcome["type"] == "welcome" and welcome["resumed"] is True
    stranger = await connect(server, hello=False)
    error = await stranger.hello("q", resume="guessed")  # no valid resume: a token is needed
    assert error["code"] == "not_authenticated"
