"""The default quadratic step with Adam's fused update and the loss's scatter, against what they replaced.

    python benchmarks/update_and_loss.py [--steps 100] [--rounds 9]

"Old" patches in the cross-entropy gradient as computed before (``grad[arange(n), y] -= 1``) and Adam's torch path
(eight operators per tensor); "new" is the code as it is. Both train the default run (modadd-cls, p = 97, width
512, full batch, Adam + AdamW decay) through grokbench's trainer for --steps steps, in interleaved rounds (the
order swapped every round), one thread, the process pinned to one core, timed in CPU time. Prints the median CPU
time per step of each side, the quartiles of the per-round ratios, and whether the parameters after the last round
are equal bit for bit (they must be: neither change alters a number).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
import train_speed  # noqa: E402  (benchmarks/ is not a package)
from grokbench_plugins.methods import fused_adam  # noqa: E402
from grokbench_plugins.tasks.modadd import ModAddClassification  # noqa: E402

NEW_LOSS, NEW_UPDATE = ModAddClassification.loss_and_output_grad, fused_adam.update


def old_loss(self, out, y):
    n = out.shape[0]
    logp = torch.log_softmax(out, dim=1)
    loss = -logp.gather(1, y[:, None]).mean()
    grad = logp.exp_()
    grad[torch.arange(n, device=out.device), y] -= 1.0
    return loss, grad.div_(n)


def use(old: bool) -> None:
    ModAddClassification.loss_and_output_grad = old_loss if old else NEW_LOSS  # type: ignore[method-assign]
    fused_adam.update = fused_adam.torch_update if old else NEW_UPDATE


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    torch.set_num_threads(1)
    train_speed.pin_to_cores(1)
    cfg = train_speed.config(steps=args.steps)
    ms: dict[bool, list[float]] = {False: [], True: []}
    final = {}
    for r in range(args.rounds):
        for old in (False, True) if r % 2 == 0 else (True, False):
            use(old)
            start = time.process_time()
            _, prep = train_speed.grokbench_steps_per_second(cfg)
            ms[old].append((time.process_time() - start) / args.steps * 1e3)
            final[old] = [p.clone() for p in prep.model.parameters().values()]
    use(False)
    ratios = [o / n for n, o in zip(ms[False], ms[True])]
    q1, _, q3 = statistics.quantiles(ratios, n=4)
    new, old = statistics.median(ms[False]), statistics.median(ms[True])
    print(f"load average {' '.join(open('/proc/loadavg').read().split()[:3])}; {args.rounds} rounds of {args.steps} steps, 1 thread")
    print(f"new {new:.2f} ms, old {old:.2f} ms of CPU per step: old / new {statistics.median(ratios):.3f} "
          f"(quartiles {q1:.3f}-{q3:.3f}), {old - new:.2f} ms saved per step")
    print(f"parameters after {args.steps} steps equal bit for bit: {all(torch.equal(a, b) for a, b in zip(final[False], final[True]))}")


if __name__ == "__main__":
    main()
