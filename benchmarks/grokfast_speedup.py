"""Does grokfast speed up grokking? Time to generalize with and without the filter, everything else equal.

The baseline is AdamW (torch.optim.AdamW, decoupled weight decay); the other
arm is the same AdamW on Grokfast-EMA-filtered gradients (optimizer
``grokfast``, first-party, which with lamb=0 is AdamW exactly). ``--model mlp`` needs
the example package (pip install examples/grokbench-example-plugins).

    python benchmarks/grokfast_speedup.py --model quadratic --set model.width=128 --p 23 --seeds 5

Measured (2-core CPU, modadd-cls p=23, train fraction 0.6, wd 1; steps to 99% test accuracy):
quadratic width 128, lr 3e-3: AdamW median 1100, grokfast 1400 (5 seeds); lr 1e-3: 3450 vs 3325;
mlp (embed 32, width 128, init 0.5), lr 3e-3, 6000 steps: AdamW 4675/-/4225, grokfast 5800/-/-.
No speedup in these settings (see docs/plugins.md).
"""

from __future__ import annotations

import argparse
import statistics

import torch

import grokbench
from grokbench.config.run import deep_merge, parse_assignments


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="modadd-cls")
    ap.add_argument("--model", default="quadratic")
    ap.add_argument("--p", type=int, default=23)
    ap.add_argument("--train-fraction", type=float, default=0.6)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--weight-decay", type=float, default=1.0)
    ap.add_argument("--lamb", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.98)
    ap.add_argument("--set", dest="assignments", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    torch.set_num_threads(1)
    common = deep_merge(
        {
            "task": {"p": args.p, "train_fraction": args.train_fraction},
            "train": {"steps": args.steps, "eval_every": 25, "early_stop": True},
            "regularizer": {"name": "none"},
        },
        parse_assignments(args.assignments),
    )
    adam = {"lr": args.lr, "weight_decay": args.weight_decay, "beta1": 0.9, "beta2": 0.98}
    variants = {
        "adamw": {"name": "adamw", **adam},
        f"grokfast(α={args.alpha}, λ={args.lamb})": {"name": "grokfast", **adam, "alpha": args.alpha, "lamb": args.lamb},
    }
    print(f"{args.task} p={args.p} train_fraction={args.train_fraction} model={args.model} {args.assignments}")
    print("t_generalize per seed (steps, evaluated every 25; '-' = not within the step budget)")
    for name, opt in variants.items():
        times = []
        for seed in range(args.seeds):
            r = grokbench.run(args.task, args.model, overrides={**common, "optimizer": opt}, seed=seed)
            times.append(r.summary["t_generalize"])
        done = [t for t in times if t is not None]
        median = statistics.median(done) if len(done) == len(times) else None
        print(f"{name:28s} " + " ".join(f"{t if t is not None else '-':>5}" for t in times) + f"   median {median}")


if __name__ == "__main__":
    main()
