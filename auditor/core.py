"""Which implementation of the per-packet core runs: compiled or pure Python.

The hot path has compiled twins (`decode/cpacket.pyx`, `sources/cpcap.pyx`, `cpipeline.pyx`,
and the DNS and ClientHello parsers `decode/cdns.pyx`, `decode/ctls.pyx`), built by
`pip install .` when a C compiler is there (setup.py), each beside the pure-Python code that is
its reference and gives identical results (tests/test_twins.py). `compiled(name)` imports a
twin unless it was not built or `EGRESS_AUDITOR_PURE_PYTHON=1` is set; `describe()` says which
core runs (`--version`, the live start-up line), `notice()` is what the replay summary adds to
its rate when the compiled core is missing.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["compiled", "describe", "notice", "PURE_ENV", "TWINS"]

PURE_ENV = "EGRESS_AUDITOR_PURE_PYTHON"
_FORCED_PURE = os.environ.get(PURE_ENV, "") not in ("", "0")
# Every compiled module setup.py builds.
TWINS = ("decode.cpacket", "sources.cpcap", "cpipeline", "decode.cdns", "decode.ctls")
_loaded: dict[str, ModuleType | None] = {}


def compiled(name: str) -> ModuleType | None:
    """The compiled module `auditor.<name>`, or None (then the caller uses its pure twin)."""
    if _FORCED_PURE:
        return None
    if name not in _loaded:
        try:
            _loaded[name] = importlib.import_module(f"auditor.{name}")
        except ImportError:
            _loaded[name] = None
    return _loaded[name]


def describe() -> str:
    """One phrase for the start-up line: which core runs, and why when it is not compiled."""
    if _FORCED_PURE:
        return f"pure Python ({PURE_ENV} is set)"
    if any(compiled(name) is None for name in TWINS):
        return ("pure Python (the compiled core was not built: reinstall with a C compiler "
                "present to get it)")
    return "compiled"


def notice() -> str | None:
    """What the replay summary adds to its rate when the compiled core is missing (not when
    the pure core was asked for); the live start-up line says `describe()`."""
    if _FORCED_PURE or all(compiled(name) is not None for name in TWINS):
        return None
    return ("pure-Python core: the compiled one was not built (no C compiler at install); "
            "same results, slower")
