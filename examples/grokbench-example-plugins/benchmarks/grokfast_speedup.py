"""Does grokfast speed up grokking? Time to generalize with and without the filter, same everything else.

Needs the example package installed (pip install examples/grokbench-example-plugins).
Usage: python benchmarks/grokfast_speedup.py [--task modadd-cls] [--p 23] [--seeds 3] [--steps 4000]
"""

from __future__ import annotations

import argparse

import torch

import grokbench


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", default="modadd-cls")
    ap.add_argument("--model", default="mlp")
    ap.add_argument("--p", type=int, default=23)
    ap.add_argument("--train-fraction", type=float, default=0.5)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=4000)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=1.0)
    ap.add_argument("--lamb", type=float, default=2.0)
    ap.add_argument("--alpha", type=float, default=0.98)
    args = ap.parse_args()
    torch.set_num_threads(1)
    common = {
        "task": {"p": args.p, "train_fraction": args.train_fraction},
        "train": {"steps": args.steps, "eval_every": 25, "early_stop": True},
        "regularizer": {"name": "none"},
    }
    variants = {
        "adamw": {"name": "adamw", "lr": args.lr, "weight_decay": args.weight_decay, "beta2": 0.98},
        "grokfast": {"name": "grokfast", "lr": args.lr, "weight_decay": args.weight_decay, "alpha": args.alpha, "lamb": args.lamb},
    }
    print(f"{args.task} p={args.p} train={args.train_fraction} model={args.model}; t_memorize / t_generalize (steps, eval every 25)")
    for name, opt in variants.items():
        rows = []
        for seed in range(args.seeds):
            r = grokbench.run(args.task, args.model, overrides={**common, "optimizer": opt}, seed=seed)
            rows.append((r.summary["t_memorize"], r.summary["t_generalize"]))
        print(f"{name:9s} " + "  ".join(f"{m}/{g}" for m, g in rows))


if __name__ == "__main__":
    main()
