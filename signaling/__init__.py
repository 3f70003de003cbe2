"""The netplay lobby server: introduces players, relays WebRTC signals, never sees game traffic.

Run it with ``netplay-lobby`` or ``python -m signaling``; embed it with
``signaling.app.create_app(Settings(...))``. It must never import aiortc.
"""

from __future__ import annotations

import logging

logging.getLogger("signaling").addHandler(logging.NullHandler())
