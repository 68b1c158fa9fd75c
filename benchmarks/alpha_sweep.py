"""The effect of the initialization scale α (``model.init_scale``) on grokking, measured.

modadd-cls, p = 31, half the pairs, the default preset's network (width 512, Adam β2 0.98, AdamW decay
1.0) at lr 3e-3, early stop at generalization, several seeds per α. Prints the median time to memorize,
time to generalize and delay, and the median NTK drift at memorization.

    python benchmarks/alpha_sweep.py [--alphas 0.5 1 2 4] [--seeds 0 1 2] [--steps 8000]
"""

from __future__ import annotations

import argparse
import statistics

import torch

import grokbench


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alphas", type=float, nargs="+", default=[0.5, 1.0, 2.0, 4.0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--steps", type=int, default=8000)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{'alpha':>6} {'t_mem':>7} {'t_gen':>7} {'delay':>7} {'drift@mem':>10} {'generalized':>12}   per seed (t_mem, t_gen)")
    for alpha in args.alphas:
        rows = []
        for seed in args.seeds:
            overrides = {
                "task": {"p": 31, "train_fraction": 0.5},
                "model": {"init_scale": alpha},
                "optimizer": {"lr": 3e-3},
                "train": {"steps": args.steps, "eval_every": 50, "early_stop": True},
                "metrics": {"ntk_drift": True},
            }
            rows.append(grokbench.run("modadd-cls", "quadratic", overrides=overrides, seed=seed).summary)
        mem, gen = [r["t_memorize"] for r in rows], [r["t_generalize"] for r in rows]
        delay = [r["grokking_delay"] for r in rows]
        drift = median([r["ntk_drift_at_memorize"] for r in rows])
        print(f"{alpha:6g} {median(mem)!s:>7} {median(gen)!s:>7} {median(delay)!s:>7} "
              f"{drift if drift is None else round(drift, 3)!s:>10} {sum(g is not None for g in gen)}/{len(gen):<10}   {list(zip(mem, gen))}")


if __name__ == "__main__":
    main()
