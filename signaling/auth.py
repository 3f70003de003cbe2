"""Shared-secret credentials: lobby auth tokens and TURN REST API credentials.

Auth tokens
    A game backend that wants only its own players in the lobby runs the lobby with
    ``--auth-secret SECRET`` and gives each player a token minted with the same secret::

        from signaling.auth import mint_token
        token = mint_token(SECRET, subject="player-42", ttl=300)

    The player's game passes it in ``hello`` (``token``). A token is
    ``base64url(json({"sub": subject, "exp": unix_seconds})) + "." + base64url(hmac_sha256)``,
    so a backend in another language can mint one too (see docs/lobby.md).

TURN credentials
    coturn with ``use-auth-secret`` and ``static-auth-secret=SECRET`` accepts
    ``username = "<expiry unix seconds>:<peer id>"`` with
    ``credential = base64(hmac_sha1(SECRET, username))`` until the expiry.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

from netplay.protocol import ErrorCode

from .lobby import LobbyError

__all__ = ["mint_token", "turn_credentials", "verify_token"]


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(secret: str, body: str) -> str:
    return _b64encode(hmac.new(secret.encode(), body.encode("ascii"), hashlib.sha256).digest())


def mint_token(secret: str, subject: str, ttl: float = 300, *, now: float | None = None) -> str:
    """A lobby auth token for ``subject`` (any string: a player or account id), valid ``ttl`` s."""
    if not secret:
        raise ValueError("mint_token needs a non-empty secret")
    issued = time.time() if now is None else now
    claims = {"sub": subject, "exp": int(issued + ttl)}
    body = _b64encode(json.dumps(claims, separators=(",", ":")).encode())
    return f"{body}.{_sign(secret, body)}"


def verify_token(secret: str, token: str, *, now: float | None = None) -> str:
    """Check a token's signature and expiry; returns its subject or raises ``LobbyError``
    (code ``bad_token``) for any token that is not one this secret signed and still valid."""
    if not token.isascii():  # tokens are base64url; hmac.compare_digest refuses other text
        raise LobbyError(ErrorCode.BAD_TOKEN, "auth token is malformed (not ASCII)")
    body, dot, signature = token.partition(".")
    if not dot or not hmac.compare_digest(_sign(secret, body), signature):
        raise LobbyError(ErrorCode.BAD_TOKEN, "auth token is not signed by this lobby's secret")
    try:
        claims = json.loads(_b64decode(body))
        subject, expiry = claims["sub"], claims["exp"]
        if not isinstance(subject, str) or not isinstance(expiry, int | float):
            raise TypeError
    except (ValueError, KeyError, TypeError):
        raise LobbyError(ErrorCode.BAD_TOKEN, "auth token is malformed") from None
    if (time.time() if now is None else now) >= expiry:
        raise LobbyError(ErrorCode.BAD_TOKEN, "auth token has expired")
    return subject


def turn_credentials(secret: str, peer_id: str, ttl: int,
                     *, now: float | None = None) -> tuple[str, str]:
    """TURN REST API ``(username, credential)`` for coturn's ``use-auth-secret``."""
    expiry = int((time.time() if now is None else now) + ttl)
    username = f"{expiry}:{peer_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode("ascii")
