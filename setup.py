"""Build hook for the optional compiled build; everything else is in pyproject.toml.

``NETPLAY_COMPILE=1 pip install .`` compiles the no-I/O core (``netplay._compiled``'s
``COMPILED_MODULES``) with mypyc into extension modules that sit next to the ``.py`` files and
take precedence over them. Without it (the default) this adds nothing and netplay installs as
pure Python. ``build_backend/netplay_build.py`` asks for ``mypy[mypyc]`` only when compiling.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

from setuptools import setup

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "build_backend"))
from netplay_build import compiling  # noqa: E402 (the backend's own switch)


def compiled_extensions() -> list[object]:
    from mypyc.build import mypycify  # a build requirement only when compiling

    names = runpy.run_path(str(HERE / "netplay" / "_compiled.py"))["COMPILED_MODULES"]
    paths = [name.replace(".", "/") + ".py" for name in names]
    # The build environment has none of netplay's dependencies (pip installs them after), so
    # the modules mypy follows from these (netplay/__init__.py imports pydantic) are checked
    # silently: only the compiled modules themselves must pass (they do, under --strict).
    return list(mypycify([*paths, "--follow-imports=silent"], opt_level="3"))


setup(ext_modules=compiled_extensions() if compiling() else [])
