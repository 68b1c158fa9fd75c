"""A suite entry's grid as one batched program against one program per grid point (its seeds), in one process.

    python benchmarks/program_size.py [--suite tasks/paper.toml] [--entry alpha] [--steps 100] [--repeats 3]

The question behind ``batching.batch_key``'s early-stop rule: now that programs shrink when members leave, is one
program of the whole grid (tasks/paper.toml's ``alpha``: 5 init scales x 3 seeds, p = 97, width 512) cheaper
per member-step than a program per grid point? Both ways train the entry's configurations for ``--steps`` steps
through ``train_group`` (as a suite worker does), with no early stop (no member leaves) and no metrics (the
step alone), one thread, interleaved (which goes first alternates). CPU time of this one-thread process is the
steadier measure on a shared machine; wall time is printed beside it. Checks that both ways give the same final
train losses (to float rounding), then prints the median ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from grokbench.config.suites import load_suite
from grokbench.plugin.manager import get_registry
from grokbench.training.programs import train_group


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="tasks/paper.toml")
    parser.add_argument("--entry", default="alpha")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    suite = load_suite(args.suite, registry)
    cfgs = []
    for cfg in suite.unique_configs([args.entry]):
        train = cfg.train.model_copy(update={"steps": args.steps, "early_stop": False})
        cfgs.append(cfg.model_copy(update={"train": train, "metrics": {}}))
    points: dict[str, list] = {}
    for cfg in cfgs:
        points.setdefault(cfg.variant, []).append(cfg)
    ways = {"one program": [cfgs], "a program per point": list(points.values())}
    sizes = {way: [len(g) for g in groups] for way, groups in ways.items()}
    print(f"{args.suite} {args.entry}: {len(cfgs)} runs x {args.steps} steps, programs {sizes}, 1 thread")
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    wall: dict[str, list[float]] = {way: [] for way in ways}
    for repeat in range(args.repeats):
        losses = {}
        for way in list(ways)[repeat % 2 :] + list(ways)[: repeat % 2]:
            w, c = time.perf_counter(), time.process_time()
            results = [r for group in ways[way] for r in train_group(group, registry=registry, notice=print)]
            wall[way].append(time.perf_counter() - w)
            cpu[way].append(time.process_time() - c)
            losses[way] = {r.config.hash: r.summary["final_train_loss"] for r in results}
        a, b = losses.values()
        worst = max(abs(a[h] - b[h]) / max(abs(b[h]), 1e-30) for h in a)
        print(
            f"repeat {repeat}: "
            + ", ".join(f"{way} {wall[way][-1]:.1f} s wall ({cpu[way][-1]:.1f} s CPU)" for way in ways)
            + f"; final train losses agree to {worst:.1e} relative"
        )
    one, per_point = ways
    for clock, times in (("cpu", cpu), ("wall", wall)):
        ratios = [p / o for p, o in zip(times[per_point], times[one])]
        print(
            f"median {clock} time, {per_point} / {one}: {statistics.median(ratios):.2f}x "
            f"over {args.repeats} repeats {[round(r, 2) for r in ratios]}"
        )


if __name__ == "__main__":
    main()
