"""Side-by-side step cost: the CPU seconds one training step of each configuration takes, measured in this one
process, interleaved, so that their ratios (what grokbench-v2's cost-adjusted time scores) survive a noisy,
shared machine where absolute seconds do not."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence

import torch

from grokbench.config.run import RunConfig
from grokbench.errors import ConfigError
from grokbench.plugin.registry import Registry
from grokbench.training.building import prepare
from grokbench.training.loop import step_function


def measure_step_cost(
    configs: Sequence[RunConfig], registry: Registry, *, steps: int = 30, repeats: int = 5
) -> list[float]:
    """Each configuration's median CPU seconds per training step (evaluations excluded), in order.

    Every configuration's run is built here (same track, different methods, as a rule), stepped ``steps`` times
    to warm up, then timed in ``repeats`` rounds that interleave them (A B C A B C ...), each a block of
    ``steps`` steps timed with ``time.thread_time`` on one torch thread (restored after): the calling thread's
    CPU time is the whole step's, and a machine busy elsewhere slows every configuration of a round alike.
    A closed-form model takes no steps: a ConfigError."""
    if not configs:
        raise ValueError("measure_step_cost needs at least one configuration")
    if steps < 1 or repeats < 1:
        raise ValueError(f"steps and repeats must be at least 1 (got {steps}, {repeats})")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = [_stepper(cfg, registry) for cfg in configs]
        for cfg, step in runs:
            _block(cfg, step, steps)  # warm-up: allocations, caches, lazily built kernels
        seconds: list[list[float]] = [[] for _ in runs]
        for _ in range(repeats):
            for times, (cfg, step) in zip(seconds, runs):
                times.append(_block(cfg, step, steps) / steps)
    finally:
        torch.set_num_threads(threads)
    return [statistics.median(times) for times in seconds]


def _stepper(cfg: RunConfig, registry: Registry) -> tuple[RunConfig, Callable[[], None]]:
    prep = prepare(cfg, registry)
    if prep.optimizer is None or prep.regularizer is None:
        raise ConfigError(f"model '{cfg.model.name}' is trained in closed form: it takes no steps to time")
    step = step_function(
        task=prep.task,
        data=prep.data,
        model=prep.model,
        optimizer=prep.optimizer,
        regularizer=prep.regularizer,
        cfg=cfg.train,
        seed=cfg.seed,
    )
    return cfg, step


def _block(cfg: RunConfig, step: Callable[[], None], steps: int) -> float:
    """CPU seconds of this thread for ``steps`` steps (subnormals flushed as the run would have them)."""
    torch.set_flush_denormal(cfg.train.flush_denormal)
    try:
        start = time.thread_time()
        for _ in range(steps):
            step()
        return time.thread_time() - start
    finally:
        torch.set_flush_denormal(False)
