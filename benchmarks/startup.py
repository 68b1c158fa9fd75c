"""Start-up cost of the command line, each figure the median of --repeats fresh processes.

    python benchmarks/startup.py [--repeats 5]

Prints the wall time of ``grokbench --help`` (which imports no torch), of
``python -c 'import torch'``, and, for ``grokbench run -t modadd-cls -m
quadratic --set train.steps=1``, the time from the interpreter's start to the
first evaluation (which comes right before the first training step) beyond
the time it spent importing torch.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = """
import sys, time
before = time.time()
import torch
torch_s = time.time() - before
import grokbench.training.loop as trainer
start = float(sys.argv[1])
evaluate = trainer.evaluate
def first(*args, **kwargs):
    if not hasattr(first, "at"):
        first.at = time.time()
        print(f"FIRST {first.at - start - torch_s:.4f}", file=sys.stderr)
    return evaluate(*args, **kwargs)
trainer.evaluate = first
sys.argv = ["grokbench", "run", "-t", "modadd-cls", "-m", "quadratic", "--set", "train.steps=1", "--store", sys.argv[2], "-q"]
from grokbench.cli import main
main()
"""


def wall(cmd):
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    grokbench = [str(Path(sys.executable).with_name("grokbench")), "--help"]
    rows = {"help": [], "torch": [], "first step beyond torch": []}
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            rows["help"].append(wall(grokbench))
            rows["torch"].append(wall([sys.executable, "-c", "import torch"]))
            # the run imports torch first and subtracts the time that took in the same process
            out = subprocess.run([sys.executable, "-c", CHILD, str(time.time()), f"{tmp}/s{i}.db"], capture_output=True, text=True, check=True)
            rows["first step beyond torch"].append(float(out.stderr.split("FIRST")[1].split()[0]))
    for name, values in rows.items():
        print(f"{name:26} {statistics.median(values):6.2f} s   ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
