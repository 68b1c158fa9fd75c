"""The fused passes of the quadratic network's step (the C extension ``grokbench_plugins.models._fused_quadratic``).

Two passes replace five torch operators of :func:`grokbench_plugins.models.quadratic.stacked_loss_and_grads`:

* :func:`forward`: ``act = (Σ_j W[idx[:, j]])²`` in one pass (in place of ``embedding_bag``, which allocates z, and a
  square);
* :func:`backward`: ``grad_W = 2 Aᵀ (z ⊙ gz)`` with z recomputed from the rows of W, which stay in cache (in place
  of ``⊙ z`` and a sparse CSR product or ``index_add_``).

The extension is built by the normal install (setup.py, ``optional=True``); without it, or with
``GROKBENCH_FUSED=0``, or for tensors it does not handle (not on the CPU, not contiguous, neither float32 nor
float64), :func:`applicable` is false and the caller takes the torch path, which stays the reference the tests
compare against. A missing extension is reported once per process by a ``notice:`` line on stderr
(:mod:`grokbench_plugins.compiled` loads it).
"""

from __future__ import annotations

from ctypes import CDLL
from functools import cache

import torch

from ..compiled import FUSED_ENV, I64, INT, PTR, cpu_contiguous, load, switched_on

__all__ = ["FUSED_ENV", "applicable", "backward", "enabled", "forward"]


@cache
def _library() -> CDLL | None:
    return load(
        "models._fused_quadratic",
        "the quadratic model's fused step",
        {
            "gb_quadratic_forward": [PTR, PTR, PTR, I64, I64, I64, I64, INT, INT],
            "gb_quadratic_backward": [PTR, PTR, PTR, PTR, I64, I64, I64, I64, INT, INT],
        },
    )


def enabled() -> bool:
    """Whether the fused passes are switched on (``GROKBENCH_FUSED`` unset or not ``0``) and built."""
    return switched_on() and _library() is not None


def applicable(*tensors: torch.Tensor) -> bool:
    """Whether the kernels handle these tensors: enabled, on the CPU, contiguous, float32 or float64 (one dtype)."""
    return cpu_contiguous(*tensors) and enabled()


#: elements of a pass per thread below which it runs on one thread
ELEMENTS_PER_THREAD = 1 << 21


def _threads(work: int) -> int:
    """torch's intra-op threads, at most one per :data:`ELEMENTS_PER_THREAD` elements of the pass. The passes'
    threads are their own, not torch's: right after a torch operator, torch's OpenMP workers spin on the other
    cores, and a pass thread waits for its turn there (docs/performance.md has the measurements)."""
    return max(1, min(torch.get_num_threads(), work // ELEMENTS_PER_THREAD))


def _call(name: str, W: torch.Tensor, idx: torch.Tensor, *args: int) -> None:
    if W.dim() != 2 or idx.dim() != 2 or idx.dtype != torch.int64 or not idx.is_contiguous():
        raise ValueError("fused quadratic step: W must be [rows, h] and idx a contiguous int64 [n, k]")
    (n, k), (rows, h) = idx.shape, W.shape
    lib = _library()
    assert lib is not None
    status = getattr(lib, name)(*args, n, k, rows, h, W.element_size(), _threads(n * h))
    if status == -2:
        raise IndexError(f"fused quadratic step: a row index outside [0, {rows})")
    if status:
        raise ValueError(f"fused quadratic step: unsupported dtype {W.dtype}")


def forward(W: torch.Tensor, idx: torch.Tensor, act: torch.Tensor) -> None:
    """``act[i] = (Σ_j W[idx[i, j]])²``: W ``[rows, h]``, idx ``[n, k]`` int64 rows of W, act ``[n, h]``."""
    _call("gb_quadratic_forward", W, idx, W.data_ptr(), idx.data_ptr(), act.data_ptr())


def backward(W: torch.Tensor, idx: torch.Tensor, gz: torch.Tensor, grad_W: torch.Tensor) -> None:
    """``grad_W = 0; grad_W[idx[i, j]] += 2 z[i] ⊙ gz[i]`` with z[i] = Σ_j W[idx[i, j]] (summed in example order,
    whatever the number of threads): W and grad_W ``[rows, h]``, gz ``[n, h]``."""
    _call("gb_quadratic_backward", W, idx, W.data_ptr(), idx.data_ptr(), gz.data_ptr(), grad_W.data_ptr())
