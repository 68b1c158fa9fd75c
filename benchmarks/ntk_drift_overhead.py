"""Wall-time overhead of tracking NTK drift at the default evaluation schedule, measured in one process.

Runs the default preset (modadd-cls x quadratic: p = 97, width 512, Adam + AdamW decay, an evaluation
every 50 steps) with and without ``metrics.ntk_drift`` (probe 128, the default), interleaved
``--repeats`` times, and prints the ratio of the fastest runs. Per-step and per-evaluation costs do not
depend on the run's length, so ``--steps`` (default 500 of the preset's 3,000) only shortens the benchmark.
The generic torch.func path (``metrics.ntk_drift.method=torch.func``) is measured too, for models
without a closed form.

    python benchmarks/ntk_drift_overhead.py [--steps 500] [--repeats 2] [--threads 2]
"""

from __future__ import annotations

import argparse

import torch

import grokbench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    variants = {
        "baseline": {},
        "ntk_drift (closed form)": {"ntk_drift": True},
        "ntk_drift (torch.func)": {"ntk_drift": {"method": "torch.func"}},
        "all four kernel metrics": {"ntk_drift": True, "kernel_alignment": True, "margin": True, "fourier": True},
    }
    best = {name: float("inf") for name in variants}
    for _ in range(args.repeats):
        for name, metrics in variants.items():
            overrides = {"train": {"steps": args.steps}, "metrics": metrics}
            result = grokbench.run("modadd-cls", "quadratic", overrides=overrides, device=args.device)
            best[name] = min(best[name], result.wall_seconds)
    print(f"default preset, {args.steps} steps, evaluation every 50, threads {torch.get_num_threads()}, device {args.device}")
    for name, seconds in best.items():
        print(f"{name:26s} {seconds:7.2f} s   overhead {100 * (seconds / best['baseline'] - 1):+6.1f}%")


if __name__ == "__main__":
    main()
