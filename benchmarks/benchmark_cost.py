"""CPU cost of each benchmark track: CPU seconds per training step of its 3-seed group, one thread.

On a shared machine wall time says little; CPU time (time.process_time) does.
For each track of a benchmark and one method, train the track's group (its
seeds, batched where the model supports it) for ``--steps`` steps with its own
evaluation schedule, and print CPU seconds per step. A track's cost for a
method is then about (cost per step) x (steps the method trains: its step to
generalize with early stop, or the budget); `--budget` prints that upper bound.

    python benchmarks/benchmark_cost.py --method adamw --steps 100
"""

from __future__ import annotations

import argparse
import time

import torch

from grokbench.config.benchmark import load_benchmark
from grokbench.plugin.manager import get_registry
from grokbench.training.programs import train_group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--benchmark", default=None, help="name or file (default: the only one installed)")
    parser.add_argument("--method", default="adamw")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--track", action="append")
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    bench = load_benchmark(args.benchmark, registry)
    plan = bench.plan(args.method, registry, args.track)
    by_track: dict[str, list] = {}
    for run in plan.suite.runs:
        by_track.setdefault(run.entry, []).append(run.config)
    total = 0.0
    print(f"{'track':22} {'CPU s/step (all seeds)':>24} {'budget':>7} {'CPU s at budget':>16}")
    for track, cfgs in by_track.items():
        budget = cfgs[0].train.steps
        short = [c.model_copy(update={"train": c.train.model_copy(update={"steps": args.steps, "early_stop": False})}) for c in cfgs]
        started = time.process_time()
        train_group(short, registry=registry, notice=lambda _: None)
        per_step = (time.process_time() - started) / args.steps
        total += per_step * budget
        print(f"{track:22} {per_step:24.4f} {budget:7d} {per_step * budget:16.1f}")
    print(f"{'all tracks at budget':22} {'':24} {'':7} {total:16.1f}")


if __name__ == "__main__":
    main()
