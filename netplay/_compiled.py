"""The optional compiled build: which modules mypyc compiles, and whether this import uses it.

``NETPLAY_COMPILE=1 pip install .`` compiles :data:`COMPILED_MODULES` (the no-I/O core) with
mypyc, as black and mypy ship theirs; ``setup.py`` reads the list from here, so this module
imports nothing outside the standard library. A normal install leaves them pure Python, and
both behave the same (``tests/test_compiled.py`` and the unit tests of these modules run
against both in CI).
"""

from __future__ import annotations

import importlib
from importlib.machinery import ExtensionFileLoader

__all__ = ["COMPILED_MODULES", "compiled_modules"]

COMPILED_MODULES = (
    "netplay.seq",
    "netplay.clock",
    "netplay.snapshots",
    "netplay.interpolation",
    "netplay.stats",
    "netplay.delta",
    "netplay.wire",
    "netplay._unpack",
    "netplay.state",
    "netplay.congestion",
)
"""The modules the compiled build compiles (mypyc needs them to pass ``mypy --strict``)."""


def compiled_modules() -> dict[str, bool]:
    """For each of :data:`COMPILED_MODULES`, whether the imported module is compiled (an
    extension module) rather than its ``.py`` source."""
    return {name: isinstance(getattr(importlib.import_module(name).__spec__, "loader", None),
                             ExtensionFileLoader)
            for name in COMPILED_MODULES}
