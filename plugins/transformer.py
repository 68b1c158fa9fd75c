"""The one-layer transformer of the grokking literature (Power et al. 2022; Nanda et al. 2023).

An input row of token indices ``x_1 … x_k`` (values in ``[0, vocab_size)``) gets
an "=" token (index ``vocab_size``) appended, so a modular-addition pair becomes
the sequence ``a b =``. Then:

    h0 = W_E[tokens] + W_pos                         learned embeddings, [n, k+1, d]
    h1 = h0 + Σ_heads softmax(causal(Q Kᵀ / √d_head)) V W_O      attention
    h2 = h1 + W_out act(W_in h1 + b_in) + b_out      MLP (ReLU by default)
    f  = h2[:, -1] W_U                                unembedding at the "=" position

With one layer and the output read at the last position, only that
position's query, attention and MLP are computed: the other positions'
would never reach the output (and the causal mask lets the last position
see all of them).

No LayerNorm (Nanda et al. leave it out), no attention biases. Initialization
follows Nanda et al.'s code: every matrix N(0, 1/d_model) except W_U, N(0,
1/output_dim); biases zero; all scaled by ``init_scale``. The loss and
gradients come from the generic autograd path (``Model.loss_and_grads``).

Any task works: it only reads the task's ``DataSpec`` (``positions`` tokens
from a vocabulary of ``vocab_size``, ``output_dim`` outputs read out at the
"=" position), so ``modadd-cls`` and ``modadd-reg`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, DataSpec, Model, Params, Preset


class Transformer(Model):
    """One-layer transformer (tokens a, b, "="; attention + MLP, no LayerNorm), after Nanda et al. (2023)."""

    name = "transformer"
    capabilities = frozenset({"memory-estimate"})

    class Params(Params):
        d_model: PositiveInt = Field(128, description="residual stream width")
        n_heads: PositiveInt = Field(4, description="attention heads (d_head = d_model / n_heads)")
        d_mlp: PositiveInt = Field(512, description="MLP hidden width")
        activation: Literal["relu", "gelu"] = Field("relu", description="MLP activation")
        init_scale: PositiveFloat = Field(
            1.0, description="multiplies every initial weight", json_schema_extra=BATCHABLE
        )

        @model_validator(mode="after")
        def _heads_divide(self) -> Transformer.Params:
            if self.d_model % self.n_heads:
                raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")
            return self

    @classmethod
    def size(cls, params: Params, spec: DataSpec) -> tuple[int, int]:
        """Parameters, and floats per input autograd keeps (residual stream, attention, MLP): grokbench.limits' estimate."""
        d, m, ctx, out = params.d_model, params.d_mlp, spec.positions + 1, spec.output_dim
        n_params = (spec.vocab_size + 1 + ctx) * d + 4 * d * d + 2 * d * m + m + d + d * out
        return n_params, ctx * (8 * d + 3 * m + 2 * params.n_heads * ctx) + 2 * out

    def __init__(self, params, spec: DataSpec, *, generator, device="cpu", dtype=torch.float32):
        super().__init__(params, spec, generator=generator, device=device, dtype=dtype)
        p = self.params
        d, h, m = p.d_model, p.n_heads, p.d_mlp
        dh = d // h
        vocab, ctx, out = spec.vocab_size + 1, spec.positions + 1, spec.output_dim

        def normal(*shape: int, fan: int) -> torch.Tensor:
            t = torch.randn(*shape, generator=generator, dtype=torch.float64) * (p.init_scale / math.sqrt(fan))
            return t.to(device=self.device, dtype=dtype)

        def zeros(*shape: int) -> torch.Tensor:
            return torch.zeros(*shape, device=self.device, dtype=dtype)

        self.params_ = {
            "W_E": normal(vocab, d, fan=d),
            "W_pos": normal(ctx, d, fan=d),
            "W_Q": normal(h, d, dh, fan=d),
            "W_K": normal(h, d, dh, fan=d),
            "W_V": normal(h, d, dh, fan=d),
            "W_O": normal(h, dh, d, fan=d),
            "W_in": normal(d, m, fan=d),
            "b_in": zeros(m),
            "W_out": normal(m, d, fan=d),
            "b_out": zeros(d),
            "W_U": normal(d, out, fan=out),
        }
        self._act = F.relu if p.activation == "relu" else F.gelu

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The same function as the per-example formulation in the module docstring, computed from per-token tables.

        The query is that of the "=" position, the same for every example; the embedding of a position is
        ``W_E[token] + W_pos[s]``, so its attention score and its value are a per-token table plus a per-position
        one, each computed once per call on the vocabulary (a few hundred rows) rather than on every example.
        Per example there remain gathers of those tables, a softmax over the positions, a weighted sum of the
        values, and the GEMMs of W_O, the MLP and W_U. No Python loop over heads, positions or examples."""
        n, heads = x.shape[0], self.params.n_heads
        W_E, W_pos = params["W_E"], params["W_pos"]
        d = W_E.shape[1]
        dh = d // heads
        tokens = F.pad(x, (0, 1), value=self.spec.vocab_size)  # [n, ctx]: the inputs and "="
        query = W_E[self.spec.vocab_size] + W_pos[-1]  # the "=" position's residual: the same for every example
        q = torch.einsum("d,hde->he", query, params["W_Q"])  # [heads, d_head]
        # score of (token t at position s, head h) = (W_E[t] + W_pos[s]) · (W_K[h] q[h]) / √d_head
        key_q = torch.einsum("hde,he->dh", params["W_K"], q) / math.sqrt(dh)  # [d, heads]
        scores = F.embedding(tokens, W_E @ key_q) + W_pos @ key_q  # [n, ctx, heads]
        attn = scores.softmax(1)
        W_V = params["W_V"].transpose(0, 1).reshape(d, d)  # [d, heads·d_head]
        values = F.embedding(tokens, W_E @ W_V) + W_pos @ W_V  # [n, ctx, heads·d_head]
        z = (values.view(n, -1, heads, dh) * attn.unsqueeze(-1)).sum(1)  # [n, heads, d_head]
        last = torch.addmm(query, z.view(n, d), params["W_O"].reshape(d, d))  # resid + Σ_heads z_h W_O[h]
        hidden = self._act(torch.addmm(params["b_in"], last, params["W_in"]))
        last = torch.addmm(params["b_out"], hidden, params["W_out"]) + last
        return last @ params["W_U"]


#: Nanda, Chan, Lieberum, Smith & Steinhardt (2023), "Progress measures for grokking via mechanistic interpretability"
NANDA = Preset(
    name="nanda",
    task="modadd-cls",
    model="transformer",
    description="Nanda et al. 2023: p=113, 30% train, d_model 128, 4 heads, d_mlp 512, ReLU, AdamW lr 1e-3 wd 1 betas (0.9, 0.98), full batch",
    settings={
        "task": {"p": 113, "train_fraction": 0.3, "loss": "cross_entropy"},
        "model": {"d_model": 128, "n_heads": 4, "d_mlp": 512, "activation": "relu", "init_scale": 1.0},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1.0, "beta1": 0.9, "beta2": 0.98},
        "regularizer": {"name": "none"},
        "train": {"steps": 40000, "eval_every": 100, "batch_size": None},
    },
)

#: Nanda et al.'s network and optimizer on a smaller problem that groks in about a minute of one CPU core
LAPTOP = Preset(
    name="laptop",
    task="modadd-cls",
    model="transformer",
    description="nanda's network and AdamW at p=59 with half the pairs, stopping once it generalizes: groks in ~2,000 steps, about a minute of one CPU core",
    settings={
        **NANDA.settings,
        "task": {"p": 59, "train_fraction": 0.5, "loss": "cross_entropy"},
        "train": {"steps": 10000, "eval_every": 100, "batch_size": None, "early_stop": True},
    },
)

#: for any task: the optimizer of the literature, so `grokbench run -t modadd-cls -m transformer` is sensible
DEFAULT = Preset(
    name="default",
    task=None,
    model="transformer",
    description="AdamW lr 1e-3, weight decay 1, betas (0.9, 0.98), no extra regularizer (Nanda et al.'s optimizer)",
    settings={
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1.0, "beta1": 0.9, "beta2": 0.98},
        "regularizer": {"name": "none"},
    },
)


@hookimpl
def register_models(register):
    register(Transformer)


@hookimpl
def register_presets(register):
    register(NANDA)
    register(LAPTOP)
    register(DEFAULT)
