"""The empirical neural tangent kernel Θ(x, x') = J(x) J(x')ᵀ of any model plugin, J = ∂f(θ; x)/∂θ.

:func:`empirical_ntk` uses the model's closed form (``Model.ntk``) when it has one, else :func:`torch_func_ntk`
(per-example Jacobians of ``Model.apply`` through ``vmap(jacrev(...))``, in chunks). ``output``: ``"first"``
(Θ₀₀, the first output's kernel, what the paper tracks), ``"trace"`` (Σ_c Θ_cc) or ``"full"`` (``[n1, n2, c, c]``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import torch
from torch.func import jacrev, vmap

from grokbench.plugin.contracts import Model

Output = Literal["first", "trace", "full"]
OUTPUTS: tuple[str, ...] = ("first", "trace", "full")
Method = Literal["auto", "closed-form", "torch.func"]

#: examples per torch.func Jacobian chunk (bounds memory at chunk × outputs × parameters)
CHUNK = 256


def has_closed_form(model: Model | type[Model]) -> bool:
    """Whether the model (or model class) declares capability ``ntk``."""
    return model.supports("ntk")


def jacobian(
    model: Model, params: Mapping[str, torch.Tensor], x: torch.Tensor, output: Output = "first"
) -> torch.Tensor:
    """Per-example Jacobians, flattened over parameters: ``[n, P]`` for ``"first"``, else ``[n, c, P]``."""
    params = {k: v.detach() for k, v in params.items()}

    def f(p: Mapping[str, torch.Tensor], xi: torch.Tensor) -> torch.Tensor:
        out = model.apply(p, xi[None])[0]
        return out[0] if output == "first" else out

    per_example = vmap(jacrev(f), in_dims=(None, 0))
    chunks = []
    for i in range(0, len(x), CHUNK):
        jac = per_example(params, x[i : i + CHUNK])
        lead = 1 if output == "first" else 2
        chunks.append(torch.cat([j.flatten(start_dim=lead) for j in jac.values()], dim=-1))
    return torch.cat(chunks)


def contract(j1: torch.Tensor, j2: torch.Tensor, output: Output) -> torch.Tensor:
    """Θ from Jacobians as returned by :func:`jacobian`."""
    if output == "first":
        return j1 @ j2.T
    if output == "trace":
        return torch.einsum("iop,jop->ij", j1, j2)
    return torch.einsum("iap,jbp->ijab", j1, j2)


def torch_func_ntk(
    model: Model,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    params: Mapping[str, torch.Tensor] | None = None,
    output: Output = "first",
) -> torch.Tensor:
    """The generic eNTK of any model through ``torch.func`` (see the module docstring)."""
    params = model.parameters() if params is None else params
    j1 = jacobian(model, params, x1, output)
    j2 = j1 if x2 is None else jacobian(model, params, x2, output)
    return contract(j1, j2, output)


def empirical_ntk(
    model: Model,
    x1: torch.Tensor,
    x2: torch.Tensor | None = None,
    *,
    params: Mapping[str, torch.Tensor] | None = None,
    output: Output = "first",
    method: Method = "auto",
) -> torch.Tensor:
    """Θ(x1, x2) (x2 defaults to x1) under ``params`` (default: the model's current parameters).

    ``method``: ``"auto"`` (the closed form when the model has one), ``"closed-form"`` or ``"torch.func"``.
    """
    if output not in OUTPUTS:
        raise ValueError(f"output must be one of {', '.join(OUTPUTS)}, got {output!r}")
    params = model.parameters() if params is None else params
    if method == "closed-form" or (method == "auto" and has_closed_form(model)):
        if not has_closed_form(model):
            raise ValueError(f"model '{model.name}' has no closed-form NTK")
        with torch.no_grad():
            return model.ntk(params, x1, x1 if x2 is None else x2, output)
    return torch_func_ntk(model, x1, x2, params=params, output=output)


def input_overlap(x1: torch.Tensor, x2: torch.Tensor, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """⟨x, x'⟩ of the concatenated one-hot encodings: the number of positions with equal tokens, ``[n1, n2]``.

    Computed as that product (``[n, positions · vocab]`` one-hot matrices, in float64 unless ``dtype`` is a
    float: the counts are small integers, exact either way), not as an ``[n1, n2, positions]`` comparison,
    whose memory grows with every pair (docs/performance.md, The input overlap)."""
    if not len(x1) or not len(x2):
        return torch.zeros(len(x1), len(x2), dtype=dtype, device=x1.device)
    vocab = int(max(x1.max(), x2.max())) + 1
    compute = dtype if dtype.is_floating_point else torch.float64

    def one_hot(x: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(x.long(), vocab).flatten(1).to(compute)

    e1 = one_hot(x1)
    e2 = e1 if x2 is x1 else one_hot(x2)
    return (e1 @ e2.T).to(dtype)
