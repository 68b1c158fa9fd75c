"""What flushing subnormal floats saves at a given point of a run: steps timed from its checkpoints, flush off and on.

    python benchmarks/flush_from_checkpoint.py CHECKPOINT.safetensors [MORE.safetensors ...] [--steps 40] [--repeats 2]

For each checkpoint (a run's state at a step, as `grokbench checkpoints` lists them): the share of subnormal
values in its parameters and optimizer state, then --steps training steps from that state (the run's own
configuration, one thread, no metrics, one evaluation at the end), timed in CPU seconds with
``train.flush_denormal`` off and on, interleaved, --repeats times. Subnormals that appear only inside a step (a
saturated softmax's probabilities, the gradients built from them) do not show in the state but do in the time.
docs/performance.md (the transformer section) quotes it on the `nanda` run's checkpoints.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch

from grokbench.config.run import RunConfig
from grokbench.plugin.manager import get_registry
from grokbench.recording.checkpoints import read
from grokbench.training.building import prepare
from grokbench.training.loop import train


def tensors(value):
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors(v)
    elif isinstance(value, list | tuple):
        for v in value:
            yield from tensors(v)


def subnormal_share(value) -> float:
    total = subnormal = 0
    for t in tensors(value):
        if t.is_floating_point():
            total += t.numel()
            subnormal += int(((t != 0) & (t.abs() < torch.finfo(t.dtype).tiny)).sum())
    return subnormal / max(total, 1)


def cpu_ms_per_step(path: str, steps: int, flush: bool, registry) -> float:
    state, header = read(path)
    cfg = RunConfig.model_validate(header["config"])
    train_cfg = cfg.train.model_copy(update={"steps": state.step + steps, "eval_every": 10**9, "flush_denormal": flush})
    prep = prepare(cfg, registry)
    start = time.process_time()
    train(
        task=prep.task,
        data=prep.data,
        model=prep.model,
        optimizer=prep.optimizer,
        regularizer=prep.regularizer,
        metrics=[],
        cfg=train_cfg,
        seed=cfg.seed,
        on_eval=lambda record: None,
        resume=state,
    )
    return (time.process_time() - start) / steps * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+")
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    registry = get_registry()
    load = " ".join(open("/proc/loadavg").read().split()[:3]) if os.path.exists("/proc/loadavg") else "unknown"
    print(f"1 thread, {args.steps} steps from each checkpoint, {args.repeats} repeats, load {load}")
    for path in args.checkpoints:
        state, _ = read(path)
        times: dict[bool, list[float]] = {False: [], True: []}
        for r in range(args.repeats):
            for flush in (False, True) if r % 2 == 0 else (True, False):
                times[flush].append(cpu_ms_per_step(path, args.steps, flush, registry))
        off, on = statistics.median(times[False]), statistics.median(times[True])
        print(
            f"step {state.step}: subnormal share of parameters {subnormal_share(state.params):.1e}, of optimizer "
            f"state {subnormal_share(state.optimizer):.1e}; {off:.1f} ms CPU per step by default, {on:.1f} ms with "
            f"subnormals flushed: {off / on:.2f}x (each repeat: default {', '.join(f'{t:.1f}' for t in times[False])};"
            f" flushed {', '.join(f'{t:.1f}' for t in times[True])})"
        )


if __name__ == "__main__":
    main()
