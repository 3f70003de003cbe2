"""netplay's build backend: setuptools', plus ``mypy[mypyc]`` when ``NETPLAY_COMPILE=1``.

A build requirement in pyproject.toml would make every install fetch mypy; asking for it here
(PEP 517's ``get_requires_for_build_*`` hooks) keeps the default install pure Python and quick,
and ``NETPLAY_COMPILE=1 pip install .`` gets mypyc into the isolated build environment.
"""

from __future__ import annotations

import os
from typing import Any

from setuptools import build_meta as _setuptools
from setuptools.build_meta import *  # noqa: F401,F403 (the other PEP 517 hooks, unchanged)

MYPYC = "mypy[mypyc]>=1.10"
"""What compiling needs: the mypy that checks the project (dev extra) ships mypyc."""


def compiling() -> bool:
    """``NETPLAY_COMPILE`` set to anything but empty or ``0`` (setup.py reads it too)."""
    return os.environ.get("NETPLAY_COMPILE", "0") not in ("", "0")


def _requires(hook: Any, config_settings: dict[str, Any] | None) -> list[str]:
    # setuptools runs setup.py to find its requirements; mypyc isn't there yet, so that run
    # must not compile (setup.py would fail to import it). The build itself then does.
    compile_now = compiling()
    saved = os.environ.pop("NETPLAY_COMPILE", None)
    try:
        requires = list(hook(config_settings))
    finally:
        if saved is not None:
            os.environ["NETPLAY_COMPILE"] = saved
    return [*requires, MYPYC] if compile_now else requires


def get_requires_for_build_wheel(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements, plus :data:`MYPYC` when compiling."""
    return _requires(_setuptools.get_requires_for_build_wheel, config_settings)


EDITABLE_REFUSED = (
    "NETPLAY_COMPILE=1 does not work with an editable install (pip install -e): the compiled "
    "modules would be written next to their .py files and shadow every later edit to them. "
    "Install the compiled build with `NETPLAY_COMPILE=1 pip install .`, or unset "
    "NETPLAY_COMPILE for an editable (pure Python) install."
)


def get_requires_for_build_editable(config_settings: dict[str, Any] | None = None) -> list[str]:
    """setuptools' requirements; refuses a compiled editable build (:data:`EDITABLE_REFUSED`)."""
    if compiling():
        raise RuntimeError(EDITABLE_REFUSED)
    return list(_setuptools.get_requires_for_build_editable(config_settings))


def build_editable(wheel_directory: str, config_settings: dict[str, Any] | None = None,
                   metadata_directory: str | None = None) -> str:
    """setuptools' editable build; refuses a compiled one (:data:`EDITABLE_REFUSED`)."""
    if compiling():
        raise RuntimeError(EDITABLE_REFUSED)
    return str(_setuptools.build_editable(wheel_directory, config_settings, metadata_directory))
