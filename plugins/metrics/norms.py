"""Parameter-norm curves: ``linf_norm`` (‖θ‖∞) and ``l2_norm`` (‖θ‖₂), over all parameters."""

from __future__ import annotations

import torch

from grokbench import hookimpl
from grokbench.contracts import CurvePanel, EvalContext, Metric, SummaryColumn


class LInfNorm(Metric):
    """‖θ‖∞, the largest absolute parameter (the quantity the paper's ℓ∞ bound controls)."""

    name = "linf_norm"
    default = True
    outputs = ("linf_norm",)

    summary_keys = ("linf_norm_final",)
    report_columns = (SummaryColumn("linf_norm_final", "final ‖θ‖∞", None, ".3g"),)
    report_panels = (CurvePanel(("linf_norm",), "‖θ‖∞", log_y=True),)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        return {"linf_norm": max(p.abs().max().item() for p in ctx.model.parameters().values())}

    def summarize(self, curves, summary):
        return {"linf_norm_final": float(curves[-1]["linf_norm"]) if curves and "linf_norm" in curves[-1] else None}


class L2Norm(Metric):
    """‖θ‖₂, the Euclidean norm of all parameters."""

    name = "l2_norm"
    default = True
    outputs = ("l2_norm",)
    report_panels = (CurvePanel(("l2_norm",), "‖θ‖₂", log_y=True),)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        squares = sum(p.double().pow(2).sum() for p in ctx.model.parameters().values())
        return {"l2_norm": float(torch.as_tensor(squares).sqrt())}


@hookimpl
def register_metrics(register):
    register(LInfNorm)
    register(L2Norm)
