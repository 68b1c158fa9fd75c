"""The model ``mlp``: learned token embeddings, concatenated, one ReLU hidden layer, linear readout.

    f(x) = W_2 relu(W_1 [E[x_1]; …; E[x_k]] + b_1) + b_2

One embedding table E [vocab, d] is shared by all k positions (the position is
told apart by where its embedding lands in the concatenation). Initialization:
E ~ N(0, 1), W_1 ~ N(0, 1/(k·d)), W_2 ~ N(0, 1/h), biases zero, all matrices
scaled by ``init_scale``. Gradients: the generic autograd path.
"""

from __future__ import annotations

import math
from typing import Mapping

import torch
from pydantic import Field, PositiveFloat, PositiveInt

from grokbench import hookimpl
from grokbench.contracts import DataSpec, Model, Params


class MLP(Model):
    """Learned embeddings (concatenated), one ReLU hidden layer, linear readout."""

    name = "mlp"

    class Params(Params):
        embed_dim: PositiveInt = Field(64, description="embedding width d")
        width: PositiveInt = Field(256, description="hidden width h")
        init_scale: PositiveFloat = Field(1.0, description="multiplies every initial weight matrix")

    def __init__(self, params, spec: DataSpec, *, generator, device="cpu", dtype=torch.float32):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        d, h, s, k = self.params.embed_dim, self.params.width, self.params.init_scale, spec.positions

        def normal(*shape: int, std: float) -> torch.Tensor:
            return (torch.randn(*shape, generator=generator) * (s * std)).to(device=self.device, dtype=dtype)

        self.params_ = {
            "embed": normal(spec.vocab_size, d, std=1.0),
            "W1": normal(k * d, h, std=1 / math.sqrt(k * d)),
            "b1": torch.zeros(h, device=self.device, dtype=dtype),
            "W2": normal(h, spec.output_dim, std=1 / math.sqrt(h)),
            "b2": torch.zeros(spec.output_dim, device=self.device, dtype=dtype),
        }

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        e = params["embed"][x].flatten(1)  # [n, k·d]
        return torch.relu(e @ params["W1"] + params["b1"]) @ params["W2"] + params["b2"]


@hookimpl
def register_models(register):
    register(MLP)
