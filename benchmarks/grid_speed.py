"""A hyperparameter grid trained as one batched program against its runs one by one, in one process.

    python benchmarks/grid_speed.py [--threads 1] [--repeats 3] [--steps 300] [--grid lr-wd|alpha]

``lr-wd``: 4 learning rates x 4 AdamW decay strengths, one seed (16 runs); ``alpha``: tasks/paper-mini.toml's
``alpha`` entry (4 init scales x 2 seeds, 8 runs). p = 23, width 128, train fraction 0.6, Adam + decoupled decay,
evaluated every 50 steps as in paper-mini. Each repeat trains the grid both ways, interleaved (which goes first
alternates), through the same ``train_group`` / ``train_config`` the suites use, and checks that both give the
same final losses. A third way, as many seeds of the grid's first point batched (hyperparameters all equal, so
plain numbers), shows what the per-member hyperparameter tensors cost. Wall and CPU time are both reported: on a
shared machine the CPU time of this one-thread process is the steadier measure of the work. Prints each
repeat's times, then the median ratios.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from grokbench.config.run import parse_assignments, resolve_config
from grokbench.plugin.manager import get_registry
from grokbench.training.programs import train_config, train_group

BASE = ["task.p=23", "task.train_fraction=0.6", "model.width=128", "train.eval_every=50"]
GRIDS = {
    "lr-wd": [
        (0, [f"optimizer.lr={lr}", f"regularizer.strength={wd}"])
        for lr in (1e-3, 2e-3, 3e-3, 5e-3)
        for wd in (0.1, 0.3, 1.0, 3.0)
    ],
    "alpha": [
        (seed, ["optimizer.lr=3e-3", "regularizer.strength=1.0", f"model.init_scale={alpha}"])
        for alpha in (0.5, 1.0, 2.0, 4.0)
        for seed in (0, 1)
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--grid", choices=sorted(GRIDS), default="lr-wd")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    registry = get_registry()
    cfgs = [
        resolve_config(
            registry,
            task="modadd-cls",
            model="quadratic",
            regularizer="adamw",
            optimizer="adam",
            overrides=parse_assignments([*BASE, f"train.steps={args.steps}", *items]),
            seed=seed,
        )
        for seed, items in GRIDS[args.grid]
    ]
    seeds = [cfg.model_copy(update={"seed": i}) for i, cfg in enumerate([cfgs[0]] * len(cfgs))]
    print(f"grid {args.grid}: {len(cfgs)} runs x {args.steps} steps, {args.threads} thread(s)")
    ways = ["grid batched", "one by one", "seeds batched"]
    pairs = [("one by one", "grid batched"), ("seeds batched", "grid batched")]
    ratios: dict[tuple[str, str, str], list[float]] = {(c, a, b): [] for c in ("wall", "cpu") for a, b in pairs}
    for repeat in range(args.repeats):
        times: dict[tuple[str, str], float] = {}
        losses: dict[str, list[float]] = {}
        for way in ways[repeat % 3 :] + ways[: repeat % 3]:  # each way goes first in turn
            wall, cpu = time.perf_counter(), time.process_time()
            if way == "one by one":
                results = [train_config(cfg, registry=registry) for cfg in cfgs]
            else:
                group = cfgs if way == "grid batched" else seeds
                results = train_group(group, registry=registry, notice=lambda m: print("notice:", m))
                assert all(r.environment.get("batched_seeds") == len(group) for r in results)
            times["wall", way], times["cpu", way] = time.perf_counter() - wall, time.process_time() - cpu
            losses[way] = [r.summary["final_train_loss"] for r in results]
        worst = max(abs(a - b) / max(abs(b), 1e-30) for a, b in zip(losses["grid batched"], losses["one by one"]))
        for clock, slow, fast in ratios:
            ratios[clock, slow, fast].append(times[clock, slow] / times[clock, fast])
        print(
            f"repeat {repeat}: "
            + ", ".join(f"{w} {times['wall', w]:.2f} s wall ({times['cpu', w]:.2f} s CPU)" for w in ways)
            + f"; final train losses agree to {worst:.1e} relative"
        )
    for (clock, slow, fast), values in ratios.items():
        print(
            f"median {clock} time, {slow} / {fast}: {statistics.median(values):.2f}x "
            f"over {args.repeats} repeats {[round(r, 2) for r in values]}"
        )


if __name__ == "__main__":
    main()
