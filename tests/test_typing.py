"""The public API is typed (``py.typed`` ships): mypy --strict accepts the packages as they are."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(300)


def test_py_typed_marker_ships() -> None:
    assert (ROOT / "netplay" / "py.typed").is_file()


def test_mypy_strict_passes_on_netplay_and_signaling(tmp_path: pathlib.Path) -> None:
    # Settings come from pyproject.toml ([tool.mypy] strict = true, packages).
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "cache")],
        cwd=ROOT, capture_output=True, text=True, timeout=280,
    )
    assert result.returncode == 0, result.stdout + result.stderr
