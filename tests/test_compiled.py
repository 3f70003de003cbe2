"""The optional compiled build (``NETPLAY_COMPILE=1 pip install .``, mypyc) and its switch.

CI runs the unit tests of the compiled modules, this file and a few integration tests twice:
once against the pure-Python checkout and once against the compiled wheel (``.ci/run``), with
``NETPLAY_EXPECT_COMPILED`` saying which build each run must be using, so a run that silently
imported the other one fails here. The tests below the first two hold for both builds: they
pin down the places where mypyc-compiled code would otherwise behave differently.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import netplay
from netplay._compiled import COMPILED_MODULES, compiled_modules
from netplay.clock import ClockSync
from netplay.delta import DeltaDecoder, DeltaEncoder, copy_state, diff, patch
from netplay.errors import ProtocolError
from netplay.interpolation import lerp_state
from netplay.seq import next_seq, seq_diff, seq_gt
from netplay.snapshots import SnapshotBuffer

ROOT = Path(__file__).resolve().parent.parent
BACKEND = ROOT / "build_backend"
EXPECT = os.environ.get("NETPLAY_EXPECT_COMPILED", "")


def test_flag_matches_the_imported_modules() -> None:
    states = compiled_modules()
    assert set(states) == set(COMPILED_MODULES)
    assert netplay.compiled is all(states.values())
    for name, compiled in states.items():
        path = importlib.import_module(name).__file__
        assert path is not None and path.endswith(".py") is not compiled, (name, path)


@pytest.mark.skipif(EXPECT not in ("0", "1"),
                    reason="NETPLAY_EXPECT_COMPILED is not set (CI sets it for both runs)")
def test_the_expected_build_is_in_use() -> None:
    """CI says which build this run tests; importing the other one must fail the run."""
    states = compiled_modules()
    if EXPECT == "1":
        assert netplay.compiled, f"expected the compiled build, got {states}"
        assert all(states.values()), states
    else:
        assert not any(states.values()), f"expected pure Python, got {states}"
        assert netplay.compiled is False


def test_import_logs_which_build_at_debug(tmp_path: Path) -> None:
    code = ("import logging; logging.basicConfig(level=logging.DEBUG, format='%(message)s'); "
            "import netplay")
    # Not from the checkout's directory: the child must import what this run imports.
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60, check=True, cwd=tmp_path)
    expected = "compiled build (mypyc)" if netplay.compiled else "pure Python"
    assert f"netplay {netplay.__version__}: {expected}" in result.stderr, result.stderr


# --- the build switch: mypy only when compiling, never an editable compiled build --------------


def _hook(hook: str, compile_value: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    """Call one hook of build_backend/netplay_build.py as pip would: in a process of its own,
    from the project directory (setuptools runs ./setup.py), with ``NETPLAY_COMPILE`` set or
    not. Prints the hook's result as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "NETPLAY_COMPILE"}
    if compile_value is not None:
        env["NETPLAY_COMPILE"] = compile_value
    code = (f"import json, os, sys; sys.path.insert(0, {str(BACKEND)!r}); import netplay_build; "
            f"print(json.dumps([netplay_build.{hook}(*sys.argv[1:]), "
            "os.environ.get('NETPLAY_COMPILE'), netplay_build.MYPYC]))")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env=env)


@pytest.mark.parametrize("value", [None, "", "0"])
def test_default_build_needs_no_mypy(value: str | None) -> None:
    for hook in ("get_requires_for_build_wheel", "get_requires_for_build_editable"):
        result = _hook(hook, value)
        assert result.returncode == 0, result.stderr
        requires = json.loads(result.stdout.splitlines()[-1])[0]
        assert not any("mypy" in r for r in requires), requires


def test_compiled_build_asks_for_mypyc() -> None:
    result = _hook("get_requires_for_build_wheel", "1")
    assert result.returncode == 0, result.stderr
    requires, after, mypyc = json.loads(result.stdout.splitlines()[-1])
    assert mypyc in requires and mypyc.startswith("mypy[mypyc]")
    assert after == "1"  # restored after setuptools ran setup.py without it


def test_compiled_editable_build_is_refused(tmp_path: Path) -> None:
    for hook, args in (("get_requires_for_build_editable", ()),
                       ("build_editable", (str(tmp_path),))):
        result = _hook(hook, "1", *args)
        assert result.returncode != 0
        assert "RuntimeError: NETPLAY_COMPILE=1 does not work with an editable install" \
            in result.stderr, result.stderr
        assert "NETPLAY_COMPILE=1 pip install ." in result.stderr
    assert list(tmp_path.iterdir()) == []


