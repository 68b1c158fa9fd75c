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
1/output_dim); biases zero; all scaled by ``init_scale``. The training step
(``loss_and_grads``) is written out by hand for everything computed per example
(attention weights, the MLP, the unembedding, through the task's
``loss_and_output_grad``); autograd only carries the gradients of the small
per-token tables back to the embeddings and W_Q, W_K, W_V. Seeds batch through
``torch.func`` on ``apply``.

Any task works: it only reads the task's ``DataSpec`` (``positions`` tokens
from a vocabulary of ``vocab_size``, ``output_dim`` outputs read out at the
"=" position), so ``modadd-cls`` and ``modadd-reg`` alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt, model_validator

from grokbench import hookimpl
from grokbench.contracts import BATCHABLE, DataSpec, Model, Params, Preset, Task


class Transformer(Model):
    """One-layer transformer (tokens a, b, "="; attention + MLP, no LayerNorm), after Nanda et al. (2023)."""

    name = "transformer"
    capabilities = frozenset({"memory-estimate"})
    #: the parameters that only reach the output through :meth:`_tables`
    TABLE_PARAMS = ("W_E", "W_pos", "W_Q", "W_K", "W_V")

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
        """Parameters, and floats per input autograd keeps (residual stream, attention, MLP): grokbench.training.resources' estimate."""
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

    def _tables(self, params: Mapping[str, torch.Tensor]) -> Tables:
        """Everything that depends on one (token, position) pair, computed once on the vocabulary.

        The query is that of the "=" position, the same for every example; the embedding of token t at input
        position s is ``W_E[t] + W_pos[s]``, so its attention score (per head) and its value are rows of tables
        ``[positions · vocab, ·]``, indexed by ``x + s · vocab``; the "=" position's score and value are constants."""
        W_E, W_pos, heads, vocab = params["W_E"], params["W_pos"], self.params.n_heads, self.spec.vocab_size
        d = W_E.shape[1]
        dh = d // heads
        query = W_E[vocab] + W_pos[-1]  # the "=" position's residual: the same for every example
        q = torch.einsum("d,hde->he", query, params["W_Q"])  # [heads, d_head]
        # score of (token t at position s, head h) = (W_E[t] + W_pos[s]) · (W_K[h] q[h]) / √d_head
        key_q = torch.einsum("hde,he->dh", params["W_K"], q) / math.sqrt(dh)  # [d, heads]
        W_V = params["W_V"].transpose(0, 1).reshape(d, d)  # [d, heads·d_head]
        embedded = (W_E[:vocab] + W_pos[:-1, None]).view(-1, d)  # [positions·vocab, d]: row s·vocab + t
        return Tables(query, embedded @ key_q, query @ key_q, embedded @ W_V, query @ W_V)

    def _rows(self, x: torch.Tensor) -> torch.Tensor:
        """Rows of the tables for inputs x ``[n, positions]``: ``x[:, s] + s · vocab``."""
        return x + torch.arange(x.shape[1], device=x.device) * self.spec.vocab_size

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The same function as the per-example formulation in the module docstring, computed from per-token tables
        (:meth:`_tables`). Per example there remain gathers of those tables, a softmax over the positions, a
        weighted sum of the values, and the GEMMs of W_O, the MLP and W_U. No Python loop over heads, positions
        or examples."""
        n, heads, t = x.shape[0], self.params.n_heads, self._tables(params)
        rows = self._rows(x)
        scores = torch.cat([F.embedding(rows, t.scores), t.eq_score.expand(n, 1, heads)], 1)  # [n, ctx, heads]
        attn = scores.softmax(1)
        values = torch.cat([F.embedding(rows, t.values), t.eq_value.expand(n, 1, -1)], 1)  # [n, ctx, d]
        z = (values.view(n, attn.shape[1], heads, -1) * attn.unsqueeze(-1)).sum(1)  # [n, heads, d_head]
        d = t.query.shape[0]
        last = torch.addmm(t.query, z.view(n, d), params["W_O"].reshape(d, d))  # resid + Σ_heads z_h W_O[h]
        hidden = self._act(torch.addmm(params["b_in"], last, params["W_in"]))
        last = torch.addmm(params["b_out"], hidden, params["W_out"]) + last
        return last @ params["W_U"]

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """:meth:`apply`'s forward with a hand-written backward for everything computed per example; autograd
        only maps the gradients of the small tables (:meth:`_tables`) back to the embeddings and W_Q, W_K, W_V."""
        ps, heads = self.params_, self.params.n_heads
        n, k = x.shape
        table_leaves = {name: ps[name].detach().requires_grad_(True) for name in self.TABLE_PARAMS}
        with torch.enable_grad():
            t = self._tables(table_leaves)
        query, eq_score, eq_value = t.query.detach(), t.eq_score.detach(), t.eq_value.detach()
        d = query.shape[0]
        dh = d // heads
        W_O, W_in, W_out, W_U = ps["W_O"].view(d, d), ps["W_in"], ps["W_out"], ps["W_U"]
        # forward, per example
        rows = self._rows(x).view(-1)
        scores = torch.cat([F.embedding(rows, t.scores.detach()).view(n, k, heads), eq_score.expand(n, 1, heads)], 1)
        attn = scores.softmax(1)  # [n, ctx, heads]
        values = F.embedding(rows, t.values.detach()).view(n, k, heads, dh)
        z = (values * attn[:, :k, :, None]).sum(1).addcmul_(attn[:, k, :, None], eq_value.view(heads, dh))
        z = z.view(n, d)
        resid = torch.addmm(query, z, W_O)
        relu = self.params.activation == "relu"
        if relu:  # the bias and the ReLU in one pass over [n, d_mlp] (addmm's bias costs a pass of its own)
            hidden = pre = resid @ W_in
            if hidden.device.type == "cpu":  # aten's fused add-ReLU has only a CPU kernel
                torch.ops.aten._add_relu_(hidden, ps["b_in"])
            else:
                hidden.add_(ps["b_in"]).relu_()
        else:
            pre = torch.addmm(ps["b_in"], resid, W_in)
            hidden = self._act(pre)
        last = torch.addmm(ps["b_out"], hidden, W_out).add_(resid)
        loss, g = task.loss_and_output_grad(last @ W_U, y)
        # backward, per example
        grad_last = g @ W_U.T
        grad_hidden = grad_last @ W_out.T
        if relu:  # in place, one pass (a mask of pre > 0 and a multiply take three)
            grad_pre = torch.ops.aten.threshold_backward.grad_input(grad_hidden, hidden, 0.0, grad_input=grad_hidden)
        else:
            grad_pre = torch.ops.aten.gelu_backward(grad_hidden, pre)
        ones = g.new_ones(n)  # column sums as GEMVs: faster than sum(0) on [n, ·]
        grad_resid = torch.addmm(grad_last, grad_pre, W_in.T)
        grad_z = (grad_resid @ W_O.T).view(n, 1, heads, dh)
        grad_attn = torch.cat(
            [(values * grad_z).sum(-1), (grad_z[:, 0] * eq_value.view(heads, dh)).sum(-1)[:, None]], 1
        )
        grad_scores = attn * (grad_attn - (attn * grad_attn).sum(1, keepdim=True))  # softmax's backward
        grad_values = (grad_z * attn[:, :k, :, None]).view(n * k, d)
        grads = {
            "W_O": (z.T @ grad_resid).view(heads, dh, d),
            "W_in": resid.T @ grad_pre,
            "b_in": ones @ grad_pre,
            "W_out": hidden.T @ grad_last,
            "b_out": ones @ grad_last,
            "W_U": last.T @ g,
        }
        table_grads = Tables(
            ones @ grad_resid,
            torch.zeros_like(t.scores).index_add_(0, rows, grad_scores[:, :k].reshape(n * k, heads)),
            grad_scores[:, k].sum(0),
            torch.zeros_like(t.values).index_add_(0, rows, grad_values),
            (grad_z[:, 0] * attn[:, k, :, None]).sum(0).view(d),
        )
        grads.update(zip(self.TABLE_PARAMS, torch.autograd.grad(t, list(table_leaves.values()), table_grads)))
        return loss, [grads[name] for name in ps]


class Tables(NamedTuple):
    """What :meth:`Transformer._tables` computes once per call: the "=" position's residual ``[d]``; the attention
    scores ``[positions · vocab, heads]`` and values ``[positions · vocab, d]`` of every (position, token) pair,
    and those of the "=" position (``[heads]``, ``[d]``)."""

    query: torch.Tensor
    scores: torch.Tensor
    eq_score: torch.Tensor
    values: torch.Tensor
    eq_value: torch.Tensor


#: Nanda, Chan, Lieberum, Smith & Steinhardt (2023), "Progress measures for grokking via mechanistic interpretability".
#: It flushes subnormal floats (``train.flush_denormal``): its late steps, at a training loss near 1e-7, would run
#: in them; flushed, the run stores the same numbers (docs/performance.md has the timings).
NANDA = Preset(
    name="nanda",
    task="modadd-cls",
    model="transformer",
    description="Nanda et al. 2023: p=113, 30% train, d_model 128, 4 heads, d_mlp 512, ReLU, AdamW lr 1e-3 wd 1 betas (0.9, 0.98), full batch; subnormals flushed (same numbers, faster on CPU)",
    settings={
        "task": {"p": 113, "train_fraction": 0.3, "loss": "cross_entropy"},
        "model": {"d_model": 128, "n_heads": 4, "d_mlp": 512, "activation": "relu", "init_scale": 1.0},
        "optimizer": {"name": "adamw", "lr": 1e-3, "weight_decay": 1.0, "beta1": 0.9, "beta2": 0.98},
        "regularizer": {"name": "none"},
        "train": {"steps": 40000, "eval_every": 100, "batch_size": None, "flush_denormal": True},
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
