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
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, DataSpec, Model, Params


class ReluMLP(Model):
    """One-hot inputs, one ReLU hidden layer of width h, linear readout (Barak et al. 2022's parity MLP)."""

    name = "relu-mlp"
    capabilities = frozenset({"token-weights"})

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

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        w1 = params["W1"]
        # one-hot by comparison with arange (F.one_hot checks its input with .item(), which torch.func's vmap
        # refuses, so seeds could not train as one program): the same 0/1 matrix
        vocab = torch.arange(self.spec.vocab_size, device=x.device)
        onehot = (x.unsqueeze(-1) == vocab).to(w1.dtype).flatten(1)  # [n, k·V]
        hidden = onehot @ w1.reshape(-1, w1.shape[-1]) + params["b1"]  # [n, h]
        return torch.relu(hidden) @ params["W2"] + params["b2"]

    def token_weights(self) -> torch.Tensor:
        return self.params_["W1"]


@hookimpl
def register_models(register):
    register(ReluMLP)
