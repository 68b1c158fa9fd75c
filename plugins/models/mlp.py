"""The model ``relu-mlp``: one-hot tokens, one ReLU hidden layer, linear readout.

    f(x) = W₂ relu(Σ_j W₁[j, x_j] + b₁) + b₂

i.e. a two-layer ReLU network on the concatenated one-hot encodings of the
positions (W₁[j, v] is the first-layer row of token v at position j). The
forward pass multiplies the one-hot matrix [n, k·V] by W₁ viewed as [k·V, h]:
for the small vocabularies it is meant for (bits: V = 2) one GEMM, forward and
backward, is several times cheaper on a CPU than gathering [n, k, h] rows. For bit inputs (sparse parity) this is the
MLP of Barak et al. (2022). Initialization: W₁ ~ N(0, 1/k), W₂ ~ N(0, 1/h) (k
positions, h hidden units), scaled by ``init_scale``; biases zero. Gradients by
autograd. (Named ``relu-mlp`` so as not to clash with the example package's
``mlp``, which learns embeddings.)

Its eNTK in closed form (capability ``ntk``), with u = W₁x + b₁, a = relu(u), d = 1[u > 0] and
m(x, x') the number of positions where x and x' hold the same token:

    Θ_cd(x, x') = δ_cd (1 + ⟨a, a'⟩) + (1 + m(x, x')) Σ_i W₂[i, c] W₂[i, d] d_i d'_i

(the terms of b₂, W₂, b₁ and W₁ in that order). Its expectation over the initialization (capability
``ntk-limit``): each u_i(x) is N(0, s²) (s = ``init_scale``) with correlation ρ = m/k between x and x', so
with θ = arccos ρ the arc-cosine kernels E[relu(u) relu(u')] = s² (sin θ + (π − θ) ρ)/(2π) and
E[d d'] = (π − θ)/(2π) give, for the first output and h hidden units (E[W₂²] = s²/h),

    E[Θ₀₀](x, x') = 1 + h s² (sin θ + (π − θ) ρ)/(2π) + s² (1 + m) (π − θ)/(2π).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, DataSpec, Model, Params
from grokbench.training.ntk import input_overlap


class ReluMLP(Model):
    """One-hot inputs, one ReLU hidden layer of width h, linear readout (Barak et al. 2022's parity MLP)."""

    name = "relu-mlp"
    capabilities = frozenset({"token-weights", "ntk", "ntk-limit"})

    class Params(Params):
        width: PositiveInt = Field(256, description="hidden width h")
        init_scale: PositiveFloat = Field(
            1.0, description="multiplies every initial weight matrix", json_schema_extra=BATCHABLE
        )

    def __init__(self, params, spec: DataSpec, *, generator, device="cpu", dtype=torch.float32):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        h, s, k = self.params.width, self.params.init_scale, spec.positions

        def normal(*shape: int, std: float) -> torch.Tensor:
            return (torch.randn(*shape, generator=generator) * (s * std)).to(device=self.device, dtype=dtype)

        self.params_ = {
            "W1": normal(k, spec.vocab_size, h, std=1 / math.sqrt(k)),
            "b1": torch.zeros(h, device=self.device, dtype=dtype),
            "W2": normal(h, spec.output_dim, std=1 / math.sqrt(h)),
            "b2": torch.zeros(spec.output_dim, device=self.device, dtype=dtype),
        }

    def _hidden(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Pre-activations u = W₁x + b₁, ``[n, h]``."""
        w1 = params["W1"]
        # one-hot [n, k·V] by comparison (torch.func vmaps it; F.one_hot reads its input's maximum)
        tokens = torch.arange(self.spec.vocab_size, device=x.device)
        onehot = (x[..., None] == tokens).to(w1.dtype).flatten(1)
        return onehot @ w1.reshape(-1, w1.shape[-1]) + params["b1"]

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self._hidden(params, x)) @ params["W2"] + params["b2"]

    def ntk(
        self, params: Mapping[str, torch.Tensor], x1: torch.Tensor, x2: torch.Tensor, output: str = "first"
    ) -> torch.Tensor:
        """Closed-form eNTK (see the module docstring); ``output`` as in :mod:`grokbench.training.ntk`."""
        u1, u2, W2 = self._hidden(params, x1), self._hidden(params, x2), params["W2"]
        shared = 1 + input_overlap(x1, x2, u1.dtype)  # 1 + m(x, x'): the b₁ and W₁ terms
        a1, a2, d1, d2 = torch.relu(u1), torch.relu(u2), (u1 > 0).to(u1.dtype), (u2 > 0).to(u2.dtype)
        outer = 1 + a1 @ a2.T  # the b₂ and W₂ terms, on the diagonal c = d
        if output == "full":
            eye = torch.eye(W2.shape[1], dtype=W2.dtype, device=W2.device)
            cross = torch.einsum("ik,jk,kc,kd->ijcd", d1, d2, W2, W2)
            return outer[:, :, None, None] * eye + shared[:, :, None, None] * cross
        if output == "first":
            return outer + shared * ((d1 * W2[:, 0] ** 2) @ d2.T)
        return W2.shape[1] * outer + shared * ((d1 * (W2 * W2).sum(1)) @ d2.T)

    def expected_ntk(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """E_θ₀[Θ₀₀(x1, x2)] (see the module docstring), float64."""
        m = input_overlap(x1, x2, torch.float64)
        rho = (m / self.spec.positions).clamp(-1.0, 1.0)
        theta = torch.arccos(rho)
        s2, h = self.params.init_scale**2, self.params.width
        return (
            1
            + h * s2 * (torch.sin(theta) + (math.pi - theta) * rho) / (2 * math.pi)
            + s2 * (1 + m) * (math.pi - theta) / (2 * math.pi)
        )

    def token_weights(self) -> torch.Tensor:
        return self.params_["W1"]


@hookimpl
def register_models(register):
    register(ReluMLP)
