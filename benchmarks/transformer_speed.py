"""The transformer's training step on the CPU: today's table formulation against the per-example one it replaced.

    python benchmarks/transformer_speed.py [--threads 1] [--repeats 5] [--steps 20] [--preset nanda] [--set KEY=VALUE ...]

Times full training steps (loss and gradients through autograd, then AdamW) of the
preset's configuration, alternating between ``Transformer.apply`` and the
per-example formulation kept in tests/test_transformer.py (the model as first
written), from the same initialization, and prints the median time per step of
each, their ratio (with every repeat's), and what the preset's full run costs
at that rate. Run from the repository root.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokbench.config import parse_assignments, resolve_config  # noqa: E402
from grokbench.plugin_manager import get_registry  # noqa: E402
from grokbench.building import prepare as _prepare  # noqa: E402
from tests.test_transformer import per_example_reference  # noqa: E402


def seconds_per_step(prep, apply, steps):
    """The trainer's full-batch step (grokbench.trainer.train_members) without its evaluations."""
    model, data, task, reg = prep.model, prep.data, prep.task, prep.regularizer
    model.apply = apply
    params = list(model.parameters().values())
    state, lr = prep.optimizer.build(params), float(prep.optimizer.params.lr)
    start = time.perf_counter()
    for _ in range(steps):
        _, grads = model.loss_and_grads(data.x_train, data.y_train, task)
        if reg.supports("decoupled"):
            reg.decoupled_update(params, lr)
        state.step(grads)
    del model.apply
    return (time.perf_counter() - start) / steps


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
    cfg = resolve_config(registry, task="modadd-cls", model="transformer", preset=args.preset, overrides=parse_assignments(args.sets))
    new, old = _prepare(cfg, registry), _prepare(cfg, registry)
    sides = {"tables": (new, type(new.model).apply.__get__(new.model)), "per-example": (old, lambda ps, x: per_example_reference(old.model, ps, x))}
    for prep, apply in sides.values():
        seconds_per_step(prep, apply, 2)  # warm up
    times = {name: [] for name in sides}
    for _ in range(args.repeats):
        for name, (prep, apply) in sides.items():
            times[name].append(seconds_per_step(prep, apply, args.steps))
    med = {name: statistics.median(t) for name, t in times.items()}
    ratios = [o / t for o, t in zip(times["per-example"], times["tables"])]
    n = len(new.data.x_train)
    print(f"torch {torch.__version__}, {args.threads} thread(s); preset {args.preset}: p={cfg.task.params['p']}, n={n}, {cfg.model.params}")
    for name in sides:
        print(f"{name:12} {med[name] * 1e3:9.1f} ms/step  ({', '.join(f'{t * 1e3:.1f}' for t in times[name])})")
    print(f"speedup      {statistics.median(ratios):9.2f}x       ({', '.join(f'{r:.2f}' for r in ratios)})")
    steps = cfg.train.steps
    print(f"{steps} steps at the table rate: {med['tables'] * steps / 60:.1f} min (training steps only; evaluation every {cfg.train.eval_every} steps adds its forward passes)")


if __name__ == "__main__":
    main()
