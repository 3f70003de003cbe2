"""The per-address limit settings: flags, environment variables, defaults and validation."""

from __future__ import annotations

from typing import Any

import pytest

from signaling.__main__ import settings_from_args
from signaling.settings import Settings


def test_defaults_are_the_documented_ones() -> None:
    settings = Settings()
    assert settings.max_connections_per_ip == 64
    assert settings.hello_timeout == 10.0
    assert settings.max_lobbies_per_ip == 8
    assert settings.password_attempts == 10


def test_flags_and_environment_variables() -> None:
    environ = {"NETPLAY_LOBBY_MAX_CONNECTIONS_PER_IP": "5", "NETPLAY_LOBBY_HELLO_TIMEOUT": "2.5",
               "NETPLAY_LOBBY_MAX_LOBBIES_PER_IP": "3", "NETPLAY_LOBBY_PASSWORD_ATTEMPTS": "4"}
    settings = settings_from_args([], environ=environ)
    assert (settings.max_connections_per_ip, settings.hello_timeout,
            settings.max_lobbies_per_ip, settings.password_attempts) == (5, 2.5, 3, 4)
    settings = settings_from_args(["--max-connections-per-ip", "7", "--hello-timeout", "1",
                                   "--max-lobbies-per-ip", "2", "--password-attempts", "9"],
                                  environ=environ)
    assert (settings.max_connections_per_ip, settings.hello_timeout,
            settings.max_lobbies_per_ip, settings.password_attempts) == (7, 1.0, 2, 9)


@pytest.mark.parametrize("bad", [{"max_connections_per_ip": 0}, {"hello_timeout": 0},
                                 {"max_lobbies_per_ip": 0}, {"password_attempts": 0}])
def test_limits_must_be_positive(bad: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        Settings(**bad)
