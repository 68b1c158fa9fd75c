"""The first-party plugins' optional C extensions (setup.py builds them), loaded with ctypes.

Each extension is plain C without torch headers; its Python wrapper
(:mod:`grokbench_plugins.models.fused_quadratic`, :mod:`grokbench_plugins.methods.fused_adam`) passes the data
pointers of contiguous CPU tensors. Without a C compiler at install time the extensions are missing and every
wrapper reports once that its caller takes the torch path, which stays the reference the tests compare against. ``GROKBENCH_FUSED=0`` selects that path everywhere.
"""

from __future__ import annotations

import ctypes
import importlib
import os
import sys

import torch

#: set to ``0`` to run the reference torch paths (comparison, debugging)
FUSED_ENV = "GROKBENCH_FUSED"

I64, INT, DOUBLE, PTR = ctypes.c_int64, ctypes.c_int, ctypes.c_double, ctypes.c_void_p


def load(module: str, what: str, signatures: dict[str, list[type]]) -> ctypes.CDLL | None:
    """The shared object of ``grokbench_plugins.<module>`` (``module`` as ``models._fused_quadratic``) with the
    argument types of its functions (each returns an int status), or ``None`` after a ``notice:`` line naming
    ``what`` when it was not built."""
    try:
        lib = ctypes.CDLL(importlib.import_module(f"grokbench_plugins.{module}").__file__)
    except (ImportError, OSError, TypeError):  # not built (no compiler at install time), or not loadable
        print(f"notice: {what} is not built (no C compiler at install time?); using the torch path", file=sys.stderr)
        return None
    for name, argtypes in signatures.items():
        function = getattr(lib, name)
        function.argtypes, function.restype = argtypes, INT
    return lib


def switched_on() -> bool:
    """Whether ``GROKBENCH_FUSED`` is unset or not ``0``."""
    return os.environ.get(FUSED_ENV, "1") != "0"


def cpu_contiguous(*tensors: torch.Tensor) -> bool:
    """Whether the tensors are all on the CPU, contiguous, and of one dtype, float32 or float64."""
    dtype = tensors[0].dtype
    return dtype in (torch.float32, torch.float64) and all(
        t.device.type == "cpu" and t.is_contiguous() and t.dtype == dtype for t in tensors
    )
