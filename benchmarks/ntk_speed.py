"""Closed-form eNTK of the quadratic network vs the generic torch.func path, measured in one process.

p = 97, width 512 (the default preset's network), float32, first-output kernel. The closed form is
timed on all p² = 9,409 inputs. The torch.func path builds a [n, 149,568] Jacobian and contracts it
(n² · 150k multiply-adds); on all inputs that is a 5.6 GB Jacobian and ~26 Tflop, so it is timed on a
random subset of ``--subset`` inputs, where the closed form is timed as well: the ratio printed is
on the same inputs. The extrapolation to all inputs scales the Jacobian time by n and the
contraction by n² and is labelled as such.

    python benchmarks/ntk_speed.py [--subset 1024] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

import torch
from grokbench_plugins.models.quadratic import QuadraticNetwork
from grokbench_plugins.tasks.modadd import ModAddClassification

from grokbench.training.ntk import contract, empirical_ntk, jacobian


def best_of(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--p", type=int, default=97)
    ap.add_argument("--width", type=int, default=512)
    ap.add_argument("--subset", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    task = ModAddClassification(ModAddClassification.Params(p=args.p))
    data = task.make_data(0)
    x_all = torch.cat([data.x_train, data.x_test]).to(device)
    model = QuadraticNetwork(QuadraticNetwork.Params(width=args.width), data.spec, generator=torch.Generator().manual_seed(0), device=device)
    n_params = sum(v.numel() for v in model.parameters().values())
    sub = x_all[torch.randperm(len(x_all), generator=torch.Generator().manual_seed(1))[: args.subset].to(device)]

    def closed(x):
        k = empirical_ntk(model, x, method="closed-form")
        sync()
        return k

    closed(sub)  # warm up
    t_closed_all, k_all = best_of(lambda: closed(x_all), 3)
    t_closed_sub, k_closed = best_of(lambda: closed(sub), 5)

    def jac():
        j = jacobian(model, model.parameters(), sub, "first")
        sync()
        return j

    def gram(j):
        k = contract(j, j, "first")
        sync()
        return k

    jac()
    t_jac, j = best_of(jac, 2)
    t_gram, k_func = best_of(lambda: gram(j), 2)
    t_func = t_jac + t_gram
    rel = ((k_func.double() - k_closed.double()).norm() / k_closed.double().norm()).item()
    n, m = len(x_all), len(sub)
    t_func_all = t_jac * n / m + t_gram * (n / m) ** 2

    print(f"device {device}, threads {torch.get_num_threads()}, torch {torch.__version__}")
    print(f"quadratic network p={args.p}, width {args.width}, {n_params:,} parameters, float32, first-output eNTK")
    print(f"closed form, all {n:,} inputs ({k_all.shape[0]}x{k_all.shape[1]} kernel): {t_closed_all:.3f} s")
    print(f"subset of {m:,} inputs: closed form {t_closed_sub * 1e3:.2f} ms, torch.func {t_func:.3f} s "
          f"(Jacobian {t_jac:.3f} s + contraction {t_gram:.3f} s); agreement {rel:.1e} relative")
    print(f"speed-up on the same {m:,} inputs: {t_func / t_closed_sub:,.0f}x")
    print(f"torch.func on all {n:,} inputs, extrapolated (not run): ~{t_func_all:,.0f} s, "
          f"{t_func_all / t_closed_all:,.0f}x the closed form's measured {t_closed_all:.2f} s")


if __name__ == "__main__":
    main()
