"""``netplay-lobby`` / ``python -m signaling``: run the lobby server on uvicorn.

Every option mirrors a :class:`~signaling.settings.Settings` field and can also be set by the
environment variable ``NETPLAY_LOBBY_<FIELD>``; the command line wins.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import re
import sys
from collections.abc import Sequence
from typing import Any

from netplay import __version__
from netplay.protocol import PROTOCOL_VERSION

from .settings import Settings, convert, env_var, field_kind

__all__ = ["build_parser", "configure_logging", "main", "settings_from_args", "settings_to_env"]

_METAVARS = {int: "N", float: "NUMBER", tuple: "A,B,..."}


def _field_help(f: dataclasses.Field[object]) -> str:
    doc = _FIELD_DOCS.get(f.name, "")
    default = f.default
    shown = ",".join(default) if isinstance(default, tuple) else default
    shown = "none" if shown in (None, "") else shown
    return f"{doc} [env {env_var(f.name)}; default {shown}]"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="netplay-lobby",
        description="The netplay lobby server: lobbies, matchmaking and WebRTC signaling over "
                    "one WebSocket endpoint (/ws), plus GET /healthz and GET /lobbies.",
    )
    parser.add_argument("--version", action="version",
                        version=f"netplay-lobby {__version__} (protocol {PROTOCOL_VERSION})")
    for f in dataclasses.fields(Settings):
        kind = field_kind(f.name)
        parser.add_argument(
            "--" + f.name.replace("_", "-"), dest=f.name, default=None,
            metavar=_METAVARS.get(kind, "TEXT"), help=_field_help(f),
        )
    return parser


def settings_from_args(argv: Sequence[str] | None = None,
                       environ: dict[str, str] | None = None) -> Settings:
    """Defaults, then ``NETPLAY_LOBBY_*`` variables, then command-line options."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        overrides = {name: convert(name, raw) for name, raw in vars(args).items()
                     if raw is not None}
        return Settings.from_env(environ, **overrides)
    except ValueError as exc:  # one line, no usage text: the option itself was understood
        parser.exit(2, f"{parser.prog}: error: {exc}\n")


def main(argv: Sequence[str] | None = None) -> None:
    settings = settings_from_args(argv)
    import uvicorn

    from .app import create_app
    from .direct import uvicorn_ws

    configure_logging(settings)
    if settings.workers > 1:
        # Each worker process builds its own app from the environment: hand the settings down.
        os.environ.update(settings_to_env(settings))
        app: Any = "signaling.app:create_app_from_env"
    else:
        app = create_app(settings)
    uvicorn.run(
        app,
        factory=settings.workers > 1,
        workers=settings.workers if settings.workers > 1 else None,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level.lower(),
        ssl_certfile=settings.ssl_certfile,
        ssl_keyfile=settings.ssl_keyfile,
        ws_max_size=settings.ws_max_size,
        # Signaling frames are small and compressing them costs more than it saves: zlib state
        # per connection (tens of KiB) and CPU per frame. Node's ws leaves it off too.
        ws_per_message_deflate=False,
        ws=uvicorn_ws(settings),
        lifespan="on",
    )


def configure_logging(settings: Settings) -> None:
    """Log to stderr at ``settings.log_level`` (the server's own lines and uvicorn's)."""
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def settings_to_env(settings: Settings) -> dict[str, str]:
    """``NETPLAY_LOBBY_*`` variables that :meth:`Settings.from_env` reads back as ``settings``."""
    env = {}
    for f in dataclasses.fields(Settings):
        value = getattr(settings, f.name)
        if value is not None:
            env[env_var(f.name)] = ",".join(value) if isinstance(value, tuple) else str(value)
    return env


def _docs() -> dict[str, str]:
    """Field docstrings of Settings (the string under each field), for --help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(Settings))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for node, after in zip(body, body[1:], strict=False):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)):
            text = " ".join(str(after.value.value).split()).replace("``", "")
            docs[node.target.id] = re.sub(r":\w+:`([^`]*)`", r"\1", text)
    return docs


_FIELD_DOCS = _docs()

if __name__ == "__main__":
    main()
