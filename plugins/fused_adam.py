"""Adam's update in two fused C passes (the extension ``grokbench_plugins._fused_adam``).

``torch.optim.Adam``'s single-tensor update runs eight operators per parameter tensor (decay, ``lerp_``, ``mul_``,
``addcmul_``, ``sqrt``, ``div_``, ``add_``, ``addcdiv_``), each a pass over the tensor with its own dispatch.
:func:`moments` does the first four in one pass and :func:`update` the last three in another, with the same
arithmetic, operation for operation, so the numbers are the same bit for bit (plugins/_fused_adam.c says how;
tests/test_fused_adam.py checks it). The square root between them stays torch's. On the quadratic model's default
step (p = 97, width 512) that is 0.21 ms instead of 0.31 ms per step (docs/performance.md).

Where the extension is not built, with ``GROKBENCH_FUSED=0``, or for tensors it does not handle,
:func:`applicable` is false and :class:`grokbench_plugins.optimizers.AdamStep` takes its torch path.
"""

from __future__ import annotations

from ctypes import CDLL
from functools import cache

import torch

from .compiled import DOUBLE, I64, INT, PTR, cpu_contiguous, load, switched_on


@cache
def _library() -> CDLL | None:
    return load(
        "_fused_adam",
        "Adam's fused update",
        {
            "gb_adam_moments": [PTR, PTR, PTR, PTR, I64, DOUBLE, DOUBLE, DOUBLE, DOUBLE, INT],
            "gb_adam_update": [PTR, PTR, PTR, I64, DOUBLE, DOUBLE, DOUBLE, INT],
        },
    )


def applicable(*tensors: torch.Tensor) -> bool:
    """Whether the passes handle these tensors: switched on, built, CPU, contiguous, one of float32 and float64."""
    return cpu_contiguous(*tensors) and switched_on() and _library() is not None


def moments(
    p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, decay: float, w: float, beta2: float, c: float
) -> None:
    """``p.mul_(decay)`` (when decay ≠ 1); ``m.lerp_(g, w)``; ``v.mul_(beta2).addcmul_(g, g, value=c)``."""
    lib = _library()
    assert lib is not None and p.numel() == g.numel() == m.numel() == v.numel()
    if lib.gb_adam_moments(
        p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), p.numel(), decay, w, beta2, c, p.element_size()
    ):
        raise ValueError(f"fused Adam: unsupported dtype {p.dtype}")


def update(p: torch.Tensor, m: torch.Tensor, d: torch.Tensor, b: float, eps: float, s: float) -> None:
    """``d.div_(b).add_(eps)`` into a temporary and ``p.addcdiv_(m, d, value=s)``; d (``√v``) is not changed."""
    lib = _library()
    assert lib is not None and p.numel() == m.numel() == d.numel()
    if lib.gb_adam_update(p.data_ptr(), m.data_ptr(), d.data_ptr(), p.numel(), b, eps, s, p.element_size()):
        raise ValueError(f"fused Adam: unsupported dtype {p.dtype}")
