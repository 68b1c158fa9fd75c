"""The paper's two-layer network with quadratic activation: f(x) = V (W x)², no biases.

Inputs are k token indices in Z_p; x = [e_{x_1}; ...; e_{x_k}] is their
concatenated one-hot vector, so W x = Σ_j W[:, j·p + x_j] is a sum of k columns
of W. The one-hot matrix is never built: the forward pass gathers columns and
the backward pass scatters into them.

Shapes (stored for contiguous gathers): ``W`` is ``[k·p, h]`` (row i is the
column W[:, i] of the math), ``V`` is ``[h, out]``.

Initialization, with α = ``init_scale`` and g ~ N(0, 1) i.i.d.:

* ``standard``:   W = α g / √k,  V = α g / √h,  f = (W x)² V
* ``mean-field``: W = α g / √k,  V = α g,       f = (W x)² V / h

Each pre-activation starts with variance α². The network is 3-homogeneous in
its parameters: f(cθ) = c³ f(θ), so α scales the initial output by α³.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from typing import ClassVar, Literal, cast

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, field_validator

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, BatchedModel, DataSpec, Model, Params, Task
from grokbench.training.ntk import input_overlap

from . import fused_quadratic

#: above this many input pairs the closed-form NTK accumulates its overlap term over shared-token blocks
DENSE_PAIRS = 1 << 21


def resolve_width(width: int | str, p: int) -> int:
    """``512`` -> 512; ``"4p"`` -> 4·p."""
    if isinstance(width, int):
        return width
    return int(width[:-1]) * p


class QuadraticNetwork(Model):
    """f(x) = V (W x)², two layers, quadratic activation, no biases (the paper's model)."""

    name = "quadratic"
    capabilities = frozenset({"homogeneous", "batched-step", "ntk", "ntk-limit", "token-weights", "memory-estimate"})
    homogeneity: ClassVar[int] = 3

    class Params(Params):
        width: int | str = Field(512, description="hidden width h: an integer, or a multiple of p such as '4p'")
        init_scale: PositiveFloat = Field(
            1.0, description="α, multiplies every initial parameter", json_schema_extra=BATCHABLE
        )
        parameterization: Literal["standard", "mean-field"] = Field(
            "standard", description="standard: V ~ α/√h; mean-field: V ~ α and output divided by h"
        )

        @field_validator("width")
        @classmethod
        def _width(cls, value: int | str) -> int | str:
            if isinstance(value, int):
                if value <= 0:
                    raise ValueError("width must be positive")
            elif not re.fullmatch(r"[1-9]\d*p", value):
                raise ValueError("width must be a positive integer or a multiple of p such as '4p'")
            return value

    @classmethod
    def size(cls, params: Params, spec: DataSpec) -> tuple[int, int]:
        """Parameters, and floats per input (z, z², output and their gradients): grokbench.training.resources' memory estimate."""
        h = resolve_width(params.width, spec.vocab_size)
        return h * (spec.positions * spec.vocab_size + spec.output_dim), 3 * h + 2 * spec.output_dim

    def __init__(
        self, params: Params, spec: DataSpec, *, generator: torch.Generator, device="cpu", dtype=torch.float32
    ):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        k, p = spec.positions, spec.vocab_size
        h = self.width = resolve_width(params.width, p)
        alpha = params.init_scale
        W = torch.randn(k * p, h, generator=generator, dtype=torch.float64) * (alpha / math.sqrt(k))
        V = torch.randn(h, spec.output_dim, generator=generator, dtype=torch.float64) * alpha
        if params.parameterization == "standard":
            V /= math.sqrt(h)
        self.output_scale = 1.0 / h if params.parameterization == "mean-field" else 1.0
        self.offsets = torch.arange(k, device=self.device) * p
        self.params_ = {"W": W.to(device=self.device, dtype=dtype), "V": V.to(device=self.device, dtype=dtype)}
        self._workspace: Workspace | None = None

    # ------------------------------------------------------------------ forward

    def _hidden(self, W: torch.Tensor, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Row indices into W ``[n, k]`` and pre-activations ``z = W x`` ``[n, h]`` (a sum of gathered rows).

        Plain row gathers rather than ``embedding_bag`` (which the training step uses): torch.func has
        no batching rule for embedding_bag's backward, and this path is what the generic NTK differentiates."""
        idx = x + self.offsets
        z = W[idx[:, 0]]
        for j in range(1, idx.shape[1]):
            z = z + W[idx[:, j]]
        return idx, z

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        _, z = self._hidden(params["W"], x)
        out = (z * z) @ params["V"]
        return out * self.output_scale if self.output_scale != 1.0 else out

    # ----------------------------------------------------------------- backward

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Closed-form backward (see :func:`stacked_loss_and_grads`); the gradients are buffers reused by the next call."""
        if self._workspace is None:
            self._workspace = Workspace()
        W, V = self.params_["W"], self.params_["V"]
        loss, (gW, gV) = stacked_loss_and_grads(W[None], V[None], x, y, task, self.output_scale, self._workspace)
        return loss, [gW[0], gV[0]]

    @classmethod
    def stack(cls, models: Sequence[Model]) -> BatchedModel:
        """The hand-written batched step; a subclass that changes the math must override it."""
        if cls.loss_and_grads is not QuadraticNetwork.loss_and_grads or cls.apply is not QuadraticNetwork.apply:
            raise TypeError(f"model '{cls.name}' changes the quadratic network's math but not its batched step")
        return StackedQuadratic(models)

    # ---------------------------------------------------------- kernel views

    def ntk(
        self, params: Mapping[str, torch.Tensor], x1: torch.Tensor, x2: torch.Tensor, output: str = "first"
    ) -> torch.Tensor:
        """Closed-form eNTK. With z = W x, s the output scale and m(x, x') the input overlap
        (number of equal positions), ∂f_c/∂V[:, d] = s δ_cd z² and ∂f_c/∂W[i] = 2 s V[:, c] ⊙ z Σ_j 1[idx_j = i], so

            Θ_cd(x, x') = s² ( δ_cd ⟨z², z'²⟩ + 4 m(x, x') Σ_k V_kc V_kd z_k z'_k ).

        The overlap term is nonzero only for pairs sharing a token at some position, so on large
        sets (more than ``DENSE_PAIRS`` pairs) it is accumulated block by block over shared tokens
        (k/p of the pairs) instead of densely.
        """
        W, V = params["W"], params["V"]
        _, z1 = self._hidden(W, x1)
        _, z2 = self._hidden(W, x2)
        s2 = self.output_scale**2
        if output == "full":
            m = input_overlap(x1, x2, z1.dtype)
            sq = (z1 * z1) @ (z2 * z2).T
            cross = torch.einsum("ik,jk,kc,kd->ijcd", z1, z2, V, V)
            eye = torch.eye(V.shape[1], dtype=V.dtype, device=V.device)
            return s2 * (sq[:, :, None, None] * eye + 4 * m[:, :, None, None] * cross)
        v2 = V[:, 0] ** 2 if output == "first" else (V * V).sum(1)
        kernel = (z1 * z1) @ (z2 * z2).T
        if output != "first":
            kernel.mul_(V.shape[1])
        a = z1 * (4 * v2)
        if len(x1) * len(x2) <= DENSE_PAIRS:
            kernel += (a @ z2.T) * input_overlap(x1, x2, z1.dtype)
        else:
            for rows, cols in shared_token_blocks(x1, x2):
                kernel[rows[:, None], cols] += a[rows] @ z2[cols].T
        return kernel.mul_(s2) if s2 != 1.0 else kernel

    def expected_ntk(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """E_θ₀[Θ₀₀(x1, x2)] at this width and α: see :func:`infinite_width_ntk`."""
        return infinite_width_ntk(
            input_overlap(x1, x2, torch.float64),
            self.spec.positions,
            self.width,
            self.params.init_scale,
            self.params.parameterization,
        )

    def token_weights(self) -> torch.Tensor:
        k, p = self.spec.positions, self.spec.vocab_size
        return self.params_["W"].reshape(k, p, -1)


def infinite_width_ntk(
    overlap: torch.Tensor, positions: int, width: int, alpha: float, parameterization: str
) -> torch.Tensor:
    """E_θ₀[Θ₀₀(x, x')] of the quadratic network, a function of the overlap m = ⟨x, x'⟩ alone.

    z = w·x and z' = w·x' are jointly Gaussian with variance α² and covariance α² r, r = m/k
    (k = positions), so E[z² z'²] = α⁴ (1 + 2 r²) and E[z z'] = α² r. With output scale s and
    output weights of variance σ_V² (standard: s = 1, σ_V² = α²/h; mean-field: s = 1/h, σ_V² = α²):

        E[Θ](m) = s² h (α⁴ (1 + 2 r²) + 4 σ_V² α² r m).

    Divided by its scale (h for standard), it converges to the eNTK as h → ∞ (law of large numbers).
    """
    r = overlap.double() / positions
    s2, var_v = (1.0, alpha**2 / width) if parameterization == "standard" else (1.0 / width**2, alpha**2)
    return s2 * width * (alpha**4 * (1 + 2 * r * r) + 4 * var_v * alpha**2 * r * overlap.double())


class StackedQuadratic(BatchedModel):
    """S quadratic networks trained as one program: W ``[S, k·p, h]``, V ``[S, h, out]``."""

    def __init__(self, models: Sequence[Model]):
        super().__init__(models)
        self.output_scale = cast(QuadraticNetwork, models[0]).output_scale
        self.workspace = Workspace()

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss, grads = stacked_loss_and_grads(
            self.params_["W"], self.params_["V"], x, y, task, self.output_scale, self.workspace
        )
        return loss, list(grads)


class Workspace:
    """Buffers of the training step, allocated once per batch shape: no large allocation (or page fault) per step."""

    def __init__(self) -> None:
        self.key: tuple | None = None

    def ensure(self, W: torch.Tensor, V: torch.Tensor, n: int) -> None:
        S, rows, h = W.shape
        key = (S, rows, h, V.shape[-1], n, W.dtype, W.device)
        if key == self.key:
            return
        new = lambda *shape: torch.empty(shape, dtype=W.dtype, device=W.device)  # noqa: E731
        self.key = key
        self.act = new(S, n, h)  # z², then reused for dL/dz
        self.out = new(S, n, V.shape[-1])
        self.grad_W, self.grad_V = new(S, rows, h), new(*V.shape)
        self.seed_rows = (torch.arange(S, device=W.device) * rows).view(S, 1, 1)
        self.last_x: torch.Tensor | None = None
        self.last_version, self.uses = -1, 0
        self.idx = torch.empty(0, dtype=torch.long)
        self.scatter: torch.Tensor | None = None

    def indices(self, x: torch.Tensor, rows: int) -> torch.Tensor:
        """The rows of W (viewed as ``[S·rows, h]``) of the batch ``x``, ``[S·n, k]``: computed once while the
        same batch comes back (full-batch training). Keeping a reference to ``x`` makes the identity check safe."""
        if x is self.last_x and x._version == self.last_version:
            self.uses += 1
            return self.idx
        k = x.shape[-1]
        offsets = torch.arange(k, device=x.device) * (rows // k)
        self.idx = (x + offsets + self.seed_rows).view(-1, k)
        self.last_x, self.last_version, self.uses, self.scatter = x, x._version, 1, None
        return self.idx

    def scatter_matrix(self, idx: torch.Tensor, rows: int) -> torch.Tensor | None:
        """The sparse matrix 2·Aᵀ (A: [examples, rows of W], k ones per example) when the batch of
        :meth:`indices` came at least twice in a row (full-batch training) on the CPU, where its product beats
        ``index_add_``; ``None`` otherwise."""
        if idx.device.type != "cpu" or self.uses < 2:
            return None
        if self.scatter is None:
            examples = torch.arange(len(idx)).repeat_interleave(idx.shape[1])
            entries = torch.stack([idx.reshape(-1), examples])
            values = torch.full((entries.shape[1],), 2.0, dtype=self.act.dtype)
            coo = torch.sparse_coo_tensor(entries, values, (rows, len(idx)), check_invariants=False)
            with warnings.catch_warnings():  # "sparse CSR support is in beta"
                warnings.simplefilter("ignore", UserWarning)
                self.scatter = coo.coalesce().to_sparse_csr()
        return self.scatter


def stacked_loss_and_grads(
    W: torch.Tensor, V: torch.Tensor, x: torch.Tensor, y: torch.Tensor, task: Task, output_scale: float, ws: Workspace
) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
    """Loss and gradients of S stacked networks (W ``[S, k·p, h]``, V ``[S, h, out]``) on x ``[S, n, k]``, y ``[S, n, ...]``
    (or ``[n, k]`` and ``[n, ...]`` when S = 1).

    With g = dL/df of each network's mean loss (times the output scale):
    dV = (z²)ᵀ g, dz = 2 z ⊙ (g Vᵀ), dW[i] = Σ_{n, j: idx[n,j]=i} dz[n]. The
    task's loss is a mean over examples, so its gradient over all S·n rows at
    once is each network's gradient divided by S. The returned loss is the mean
    over the S networks. Buffers come from ``ws``; only [n, out]-sized
    temporaries (and, on the torch path, z from ``embedding_bag``, which has no
    ``out=``) are allocated per call.

    On the CPU the gather-and-square and the ``⊙ z``-and-scatter run as two fused C passes
    (:mod:`grokbench_plugins.models.fused_quadratic`) where the extension is built; the torch path below them is the
    reference they are tested against (``GROKBENCH_FUSED=0`` selects it).
    """
    S, rows, h = W.shape
    n, k = x.shape[-2], x.shape[-1]  # x may be [n, k] when S = 1
    ws.ensure(W, V, n)
    idx = ws.indices(x, rows)  # rows of W viewed as [S·k·p, h]
    fused = fused_quadratic.applicable(W, ws.act)
    if fused:  # act = z² in one pass; z is recomputed in the backward
        fused_quadratic.forward(W.view(S * rows, h), idx, ws.act.view(S * n, h))
        act = ws.act
    else:
        z = F.embedding_bag(idx, W.view(S * rows, h), mode="sum").view(S, n, h)
        act = torch.mul(z, z, out=ws.act)
    out = torch.bmm(act, V, out=ws.out)
    if output_scale != 1.0:
        out.mul_(output_scale)
    loss, g = task.loss_and_output_grad(out.view(S * n, -1), y.reshape(S * n, *y.shape[x.dim() - 1 :]))
    if S * output_scale != 1.0:
        g = g * (S * output_scale)
    g = g.view(S, n, -1)
    torch.bmm(act.transpose(1, 2), g, out=ws.grad_V)
    grad_act = torch.bmm(g, V.transpose(1, 2), out=ws.act)  # dL/d(z²)
    if fused:  # grad_W = 2 Aᵀ (z ⊙ dL/d(z²)), z recomputed row by row
        fused_quadratic.backward(W.view(S * rows, h), idx, grad_act.view(S * n, h), ws.grad_W.view(S * rows, h))
        return loss, (ws.grad_W, ws.grad_V)
    grad_z = grad_act.mul_(z)
    scatter = ws.scatter_matrix(idx, S * rows)
    if scatter is not None:  # 2·Aᵀ dz with A the (fixed, cached) one-hot matrix, in CSR form
        torch.mm(scatter, grad_z.view(S * n, h), out=ws.grad_W.view(S * rows, h))
    else:
        grad_W = ws.grad_W.zero_().view(S * rows, h)
        for j in range(k):
            grad_W.index_add_(0, idx[:, j], grad_z.view(S * n, h), alpha=2.0)
    return loss, (ws.grad_W, ws.grad_V)


def shared_token_blocks(x1: torch.Tensor, x2: torch.Tensor):
    """For every position j and token t: the indices of the rows of x1 and of x2 with token t at j."""
    if not len(x1) or not len(x2):
        return
    for j in range(x1.shape[1]):
        vocab = int(max(x1[:, j].max(), x2[:, j].max())) + 1
        splits = [x[:, j].argsort().split(torch.bincount(x[:, j], minlength=vocab).tolist()) for x in (x1, x2)]
        for rows, cols in zip(*splits):
            if len(rows) and len(cols):
                yield rows, cols


@hookimpl
def register_models(register):
    register(QuadraticNetwork)
