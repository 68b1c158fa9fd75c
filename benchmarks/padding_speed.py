"""Should runs of different train fractions or widths join one batched program by padding? The cost both ways.

    python benchmarks/padding_speed.py [--threads 1] [--repeats 5] [--steps 10] [--p 97] [--seeds 4]
        [--fractions 0.3,0.5,0.6,0.8] [--widths 4p,8p,16p] [--width W] [--fraction 0.5]

For the quadratic network on modadd-cls (the default preset: Adam with AdamW decay, full batch), a grid of G
members that differ only in train fraction (so in their number of training pairs n), or only in width, each
member over --seeds seeds, is trained two ways, interleaved, --repeats times:

* **separate**: each member is its own batched group, as today (`stacked_loss_and_grads` over its seeds), one
  group after another;
* **padded**: one batched program over all G·S networks. Fractions: every member's batch padded to the largest
  n with rows whose loss weight is 0 (the loss of each network is the mean over its own rows, so its gradient is
  exactly its separate one); widths: every member's W and V padded with zero hidden units to the largest width
  (a zero unit has z = 0, so it neither changes the output nor receives a gradient: exact without a mask).

Each timed step is the gradient (`stacked_loss_and_grads` of plugins/models/quadratic.py) plus the AdamW decay and the
Adam update, on the stacked tensors. Before timing, the script checks that every member's padded gradient equals
its separate one. Prints the time per step of the whole grid both ways (medians, every repeat's ratio) and the
load average; ratios above 1 mean padding pays. Run from the repository root.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from grokbench_plugins.models.quadratic import Workspace, resolve_width, stacked_loss_and_grads  # noqa: E402

from grokbench.config.run import parse_assignments, resolve_config  # noqa: E402
from grokbench.plugin.manager import get_registry  # noqa: E402
from grokbench.training.building import prepare  # noqa: E402

REGISTRY = get_registry()


class Weighted:
    """A task whose per-row loss gradient is scaled by ``weights`` ``[rows, 1]`` (0 on padding rows)."""

    def __init__(self, task, weights: torch.Tensor):
        self.task, self.weights = task, weights

    def loss_and_output_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loss, g = self.task.loss_and_output_grad(out, y)
        return loss, g.mul_(self.weights)


class Program:
    """One batched program: stacked W ``[S, k·p, h]``, V ``[S, h, p]``, data, the optimizer and the decay."""

    def __init__(self, preps, x, y, task, W, V):
        self.x, self.y, self.task, self.W, self.V = x, y, task, W, V
        self.params = [W, V]
        opt = preps[0].optimizer
        self.state, self.lr, self.reg = opt.build(self.params), float(opt.params.lr), preps[0].regularizer
        self.ws = Workspace()

    def grads(self):
        return stacked_loss_and_grads(self.W, self.V, self.x, self.y, self.task, 1.0, self.ws)[1]

    def step(self):
        grads = self.grads()
        if self.reg.supports("decoupled"):
            self.reg.decoupled_update(self.params, self.lr)
        self.state.step(list(grads))


def members(p, seeds, grid, fraction, width):
    """For each grid value: the prepared runs of its seeds (the default quadratic preset on modadd-cls)."""
    out = []
    for value in grid:
        sets = [f"task.p={p}", f"task.train_fraction={value if fraction is None else fraction}"]
        sets.append(f"model.width={width if width is not None else value}")
        out.append(
            [
                prepare(
                    resolve_config(
                        REGISTRY, task="modadd-cls", model="quadratic", overrides=parse_assignments(sets), seed=s
                    ),
                    REGISTRY,
                )
                for s in range(seeds)
            ]
        )
    return out


def separate_program(preps):
    x = torch.stack([q.data.x_train for q in preps])
    y = torch.stack([q.data.y_train for q in preps])
    W = torch.stack([q.model.parameters()["W"] for q in preps])
    V = torch.stack([q.model.parameters()["V"] for q in preps])
    return Program(preps, x, y, preps[0].task, W, V)


def padded_program(groups):
    """All members in one program, batches padded to the largest n (weight 0), widths padded with zero units."""
    preps = [q for group in groups for q in group]
    n_max = max(len(q.data.x_train) for q in preps)
    h_max = max(q.model.parameters()["W"].shape[1] for q in preps)
    S, k = len(preps), preps[0].data.x_train.shape[1]
    rows, p_out = preps[0].model.parameters()["W"].shape[0], preps[0].model.parameters()["V"].shape[1]
    x = torch.zeros(S, n_max, k, dtype=preps[0].data.x_train.dtype)
    y = torch.zeros(S, n_max, dtype=preps[0].data.y_train.dtype)
    weights = torch.zeros(S, n_max, 1)
    W, V = torch.zeros(S, rows, h_max), torch.zeros(S, h_max, p_out)
    for s, q in enumerate(preps):
        n, (Wq, Vq) = len(q.data.x_train), (q.model.parameters()["W"], q.model.parameters()["V"])
        x[s, :n], y[s, :n], weights[s, :n] = q.data.x_train, q.data.y_train, n_max / n
        W[s, :, : Wq.shape[1]], V[s, : Vq.shape[0]] = Wq, Vq
    return Program(preps, x, y, Weighted(preps[0].task, weights.view(S * n_max, 1)), W, V)


def check_equal(groups, separate, padded):
    """Every member's padded gradient equals its separate one (to float32 rounding)."""
    gW, gV = (g.clone() for g in padded.grads())
    s = 0
    for group, prog in zip(groups, separate):
        sW, sV = prog.grads()
        h = sW.shape[-1]
        for i in range(len(group)):
            torch.testing.assert_close(gW[s, :, :h], sW[i], rtol=1e-4, atol=1e-6)
            torch.testing.assert_close(gV[s, :h], sV[i], rtol=1e-4, atol=1e-6)
            assert not gW[s, :, h:].any() and not gV[s, h:].any()
            s += 1


