"""The transformer's training step on the CPU: today's step against the per-example formulation it replaced.

    python benchmarks/transformer_speed.py [--threads 1] [--repeats 5] [--steps 20] [--preset nanda] [--set KEY=VALUE ...]

Times full training steps (loss and gradients, then AdamW) of the preset's
configuration, interleaving three sides from the same initialization:
``Transformer.loss_and_grads`` (the table formulation with its hand-written
backward: what the trainer runs), generic autograd through ``Transformer.apply``
(the table formulation), and generic autograd through the per-example
formulation kept in tests/test_transformer.py (the model as first written: the
"before" of issue 16). Also times the step's GEMMs alone on tensors of its
shapes (its ceiling). Prints the median time per step of each, the speedups
over the per-example step (with every repeat's), and what the preset's full
run costs at that rate. Run from the repository root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokbench.config.run import parse_assignments, resolve_config  # noqa: E402
from grokbench.plugin.contracts import Model  # noqa: E402
from grokbench.plugin.manager import get_registry  # noqa: E402
from grokbench.training.building import prepare as _prepare  # noqa: E402
from tests.test_transformer import per_example_reference  # noqa: E402


def seconds_per_step(prep, loss_and_grads, steps):
    """The trainer's full-batch step (grokbench.training.loop.train_members) without its evaluations."""
    data, task, reg = prep.data, prep.task, prep.regularizer
    params = list(prep.model.parameters().values())
    state, lr = prep.optimizer.build(params), float(prep.optimizer.params.lr)
    start = time.perf_counter()
    for _ in range(steps):
        _, grads = loss_and_grads(data.x_train, data.y_train, task)
        if reg.supports("decoupled"):
            reg.decoupled_update(params, lr)
        state.step(grads)
    return (time.perf_counter() - start) / steps


def gemm_ceiling(model, n):
    """The step's GEMMs alone (forward and backward of W_O, the MLP and W_U) on tensors of its shapes: a closure
    and its flops. The tables' GEMMs (on the vocabulary's few hundred rows) are left out."""
    d, m, out = model.params.d_model, model.params.d_mlp, model.spec.output_dim
    r = lambda *shape: torch.randn(*shape)  # noqa: E731
    z, W_O, W_in, hid, W_out, W_U, g, g_last, g_pre = (
        r(n, d),
        r(d, d),
        r(d, m),
        r(n, m),
        r(m, d),
        r(d, out),
        r(n, out),
        r(n, d),
        r(n, m),
    )

    def gemms():
        resid = z @ W_O
        resid @ W_in
        last = hid @ W_out
        last @ W_U
        (
            g @ W_U.T,
            last.T @ g,
            g_last @ W_out.T,
            hid.T @ g_last,
            g_pre @ W_in.T,
            resid.T @ g_pre,
            g_last @ W_O.T,
            z.T @ g_last,
        )

    return gemms, 3 * 2 * n * (d * d + 2 * d * m + d * out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--preset", default="nanda")
    parser.add_argument("--set", dest="sets", action="append", default=[])
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    cfg = resolve_config(
        registry, task="modadd-cls", model="transformer", preset=args.preset, overrides=parse_assignments(args.sets)
    )
    hand, auto, old = (_prepare(cfg, registry) for _ in range(3))
    old.model.apply = lambda ps, x: per_example_reference(old.model, ps, x)
    sides = {
        "hand-written": (hand, hand.model.loss_and_grads),
        "autograd": (auto, lambda x, y, task: Model.loss_and_grads(auto.model, x, y, task)),
        "per-example": (old, lambda x, y, task: Model.loss_and_grads(old.model, x, y, task)),
    }
    n = len(hand.data.x_train)
    gemms, flops = gemm_ceiling(hand.model, n)
    for prep, step in sides.values():
        seconds_per_step(prep, step, 2)  # warm up
    times = {name: [] for name in [*sides, "GEMMs alone"]}
    for _ in range(args.repeats):
        for name, (prep, step) in sides.items():
            times[name].append(seconds_per_step(prep, step, args.steps))
        start = time.perf_counter()
        for _ in range(args.steps):
            gemms()
        times["GEMMs alone"].append((time.perf_counter() - start) / args.steps)
    med = {name: statistics.median(t) for name, t in times.items()}
    print(
        f"torch {torch.__version__}, {args.threads} thread(s); preset {args.preset}: p={cfg.task.params['p']}, n={n}, {cfg.model.params}"
    )
    for name, t in times.items():
        ratios = [o / s for o, s in zip(times["per-example"], t)]
        print(
            f"{name:12} {med[name] * 1e3:9.1f} ms/step  ({', '.join(f'{s * 1e3:.1f}' for s in t)});"
            f"  per-example / this {statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)})"
        )
    print(
        f"GEMMs alone: {flops / 1e9:.2f} GFLOP per step, {flops / med['GEMMs alone'] / 1e9:.1f} GFLOP/s (the ceiling of a step)"
    )
    steps = cfg.train.steps
    print(
        f"{steps} steps at the hand-written rate: {med['hand-written'] * steps / 60:.1f} min (training steps only; evaluation every {cfg.train.eval_every} steps adds its forward passes)"
    )


if __name__ == "__main__":
    main()
