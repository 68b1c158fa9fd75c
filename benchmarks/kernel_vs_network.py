"""The qualitative facts of docs/kernels.md, measured: kernel models fail where the network groks.

modadd-cls p = 31 (train fractions 0.5 and 0.9) and modadd-reg p = 11, 13, 17: test accuracy of
``kernel`` (gradient flow at the last step, and the converged regression) and ``ntk-inf``; one grokking
run of ``quadratic`` (the default preset's network at lr 3e-3) with the four kernel metrics.

    python benchmarks/kernel_vs_network.py
"""

from __future__ import annotations

import torch

import grokbench


def main() -> None:
    import argparse

    argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0] if __doc__ else None).parse_args()
    torch.set_num_threads(1)
    print("task        p  frac  model               train_acc  test_acc  t_generalize")
    for task, ps in (("modadd-cls", (31,)), ("modadd-reg", (11, 13, 17))):
        for p in ps:
            for frac in (0.5, 0.9):
                for model, extra in (("kernel", {}), ("kernel", {"time": "infinite"}), ("ntk-inf", {})):
                    overrides = {"task": {"p": p, "train_fraction": frac}, "model": extra, "train": {"steps": 1000, "eval_every": 100}}
                    s = grokbench.run(task, model, overrides=overrides).summary
                    label = model + (" (infinite)" if extra else "")
                    print(f"{task}  {p:3d}  {frac:.1f}  {label:18s}  {s['final_train_acc']:9.4f}  {s['final_test_acc']:8.4f}  {s['t_generalize']}")
    metrics = {"ntk_drift": True, "margin": True, "fourier": True, "kernel_alignment": True}
    overrides = {"task": {"p": 31, "train_fraction": 0.5}, "optimizer": {"lr": 3e-3}, "metrics": metrics,
                 "train": {"steps": 3000, "eval_every": 50, "early_stop": True}}
    result = grokbench.run("modadd-cls", "quadratic", overrides=overrides)
    s, c = result.summary, result.curves.set_index("step")
    print(f"\nquadratic p=31 frac 0.5: final test acc {s['final_test_acc']:.4f}, t_memorize {s['t_memorize']}, t_generalize {s['t_generalize']}")
    print(f"  ntk_drift at memorize {s['ntk_drift_at_memorize']:.3f}, at generalize {s['ntk_drift_at_generalize']:.3f}, kernel departure step {s['kernel_departure_step']}")
    cols = ["train_acc", "test_acc", "ntk_drift", "kernel_alignment", "margin", "fourier_ipr", "linf_norm"]
    steps = sorted({0, s["t_memorize"], *range(0, s["t_generalize"] + 1, 200), s["t_generalize"]})
    print(c.loc[steps, cols].to_string(float_format=lambda v: f"{v:.4g}"))


if __name__ == "__main__":
    main()
