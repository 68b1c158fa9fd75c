"""Wall-time overhead of tracking NTK drift at the default evaluation schedule, measured in one process.

Runs the default preset (modadd-cls x quadratic: p = 97, width 512, Adam + AdamW decay, an evaluation
every 50 steps) with and without ``metrics.ntk_drift`` (probe 128, the default; closed form), interleaved
``--repeats`` times, and prints the ratio of the fastest runs. Per-step and per-evaluation costs do not
depend on the run's length, so ``--steps`` (default 500 of the preset's 3,000) only shortens the benchmark.
Whole-run times on a shared machine are noisy, so the script also times the
parts directly (one optimizer step, one evaluation without metrics, one ntk_drift computation) and
prints the overhead they imply for the preset's full 3,000-step run (61 evaluations), for the
closed form and for the generic torch.func path (``metrics.ntk_drift.method=torch.func``, for models
without a closed form).

    python benchmarks/ntk_drift_overhead.py [--steps 500] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from grokbench_plugins.methods.optimizers import Adam
from grokbench_plugins.metrics.kernel_metrics import NTKDrift
from grokbench_plugins.models.quadratic import QuadraticNetwork
from grokbench_plugins.tasks.modadd import ModAddClassification

import grokbench
from grokbench.config.run import resolve_config
from grokbench.plugin.contracts import EvalContext
from grokbench.plugin.manager import get_registry
from grokbench.training.loop import evaluate, make_predict


def per_call(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def parts(repeats: int = 10) -> dict[str, float]:
    """Seconds per optimizer step, per evaluation (no metrics) and per ntk_drift computation, best of ``repeats``."""
    cfg = resolve_config(get_registry(), task="modadd-cls", model="quadratic")
    task = ModAddClassification(ModAddClassification.Params(**cfg.task.params))
    data = task.make_data(0)
    model = QuadraticNetwork(QuadraticNetwork.Params(**cfg.model.params), data.spec, generator=torch.Generator().manual_seed(0))
    state = Adam(Adam.Params(**cfg.optimizer.params)).build(list(model.parameters().values()))
    step = per_call(lambda: state.step(model.loss_and_grads(data.x_train, data.y_train, task)[1]), repeats)
    evaluation = per_call(lambda: evaluate(0, task, data, model, []), repeats)
    out = {"step": step, "evaluation": evaluation}
    for method in ("closed-form", "torch.func"):
        metric = NTKDrift(NTKDrift.Params(method=method))
        ctx = EvalContext(step=0, model=model, task=task, data=data, predict=make_predict(model), evaluation={})
        out[f"ntk_drift ({method})"] = per_call(lambda: metric.compute(ctx), repeats if method == "closed-form" else 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = {"baseline": {}, "ntk_drift": {"ntk_drift": True}}
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):
        for name, metrics in variants.items():
            overrides = {"train": {"steps": args.steps}, "metrics": metrics}
            result = grokbench.run("modadd-cls", "quadratic", overrides=overrides, device=args.device)
            best[name] = min(best[name], result.wall_seconds)
    print(f"whole runs: default preset, {args.steps} steps, evaluation every 50, threads {torch.get_num_threads()}, device {args.device}")
    for name, seconds in best.items():
        print(f"  {name:10s} {seconds:7.2f} s   overhead {100 * (seconds / best['baseline'] - 1):+6.1f}%", flush=True)
    t = parts()
    run = 3000 * t["step"] + 61 * t["evaluation"]
    print(f"parts: optimizer step {t['step'] * 1e3:.1f} ms, evaluation {t['evaluation'] * 1e3:.1f} ms")
    for method in ("closed-form", "torch.func"):
        cost = t[f"ntk_drift ({method})"]
        print(f"ntk_drift ({method}) {cost * 1e3:.1f} ms per evaluation: "
              f"{100 * 61 * cost / run:.2f}% of a 3,000-step run with 61 evaluations")


if __name__ == "__main__":
    main()
