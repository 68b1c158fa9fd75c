"""Adam's update, in two fused C passes (the extension ``grokbench_plugins.methods._fused_adam``) or in torch's
operators.

``torch.optim.Adam``'s single-tensor update runs eight operators per parameter tensor (decay, ``lerp_``, ``mul_``,
``addcmul_``, ``sqrt``, ``div_``, ``add_``, ``addcdiv_``), each a pass over the tensor with its own dispatch
(:func:`torch_update`). The extension does the first four in one pass and the last three in another, with the same
arithmetic, operation for operation, and torch's square root between them, so the numbers are the same bit for
bit (plugins/methods/_fused_adam.c says how; tests/test_fused_adam.py checks it; docs/performance.md has the
timings). Before it is first used, one update is computed both ways on this CPU: if the bits differ (a CPU whose
torch kernels fuse differently), the extension is not used, after a ``notice:`` line.

:func:`update` takes the passes where the extension is built and works on this CPU, ``GROKBENCH_FUSED`` is not
``0``, and the tensors are contiguous float32 or float64 CPU tensors; torch's operators otherwise.
"""

from __future__ import annotations

import sys
from ctypes import CDLL
from functools import cache
from typing import NamedTuple

import torch

from ..compiled import DOUBLE, I64, INT, PTR, cpu_contiguous, load, switched_on


@cache
def _library() -> CDLL | None:
    lib = load(
        "methods._fused_adam",
        "Adam's fused update",
        {
            "gb_adam_moments": [PTR, PTR, PTR, PTR, I64, DOUBLE, DOUBLE, DOUBLE, DOUBLE, INT],
            "gb_adam_update": [PTR, PTR, PTR, I64, DOUBLE, DOUBLE, DOUBLE, INT],
        },
    )
    if lib is not None and not _same_bits_as_torch(lib):
        print(
            "notice: Adam's fused update does not give torch's bits on this CPU (its lerp or addcmul kernels round "
            "differently); using the torch path",
            file=sys.stderr,
        )
        return None
    return lib


def _same_bits_as_torch(lib: CDLL) -> bool:
    """One update of both dtypes, both lerp formulas and a decay, through the passes and through torch's
    operators, compared bit for bit: 100 elements, so that torch's vector loop and its scalar tail both run. Where
    a CPU's torch kernels fuse differently (no FMA), the fused update is not used."""
    gen = torch.Generator().manual_seed(0)
    for dtype in (torch.float32, torch.float64):
        p, g, m, v = (torch.randn(100, generator=gen, dtype=torch.float64).to(dtype) for _ in range(4))
        for w in (0.1, 0.7):
            ours, theirs = [t.clone() for t in (p, m, v.abs())], [t.clone() for t in (p, m, v.abs())]
            h = Scalars(decay=0.999, w=w, beta2=0.98, c=0.02, b=0.3, eps=1e-8, s=-0.01)
            _fused_update(lib, ours[0], g, ours[1], ours[2], torch.empty_like(p), h)
            torch_update(theirs[0], g, theirs[1], theirs[2], torch.empty_like(p), h)
            if not all(torch.equal(a, b) for a, b in zip(ours, theirs)):
                return False
    return True


def _usable(*tensors: torch.Tensor) -> CDLL | None:
    """The extension, where it is switched on, built, works on this CPU and handles these tensors (CPU,
    contiguous, one of float32 and float64); ``None`` otherwise."""
    return _library() if switched_on() and cpu_contiguous(*tensors) else None


def applicable(*tensors: torch.Tensor) -> bool:
    """Whether :func:`update` takes the passes for these tensors."""
    return _usable(*tensors) is not None


class Scalars(NamedTuple):
    """One update's numbers: ``p.mul_(decay)``, ``m.lerp_(g, w)``, ``v.mul_(beta2).addcmul_(g, g, value=c)``,
    ``p.addcdiv_(m, √v / b + eps, value=s)``."""

    decay: float
    w: float
    beta2: float
    c: float
    b: float
    eps: float
    s: float


def update(p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, denom: torch.Tensor, h: Scalars) -> None:
    """One Adam update of p in place from its gradient g, its moments m and v, and a scratch tensor denom (all
    laid out as p). Two C passes where the extension is used, torch's operators otherwise: the same bits."""
    lib = _usable(p, g)  # m, v and denom are laid out as p
    if lib is None:
        torch_update(p, g, m, v, denom, h)
    else:
        _fused_update(lib, p, g, m, v, denom, h)


def torch_update(
    p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, denom: torch.Tensor, h: Scalars
) -> None:
    """:func:`update` as torch.optim.Adam's single-tensor path writes it: eight operators."""
    if h.decay != 1.0:
        p.mul_(h.decay)
    m.lerp_(g, h.w)
    v.mul_(h.beta2).addcmul_(g, g, value=h.c)
    torch.sqrt(v, out=denom).div_(h.b).add_(h.eps)
    p.addcdiv_(m, denom, value=h.s)


def _fused_update(
    lib: CDLL, p: torch.Tensor, g: torch.Tensor, m: torch.Tensor, v: torch.Tensor, denom: torch.Tensor, h: Scalars
) -> None:
    size, n = p.element_size(), p.numel()
    if lib.gb_adam_moments(p.data_ptr(), g.data_ptr(), m.data_ptr(), v.data_ptr(), n, h.decay, h.w, h.beta2, h.c, size):
        raise ValueError(f"fused Adam: unsupported dtype {p.dtype}")
    torch.sqrt(v, out=denom)  # torch's square root (MKL's at these sizes), as the torch path takes it
    lib.gb_adam_update(p.data_ptr(), m.data_ptr(), denom.data_ptr(), n, h.b, h.eps, h.s, size)
