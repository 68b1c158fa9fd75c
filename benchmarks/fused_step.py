"""The quadratic model's fused step against its torch path (GROKBENCH_FUSED=0), alternating every few steps.

    python benchmarks/fused_step.py [--threads 1] [--p 97] [--rounds 40] [--steps 2]

Two copies of the default run's model, optimizer and data (modadd-cls, width 512, full batch, Adam + AdamW
decay) from the same initialization; each round times --steps whole steps (gradient, decay, Adam) of one and then
the other, the order swapped every round. On a shared machine this fine interleaving gives a steadier ratio than
train_speed.py's longer blocks, whose sides can fall into different load. Prints the median time per step of
each side, the median and quartiles of the per-round ratios, the load average, and whether the two copies still
agree (they train the same numbers to float rounding).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from grokbench.config.run import parse_assignments, resolve_config
from grokbench.plugin.manager import get_registry
from grokbench.training.building import prepare


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--p", type=int, default=97)
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--steps", type=int, default=2, help="steps of one side per round")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    cfg = resolve_config(registry, task="modadd-cls", model="quadratic", overrides=parse_assignments([f"task.p={args.p}"]), seed=0)
    sides = {}
    for fused in ("1", "0"):
        prep = prepare(cfg, registry)
        params = list(prep.model.params_.values())
        sides[fused] = (prep, params, prep.optimizer.build(params))
    times = {"1": [], "0": []}
    for r in range(args.rounds):
        for fused in ("1", "0") if r % 2 else ("0", "1"):
            os.environ["GROKBENCH_FUSED"] = fused
            prep, params, state = sides[fused]
            start = time.perf_counter()
            for _ in range(args.steps):
                _, grads = prep.model.loss_and_grads(prep.data.x_train, prep.data.y_train, prep.task)
                prep.regularizer.decoupled_update(params, prep.optimizer.params.lr)
                state.step(grads)
            times[fused].append((time.perf_counter() - start) / args.steps)
    ratios = [t / f for f, t in zip(times["1"], times["0"])]
    q = statistics.quantiles(ratios, n=4)
    gap = max(float((a - b).abs().max() / b.abs().max()) for a, b in zip(sides["1"][1], sides["0"][1]))
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "unknown"
    print(f"{args.threads} thread(s), p={args.p}, {args.rounds} rounds of {args.steps} steps each side, load {load}")
    print(f"fused {statistics.median(times['1']) * 1e3:.2f} ms/step, torch path {statistics.median(times['0']) * 1e3:.2f} ms/step: "
          f"the fused step is {statistics.median(ratios):.2f}x faster (quartiles {q[0]:.2f}-{q[2]:.2f})")
    print(f"parameters after {args.rounds * args.steps} steps differ by at most {gap:.1e} (relative to the largest)")


if __name__ == "__main__":
    main()
