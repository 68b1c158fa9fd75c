"""Writes v1_curves.json: runs trained by a grokbench without a validation split (before train.validation_fraction
and train.generalize_evals existed), whose config hashes, steps and curves tests/test_validation_split.py checks the
current code still gives. Run it with that grokbench first on the path, on one thread:
``PYTHONPATH=<old checkout with grokbench_plugins linked to plugins> python tests/data/make_v1_curves.py``."""

import json
import pathlib

import torch

import grokbench

#: name -> (task, overrides): a classification run, a regression run, and one that early-stops
RUNS = {
    "cls": ("modadd-cls", {"task": {"p": 11}, "model": {"width": 32}, "optimizer": {"lr": 0.01},
                           "train": {"steps": 120, "eval_every": 20, "dtype": "float64"}}),
    "reg": ("modadd-reg", {"train": {"steps": 200, "eval_every": 50, "dtype": "float64"}}),
    "early": ("modadd-cls", {"task": {"p": 23, "train_fraction": 0.6}, "model": {"width": 128}, "optimizer": {"lr": 3e-3},
                             "train": {"steps": 3000, "eval_every": 50, "early_stop": True, "dtype": "float64"}}),
}  # fmt: skip


def main() -> None:
    torch.set_num_threads(1)
    out = {}
    for name, (task, overrides) in RUNS.items():
        result = grokbench.run(task, "quadratic", overrides=overrides, seed=1)
        out[name] = {
            "hash": result.config.hash,
            "steps": result.steps,
            "t_generalize": result.summary["t_generalize"],
            "curves": result.curves.to_dict(orient="list"),
        }
    path = pathlib.Path(__file__).with_name("v1_curves.json")
    path.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
