"""Presets for the modular-addition tasks and the quadratic network.

``default`` (applied when a run names no preset) is tuned so that
``grokbench run --task modadd-cls --model quadratic`` groks on a laptop CPU.
``paper`` is the appendix of Mohamadi et al. (ICML 2024), with the deviations
noted in its description.
"""

from __future__ import annotations

from grokbench import hookimpl
from grokbench.contracts import Preset

PRESETS = [
    Preset(
        name="default",
        task=None,
        model=None,
        description="fallback components: no regularizer, Adam",
        settings={"regularizer": {"name": "none"}, "optimizer": {"name": "adam"}},
    ),
    Preset(
        name="default",
        task="modadd-cls",
        model="quadratic",
        description="p=97, half the pairs, width 512, Adam with AdamW decay 1.0: memorizes by ~200 steps, groks by ~2000",
        settings={
            "task": {"p": 97, "train_fraction": 0.5},
            "model": {"width": 512, "init_scale": 1.0},
            "optimizer": {"name": "adam", "lr": 1e-3, "beta2": 0.98},
            "regularizer": {"name": "adamw", "strength": 1.0},
            "train": {"steps": 3000, "eval_every": 50},
        },
    ),
    Preset(
        name="default",
        task="modadd-reg",
        model="quadratic",
        description="p=13, 55% of the p³ entries, width 4p, Adam with AdamW decay 1.0: memorizes by ~500 steps, groks by ~10k",
        settings={
            "task": {"p": 13, "train_fraction": 0.55},
            "model": {"width": "4p", "init_scale": 1.0},
            "optimizer": {"name": "adam", "lr": 3e-3},
            "regularizer": {"name": "adamw", "strength": 1.0},
            "train": {"steps": 20000, "eval_every": 250},
        },
    ),
    Preset(
        name="paper",
        task="modadd-cls",
        model="quadratic",
        description="paper appendix: normalized GD lr 10, ℓ∞ λ=1e-20, n=2·p^(5/3), width 4p",
        settings={
            "task": {"p": 97, "n_train": "2*p^(5/3)"},
            "model": {"width": "4p", "init_scale": 1.0},
            "optimizer": {"name": "normalized-gd", "lr": 10.0},
            "regularizer": {"name": "linf", "strength": 1e-20},
            "train": {"steps": 5000, "eval_every": 50},
        },
    ),
    Preset(
        name="paper",
        task="modadd-reg",
        model="quadratic",
        description="paper appendix: GD lr 1, ℓ∞ λ=1e-4, n=2·p^2.25, width 4p (mean-field output scale 1/h, float64)",
        settings={
            "task": {"p": 11, "n_train": "2*p^2.25"},
            "model": {"width": "4p", "init_scale": 1.0, "parameterization": "mean-field"},
            "optimizer": {"name": "gd", "lr": 1.0},
            "regularizer": {"name": "linf", "strength": 1e-4},
            "train": {"steps": 20000, "eval_every": 200, "dtype": "float64"},
        },
    ),
]


@hookimpl
def register_presets(register):
    for preset in PRESETS:
        register(preset)