def test_setup_compiles_exactly_the_listed_modules() -> None:
    for name in COMPILED_MODULES:
        assert (ROOT / (name.replace(".", "/") + ".py")).is_file(), name
    assert "_compiled.py" in (ROOT / "setup.py").read_text()  # the one list, read from there


# --- where compiled code would differ: both builds must do what the pure one does ---------------
# mypyc checks annotated argument types on entry (a str for an int raises TypeError, True becomes
# 1) and its native recursion has no depth limit (mypyc/mypyc#582). The functions below take
# ``object`` where they check types themselves, and bound their recursion.


@pytest.mark.parametrize("bad", ["1", None, True, 1.0])
def test_checked_sequence_functions_raise_value_error(bad: Any) -> None:
    for call in (lambda: next_seq(bad), lambda: seq_diff(bad, 1), lambda: seq_diff(1, bad),
                 lambda: seq_gt(bad, 1), lambda: seq_gt(1, bad)):
        with pytest.raises(ValueError, match=f"got {bad!r}"):
            call()


@pytest.mark.parametrize(("seq", "tick", "sent_at"),
                         [("1", 0, 0.0), (True, 0, 0.0), (1, True, 0.0), (1, "0", 0.0),
                          (1, 0, "now"), (1, 0, None)])
def test_snapshot_envelope_of_wrong_type_is_protocol_error(seq: Any, tick: Any,
                                                           sent_at: Any) -> None:
    with pytest.raises(ProtocolError):
        SnapshotBuffer().push(seq, tick, sent_at, 0.0)


def test_clock_rejects_non_numbers_and_takes_ints() -> None:
    clock = ClockSync()
    assert clock.on_sample(0.0, "1", 1.0, 2.0) is False  # type: ignore[arg-type]
    assert clock.on_sample(0.0, None, 1.0, 2.0) is False  # type: ignore[arg-type]
    assert clock.rejected == 2
    assert clock.on_sample(0, 5, 5, 2) is True  # ints are numbers too
    assert clock.rtt == 2.0 and clock.offset == 4.0


def test_delta_sequence_numbers_of_wrong_type() -> None:
    dec = DeltaDecoder()
    with pytest.raises(ProtocolError, match="snapshot seq"):
        dec.decode("1", None, {})
    with pytest.raises(ProtocolError, match="delta baseline"):
        dec.decode(11, True, {})
    enc = DeltaEncoder()
    with pytest.raises(ValueError, match="sequence number"):
        enc.encode("1", {})
    assert enc.ack("1") is False


def _nested(depth: int, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def test_states_that_contain_themselves_raise_recursion_error() -> None:
    """A game state that (by mistake) contains itself is a RecursionError in both builds; the
    compiled one would otherwise overflow the C stack and kill the process."""
    state: dict[str, Any] = {"x": 1.0}
    state["self"] = state
    before: dict[str, Any] = {"x": 2.0}
    before["self"] = before
    items: list[Any] = [1.0]
    items.append(items)
    with pytest.raises(RecursionError):
        copy_state(state)
    with pytest.raises(RecursionError):
        diff(before, state)
    with pytest.raises(RecursionError):
        lerp_state(before, state, 0.5)
    with pytest.raises(RecursionError):
        lerp_state(items, [2.0, items], 0.5)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        patch(before, state)


@pytest.mark.parametrize("depth", [5_000, 200_000])
def test_deep_states_raise_recursion_error(depth: int) -> None:
    deep = _nested(depth, 1.0)
    with pytest.raises(RecursionError):
        copy_state(deep)
    with pytest.raises(RecursionError):
        diff(_nested(depth, 0.0), deep)
    with pytest.raises(RecursionError):
        lerp_state(deep, deep, 0.5)
    with pytest.raises(ProtocolError, match="nested too deeply"):
        patch(_nested(depth, 0.0), deep)


def test_states_as_deep_as_msgpack_allows_work() -> None:
    """msgpack packs at most 1,024 levels; the bound is above what a datagram can carry in
    both builds (the pure one may reach Python's own recursion limit first)."""
    depth = 200
    old, new = _nested(depth, 0.0), _nested(depth, 1.0)
    assert patch(old, diff(old, new)) == new
    assert copy_state(new) == new
    assert math.isclose(_leaf(lerp_state(old, new, 0.25)), 0.25)


def _leaf(value: Any) -> float:
    while isinstance(value, dict):
        value = value["a"]
    return float(value)
