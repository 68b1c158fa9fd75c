"""Torch CPU threads for a single run: torch's default thread count vs the same with OMP_WAIT_POLICY=PASSIVE vs
1 thread, side by side, alone and with one competing CPU-bound process running.

    nice -n 10 python benchmarks/threads.py [--steps 300] [--repeats 2]

Each variant trains the README quick start's configuration (``grokbench run --task modadd-cls --model quadratic``:
the default preset, p = 97, width 512) for ``--steps`` steps in a fresh subprocess (``--store`` a temporary file),
the variants interleaved (one run of each in turn, ``--repeats`` rounds) so that the machine's own background load
hits them alike. The competing process is one busy loop of our own, started before the round and stopped after.
Prints a table of steps/s (median over the repeats; the run's training wall time, start-up excluded) and each
variant's speed relative to 1 thread in the same condition. "torch default" is the thread count torch picks in a
fresh process with no environment override (the first line says which), with OpenMP's own way of waiting (the
command is started without grokbench's entry point, which would set OMP_WAIT_POLICY=PASSIVE). The PASSIVE row is
grokbench's default exactly as a user gets it: ``grokbench run`` with no ``--threads``.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import subprocess
import sys
import tempfile

from tabulate import tabulate

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY", "GROKBENCH_THREADS")


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without thread settings, plus ``extra``."""
    return {**{k: v for k, v in os.environ.items() if k not in THREAD_VARS}, **extra}


def torch_default_threads() -> int:
    out = subprocess.run(
        [sys.executable, "-c", "import torch; print(torch.get_num_threads())"],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    return int(out.stdout)


#: the CLI without grokbench's entry point (which sets OMP_WAIT_POLICY=PASSIVE before torch loads)
BARE_CLI = ["-c", "import sys; from grokbench.cli import cli; sys.argv[0] = 'grokbench'; cli()"]
#: the CLI as a user runs it
ENTRY_POINT = ["-m", "grokbench"]


def variants(default: int) -> dict[str, tuple[list[str], list[str]]]:
    return {
        f"torch default ({default} threads), OpenMP's own waiting": (BARE_CLI, ["--threads", str(default)]),
        f"grokbench's default: {default} threads + OMP_WAIT_POLICY=PASSIVE": (ENTRY_POINT, []),
        "1 thread": (ENTRY_POINT, ["--threads", "1"]),
    }


def burn() -> None:
    while True:
        pass


def steps_per_second(runner: list[str], args: list[str], steps: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        command = [sys.executable, *runner, "run", "-t", "modadd-cls", "-m", "quadratic",
                   "--set", f"train.steps={steps}", "--store", f"{tmp}/s.db", "--json", "-q", *args]  # fmt: skip
        out = subprocess.run(command, env=clean_env(), capture_output=True, text=True, check=True)
    return steps / json.loads(out.stdout)["wall_seconds"]


def measure(steps: int, repeats: int, competing: bool, named: dict) -> dict[str, list[float]]:
    found: dict[str, list[float]] = {name: [] for name in named}
    for _ in range(repeats):
        burner = multiprocessing.Process(target=burn, daemon=True) if competing else None
        if burner is not None:
            burner.start()
        try:
            for name, (runner, args) in named.items():
                found[name].append(steps_per_second(runner, args, steps))
        finally:
            if burner is not None:
                burner.terminate()
                burner.join()
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per run (the quick start trains 3,000)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved rounds per condition")
    opts = parser.parse_args()
    default = torch_default_threads()
    named = variants(default)
    load = os.getloadavg()[0]
    print(f"cpus {os.cpu_count()}, torch's default threads {default}, load average {load:.1f} before measuring")
    alone = measure(opts.steps, opts.repeats, False, named)
    loaded = measure(opts.steps, opts.repeats, True, named)
    med = {k: {n: statistics.median(v) for n, v in d.items()} for k, d in (("alone", alone), ("loaded", loaded))}
    one = "1 thread"
    rows = [
        [
            name,
            f"{med['alone'][name]:.1f}",
            f"{med['alone'][name] / med['alone'][one]:.2f}x",
            f"{med['loaded'][name]:.1f}",
            f"{med['loaded'][name] / med['loaded'][one]:.2f}x",
            ", ".join(f"{v:.0f}" for v in alone[name]) + " | " + ", ".join(f"{v:.0f}" for v in loaded[name]),
        ]
        for name in named
    ]
    headers = ["variant", "alone steps/s", "vs 1 thread", "+1 busy process steps/s", "vs 1 thread", "runs (alone | loaded)"]
    print(tabulate(rows, headers=headers, tablefmt="github"))
    print(f"{opts.steps} steps per run, median of {opts.repeats}; load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
