"""The browser demo at ``/play``: Squares on a canvas, and the JavaScript client it runs on.

``netplay-lobby`` serves, from a source checkout:

- ``/play/`` the canvas version of Squares (``examples/squares/web/``): a browser player
  quick-matches into the same lobbies as ``netplay-demo`` players and bots;
- ``/play/netplay/`` the JavaScript client (``clients/js/``), an ES module a page imports
  without a build step.

Static files only, same origin as the lobby, so the page needs no CORS. On by default, with
no flag: nothing here is dynamic or secret, and a lobby installed from a package without these
folders answers 404 with a note instead. docs/browser.md describes it.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

__all__ = ["CLIENT_DIR", "DEMO_DIR", "play_routes"]

_ROOT = Path(__file__).resolve().parent.parent
CLIENT_DIR = _ROOT / "clients" / "js"
"""The JavaScript client, served at ``/play/netplay/``."""
DEMO_DIR = _ROOT / "examples" / "squares" / "web"
"""The canvas demo, served at ``/play/``."""


async def _to_slash(request: Request) -> Response:
    return RedirectResponse("/play/")


async def _missing(request: Request) -> Response:
    return PlainTextResponse("the browser demo is not installed here (serve the lobby from a "
                             "netplay source checkout: clients/js and examples/squares/web)",
                             status_code=404)


def play_routes() -> list[BaseRoute]:
    """The routes of the browser demo (a 404 note for the parts whose files are missing)."""
    routes: list[BaseRoute] = []
    if CLIENT_DIR.is_dir():
        routes.append(Mount("/play/netplay", StaticFiles(directory=CLIENT_DIR)))
    if DEMO_DIR.is_dir():
        routes += [Route("/play", _to_slash), Mount("/play", StaticFiles(directory=DEMO_DIR,
                                                                          html=True))]
    else:
        routes += [Route("/play", _missing), Route("/play/{path:path}", _missing)]
    return routes