def measure(label, groups, repeats, steps):
    separate = [separate_program(g) for g in groups]
    padded = padded_program(groups)
    check_equal(groups, separate, padded)

    def run_separate():
        for prog in separate:
            prog.step()

    sides = {"separate": run_separate, "padded": padded.step}
    for fn in sides.values():
        fn()  # warm up (workspaces, CSR scatter matrices)
        fn()
    times = {name: [] for name in sides}
    loads = [os.getloadavg()[0]]
    for _ in range(repeats):
        for name, fn in sides.items():
            start = time.perf_counter()
            for _ in range(steps):
                fn()
            times[name].append((time.perf_counter() - start) / steps)
        loads.append(os.getloadavg()[0])
    ratios = [a / b for a, b in zip(times["separate"], times["padded"])]
    ns = [len(g[0].data.x_train) for g in groups]
    hs = [g[0].model.parameters()["W"].shape[1] for g in groups]
    members = len(groups) * len(groups[0])
    print(f"{label}: n = {ns}, widths = {hs}, {len(groups[0])} seeds each ({members} networks)")
    for name, t in times.items():
        print(
            f"  {name:9} {statistics.median(t) * 1e3:8.2f} ms per grid step, {statistics.median(t) / members * 1e3:.3f} ms "
            f"per member-step  ({', '.join(f'{v * 1e3:.1f}' for v in t)})"
        )
    print(
        f"  separate / padded {statistics.median(ratios):.2f}x ({', '.join(f'{r:.2f}' for r in ratios)});"
        f" load average {min(loads):.1f}-{max(loads):.1f}"
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--p", type=int, action="append", help="modulus (repeatable; default 97 and 23)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds per member")
    parser.add_argument("--fractions", default="0.3,0.5,0.6,0.8", help="train fractions of the fraction grid")
    parser.add_argument("--widths", default="4p,8p,16p", help="widths of the width grid")
    parser.add_argument(
        "--width", help="width of the fraction grid (default: 512, or 128 below p = 50, as train_speed.py)"
    )
    parser.add_argument("--fraction", type=float, default=0.5, help="train fraction of the width grid")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    fractions = [float(f) for f in args.fractions.split(",")]
    widths = [int(w) if w.isdigit() else w for w in args.widths.split(",")]
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} steps x {args.repeats} repeats")
    for p in args.p or [97, 23]:
        width = args.width or ("512" if p >= 50 else "128")
        width = int(width) if width.isdigit() else width
        label = f"p = {p}, width {resolve_width(width, p)}, train fractions {fractions}"
        measure(label, members(p, args.seeds, fractions, None, width), args.repeats, args.steps)
        label = f"p = {p}, train fraction {args.fraction}, widths {widths}"
        measure(label, members(p, args.seeds, widths, args.fraction, None), args.repeats, args.steps)


if __name__ == "__main__":
    main()
