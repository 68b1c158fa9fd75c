"""Torch CPU threads for a single run: torch's default vs OMP_WAIT_POLICY=PASSIVE vs 1 thread, side by side,
as found and with one extra CPU-bound process of our own running (``--load``).

    nice -n 10 python benchmarks/threads.py [--steps 300] [--repeats 2]

Each variant trains the quick start's configuration (modadd-cls / quadratic default preset, p = 97, width 512)
for ``--steps`` steps in a fresh subprocess (``grokbench run --store`` a temporary file), alternating variants
so that the machine's background load hits them alike; prints seconds per 100 steps (median of the repeats).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile

VARIANTS = {
    "torch default threads": ({}, ["--threads", str(os.cpu_count())]),
    "default threads + OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, ["--threads", str(os.cpu_count())]),
    "1 thread": ({}, ["--threads", "1"]),
}


def burn() -> None:
    while True:
        pass


def one(env: dict[str, str], args: list[str], steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, "-m", "grokbench", "run", "-t", "modadd-cls", "-m", "quadratic", "--set", f"train.steps={steps}",
                   "--store", f"{tmp}/s.db", "--json", "-q", *args]
        out = subprocess.run(command, env={**os.environ, **env}, capture_output=True, text=True, check=True)
    import json

    return json.loads(out.stdout)["wall_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=2)
    opts = parser.parse_args()
    for loaded in (False, True):
        burner = multiprocessing.Process(target=burn, daemon=True) if loaded else None
        if burner:
            burner.start()
        times: dict[str, list[float]] = {name: [] for name in VARIANTS}
        try:
            for _ in range(opts.repeats):
                for name, (env, args) in VARIANTS.items():
                    times[name].append(one(env, args, opts.steps))
        finally:
            if burner:
                burner.terminate()
        load = os.getloadavg()[0]
        print(f"{'with one extra CPU-bound process' if loaded else 'as found'} (cpus {os.cpu_count()}, load avg {load:.1f}):")
        for name, ts in times.items():
            print(f"  {name:45s} {100 * statistics.median(ts) / opts.steps:7.3f} s / 100 steps   (runs: {', '.join(f'{t:.1f}' for t in ts)} s)")


if __name__ == "__main__":
    main()
