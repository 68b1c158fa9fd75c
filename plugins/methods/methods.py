"""The benchmark's baseline methods, as presets (a method is a preset; see docs/benchmark.md).

A method preset applies to any task and model and sets only what a method
varies: the optimizer, the regularizer, and (for StableMax) the task's ``loss``.
``grokbench bench run --method NAME`` runs any preset of that shape, a
third-party plugin's included; ``grokbench run --preset NAME`` runs one alone.
The values are the literature's defaults, not tuned on the benchmark:

* ``adamw``: Adam (lr 1e-3, β₂ 0.98) with AdamW's decoupled decay λ = 1 (the reference);
* ``adam-l2``: Adam with λ/2 ‖θ‖₂², λ = 1e-2, in the loss;
* ``adam-linf``: Adam with λ ‖θ‖∞, λ = 1e-3, in the loss;
* ``ngd-linf``: the paper's classification optimizer: normalized GD, lr 10, ℓ∞ λ = 1e-20;
* ``sgd``: SGD, lr 0.1, momentum 0.9, no regularizer;
* ``noreg``: Adam (lr 1e-3, β₂ 0.98), no regularizer;
* ``grokfast``: the reference AdamW behind Grokfast-EMA's filter (α = 0.98, λ = 2; Lee et al. 2024);
* ``orthograd-stablemax``: ⊥AdamW (lr 1e-3, β₂ 0.98, no decay) with the StableMax loss (Prieto et al. 2025).
"""

from __future__ import annotations

from pathlib import Path

from grokbench import hookimpl
from grokbench.contracts import BenchmarkFile, Preset

ADAM = {"name": "adam", "lr": 1e-3, "beta2": 0.98}

METHODS = [
    Preset(
        "adamw",
        None,
        None,
        "benchmark reference: Adam lr 1e-3 with AdamW decoupled decay λ=1",
        {"optimizer": ADAM, "regularizer": {"name": "adamw", "strength": 1.0}},
    ),
    Preset(
        "adam-l2",
        None,
        None,
        "benchmark method: Adam lr 1e-3 with ℓ2 λ=1e-2 in the loss",
        {"optimizer": ADAM, "regularizer": {"name": "l2", "strength": 1e-2}},
    ),
    Preset(
        "adam-linf",
        None,
        None,
        "benchmark method: Adam lr 1e-3 with ℓ∞ λ=1e-3 in the loss",
        {"optimizer": ADAM, "regularizer": {"name": "linf", "strength": 1e-3}},
    ),
    Preset(
        "ngd-linf",
        None,
        None,
        "benchmark method: the paper's normalized GD lr 10 with ℓ∞ λ=1e-20",
        {"optimizer": {"name": "normalized-gd", "lr": 10.0}, "regularizer": {"name": "linf", "strength": 1e-20}},
    ),
    Preset(
        "sgd",
        None,
        None,
        "benchmark method: SGD lr 0.1, momentum 0.9, no regularizer",
        {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "regularizer": {"name": "none"}},
    ),
    Preset(
        "noreg",
        None,
        None,
        "benchmark method: Adam lr 1e-3, no regularizer",
        {"optimizer": ADAM, "regularizer": {"name": "none"}},
    ),
    Preset(
        "grokfast",
        None,
        None,
        "benchmark method: Grokfast-EMA (α=0.98, λ=2) in front of the reference AdamW",
        {
            "optimizer": {
                "name": "grokfast",
                "lr": 1e-3,
                "alpha": 0.98,
                "lamb": 2.0,
                "beta2": 0.98,
                "weight_decay": 1.0,
            },
            "regularizer": {"name": "none"},
        },
    ),
    Preset(
        "orthograd-stablemax",
        None,
        None,
        "benchmark method: ⊥AdamW lr 1e-3, no decay, StableMax loss (Prieto et al. 2025)",
        {
            "optimizer": {"name": "orthograd", "lr": 1e-3, "beta2": 0.98},
            "regularizer": {"name": "none"},
            "task": {"loss": "stablemax"},
        },
    ),
]


@hookimpl
def register_presets(register):
    for method in METHODS:
        register(method)


@hookimpl
def register_benchmarks(register):
    """grokbench-v1, the benchmark these methods are the baselines of (shipped as package data)."""
    register(BenchmarkFile(str(Path(__file__).with_name("benchmarks") / "grokbench-v1.toml")))
