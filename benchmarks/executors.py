"""Benchmark: executors on the smoke suite, and Ray's overhead per run.

    python benchmarks/executors.py [--jobs 2] [--trivial 40]

Measured in one process, each into a fresh store:
1. the smoke suite with ``inline`` (1 torch thread) and with ``process --jobs N``: the speedup;
2. Ray: starting a local instance, the smoke suite through it, and the overhead per run: the latency
   of ``--trivial`` runs of one training step (p = 7), one at a time, as a Ray task (warm worker)
   minus in this process.
Prints one JSON object. The numbers in docs/scaling.md come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from grokbench.config.suites import Suite, expand, load_suite, parse_suite
from grokbench.driving.suites import run_suite, train_work
from grokbench.plugin.manager import get_registry

ROOT = Path(__file__).resolve().parents[1]

TRIVIAL = """
[suite]
name = "trivial"
seeds = [{seeds}]
[[entries]]
name = "one-step"
task = "modadd-cls"
model = "quadratic"
set.task = {{ p = 7 }}
set.model = {{ width = 8 }}
set.train = {{ steps = 1, eval_every = 1 }}
"""


def timed(suite: Suite, store: Path, executor: str, **options) -> float:
    started = time.perf_counter()
    outcome = run_suite(suite, registry=get_registry(), store=store, executor=executor, options=options)
    assert outcome.trained == outcome.planned and outcome.failed == 0, outcome
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--trivial", type=int, default=40, help="one-step runs for the Ray overhead")
    args = parser.parse_args()
    registry = get_registry()
    smoke = load_suite(ROOT / "tasks" / "smoke.toml", registry)
    spec = parse_suite(TRIVIAL.format(seeds=", ".join(map(str, range(args.trivial)))))
    # one group per run, so Ray schedules one task per run (seeds would otherwise travel as one group)
    runs = expand(spec, registry)
    ungrouped = type("Ungrouped", (Suite,), {"groups": lambda self, configs=None: [[c] for c in (configs or self.unique_configs())]})
    trivial = ungrouped("trivial", None, spec, runs)

    out: dict[str, object] = {"cpus": os.cpu_count(), "load_average_before": os.getloadavg(), "runs": len(smoke.unique_configs())}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        out["inline_s"] = timed(smoke, tmp / "inline.db", "inline")
        out["process_s"] = timed(smoke, tmp / "process.db", "process", jobs=args.jobs)
        out["process_speedup"] = out["inline_s"] / out["process_s"]
        out["trivial_inline_s"] = timed(trivial, tmp / "trivial-inline.db", "inline")

        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.jobs, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        out["ray_start_s"] = time.perf_counter() - started
        out["ray_smoke_s"] = timed(smoke, tmp / "ray.db", "ray")  # includes the workers' first import of torch
        # through the driver, Ray's scheduling overlaps with the driver's writes, so the suite-level time
        # hides the overhead; measure it as the latency of one run, one at a time, with and without Ray
        out["trivial_ray_s"] = timed(trivial, tmp / "trivial-ray.db", "ray", cpus_per_run=args.jobs)
        configs = [r.config for r in runs]
        remote = ray.remote(num_cpus=1)(train_work)
        ray.get(remote.remote(configs[:1]))  # warm a worker
        started = time.perf_counter()
        for cfg in configs:
            train_work([cfg], registry)
        local = time.perf_counter() - started
        started = time.perf_counter()
        for cfg in configs:
            ray.get(remote.remote([cfg]))
        through_ray = time.perf_counter() - started
        out["one_step_run_local_ms"] = 1000 * local / len(configs)
        out["one_step_run_ray_roundtrip_ms"] = 1000 * through_ray / len(configs)
        out["ray_overhead_per_run_ms"] = out["one_step_run_ray_roundtrip_ms"] - out["one_step_run_local_ms"]
        ray.shutdown()
    out["load_average_after"] = os.getloadavg()
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
