"""The benchmark's baseline methods, as presets (a method is a preset; see docs/benchmark.md and docs/methods.md).

A method preset applies to any task and model and sets only what a method
varies: the optimizer, the regularizer, and (for StableMax) the task's ``loss``.
``grokbench bench run --method NAME`` runs any preset of that shape, a
third-party plugin's included; ``grokbench run --preset NAME`` runs one alone.

Each preset says where its values come from (``source``), which method its
paper measured it against (``against``), and the search space it is tuned over
under the external-tuning ruleset (``search_space``), taken from the paper:
the ranges its authors ran, or, where a paper gives one value, a range one
decade wide in log space around it (:func:`decade_around`).

Methods with a source (each at its authors' settings, as their code runs them; what a method cannot set, a
warmup or a batch size, is not applied: docs/methods.md says where):

* ``adamw``: the reference, Adam (lr 1e-3, β₂ 0.98) with decoupled decay λ = 1 (Power et al. 2022);
* ``adam``: Adam with no decay, the baseline Grokfast's paper measures against;
* ``grokfast-ema``: Grokfast-EMA as published: the filter (α 0.98, λ 2) on Adam with coupled weight decay 0.005
  added after the filter (Lee et al. 2024);
* ``orthoadamw``, ``stablemax``, ``orthoadamw-stablemax``: ⊥AdamW, StableMax, and both (a pairing the paper runs
  only on SGD), at lr 0.01 with no decay (Prieto et al. 2025);
* ``ngd-linf``: normalized GD, lr 10, ℓ∞ λ = 1e-20, the classification recipe of Mohamadi et al. 2024.

Controls, with no source and untuned (their spaces are grokbench's, a decade
either side of the value, :func:`decades_either_side`): ``noreg``, ``sgd``,
``adam-l2``, ``adam-linf``. Kept for grokbench-v1, whose table names them, as
are its two variants ``grokfast`` (the filter on the reference AdamW, not the
published configuration) and ``orthograd-stablemax`` (⊥AdamW + StableMax at the
reference's lr 1e-3 and β₂ 0.98, not the authors'); their settings are v1's.
"""

from __future__ import annotations

from pathlib import Path

from grokbench import hookimpl
from grokbench.contracts import BenchmarkFile, LogUniform, Preset, Uniform

ADAM = {"name": "adam", "lr": 1e-3, "beta2": 0.98}
#: ⊥AdamW as Prieto et al.'s code runs it: their wrapper builds the base AdamW with lr and weight decay 0 only, so
#: β₂ and ε are torch's defaults (0.999, 1e-8) whatever --beta2 and --adam_epsilon say
ORTHOADAMW = {"name": "orthograd", "base": "adamw", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
NO_REGULARIZER = {"name": "none"}

GROKFAST_CODE = "ironjr/grokfast at 93b2248"
PRIETO_CODE = "LucasPrietoAl/grokking-at-the-edge-of-numerical-stability at 0cc9e8d"
CONTROL = "no source: a control, untuned; its search space is grokbench's (a decade either side), not a paper's"


def decade_around(value: float) -> LogUniform:
    """A range one decade wide in log space, centred on ``value``: the space of a setting a paper gives one value of."""
    return LogUniform(low=value / 10**0.5, high=value * 10**0.5)


def decades_either_side(value: float) -> LogUniform:
    """value/10 to value·10: a control's space (grokbench's, wide because nothing says where the value should be)."""
    return LogUniform(low=value / 10, high=value * 10)


METHODS = [
    Preset(
        "adamw",
        None,
        None,
        "benchmark reference: Adam lr 1e-3, β₂ 0.98, with AdamW decoupled decay λ=1 (Power et al. 2022)",
        {"optimizer": ADAM, "regularizer": {"name": "adamw", "strength": 1.0}},
        search_space={"optimizer.lr": decade_around(1e-3), "regularizer.strength": decade_around(1.0)},
        source="Power et al. 2022, 'Grokking', training details (AdamW, lr 1e-3, weight decay 1, β₁ 0.9, β₂ 0.98; "
        "quoted in ironjr/grokfast main.py); decoupled decay as Loshchilov & Hutter 2019. One value each, so the "
        "space is a decade around it. Not applied here: their 10-step warmup and batches of 512",
    ),
    Preset(
        "adam",
        None,
        None,
        "Adam lr 1e-3, β₂ 0.98, no decay: the baseline Grokfast is measured against (Lee et al. 2024)",
        {"optimizer": ADAM, "regularizer": NO_REGULARIZER},
        search_space={"optimizer.lr": decade_around(1e-3)},
        source=f"Lee et al. 2024, Grokfast: the baseline of the algorithmic-data run ({GROKFAST_CODE}: README "
        "'Algorithmic Data', main.py with no filter: torch.optim.Adam, lr 1e-3, β (0.9, 0.98), weight decay 0). One "
        "lr, so the space is a decade around it. Not applied here: the 10-update warmup and batches of 512",
    ),
    Preset(
        "grokfast-ema",
        None,
        None,
        "Grokfast-EMA as published: EMA filter α=0.98, λ=2 on Adam lr 1e-3, β₂ 0.98, coupled decay 0.005 after "
        "the filter (Lee et al. 2024)",
        {
            "optimizer": {
                "name": "grokfast",
                "base": "adamw",
                "lr": 1e-3,
                "alpha": 0.98,
                "lamb": 2.0,
                "beta1": 0.9,
                "beta2": 0.98,
                "weight_decay": 0.0,
                "coupled_decay": 0.005,
            },
            "regularizer": NO_REGULARIZER,
        },
        search_space={
            "optimizer.lr": decade_around(1e-3),
            "optimizer.alpha": Uniform(low=0.8, high=0.99),
            "optimizer.lamb": LogUniform(low=0.1, high=5.0),
            "optimizer.coupled_decay": LogUniform(low=0.005, high=0.05),
        },
        source=f"Lee et al. 2024, Grokfast ({GROKFAST_CODE}): README 'Algorithmic Data', `main.py --filter ema "
        "--alpha 0.98 --lamb 2.0 --weight_decay 0.005`: gradfilter_ema, then torch.optim.Adam (lr 1e-3, β (0.9, "
        "0.98)) whose weight_decay adds 0.005·θ to the filtered gradient. Space: α 0.8–0.99 (their commands use "
        "0.8, 0.9, 0.98; their rule α^N = 0.1 gives 0.79 at delay ratio N = 10, 0.98 at N = 100), λ 0.1–5 (their "
        "commands use 0.1, 1, 2; 5 is their code's default), coupled decay 0.005–0.05 (their README: the default "
        "×1 to ×10), lr a decade around 1e-3 (one value). Not applied here: the 10-update warmup, batches of 512",
        against="adam",
    ),
    Preset(
        "orthoadamw",
        None,
        None,
        "⊥AdamW (⊥Grad on AdamW) lr 0.01, β₂ 0.999, no decay, softmax cross-entropy (Prieto et al. 2025)",
        {"optimizer": {**ORTHOADAMW, "weight_decay": 0.0}, "regularizer": NO_REGULARIZER},
        search_space={"optimizer.lr": LogUniform(low=1e-3, high=1e-2)},
        source=f"Prieto et al. 2025, 'Grokking at the edge of numerical stability' ({PRIETO_CODE}): "
        "run_main_experiments.sh, Figure 1 (MLP, `--lr 0.01 --orthogonal_gradients`, weight decay 0) and Figure 6 "
        "(MLP lr 0.005, transformer lr 0.001). Their OrthoGrad wrapper builds the base AdamW from lr and weight "
        "decay only, so it runs β (0.9, 0.999), ε 1e-8 (checked by building it with torch 2.13). Space: lr 1e-3 to "
        "1e-2, the values their runs use",
        against="adamw",
    ),
    Preset(
        "stablemax",
        None,
        None,
        "StableMax loss with AdamW at the authors' decay 0 (Adam) lr 0.01, β₂ 0.999, ε 1e-25 (Prieto et al. 2025)",
        {
            "optimizer": {"name": "adam", "lr": 0.01, "beta1": 0.9, "beta2": 0.999, "eps": 1e-25},
            "regularizer": NO_REGULARIZER,
            "task": {"loss": "stablemax"},
        },
        search_space={"optimizer.lr": decade_around(0.01)},
        source=f"Prieto et al. 2025, 'Grokking at the edge of numerical stability' ({PRIETO_CODE}): "
        "run_main_experiments.sh, Figures 1 and 4 (`--lr 0.01 --loss_function stablemax --beta2 0.999`): "
        "torch.optim.AdamW with their default weight decay 0 and ε 1e-25 (utils.py get_optimizer). One lr, so the "
        "space is a decade around it",
        against="adamw",
    ),
    Preset(
        "orthoadamw-stablemax",
        None,
        None,
        "⊥AdamW lr 0.01, β₂ 0.999, no decay, with the StableMax loss: the two of Prieto et al. 2025 together",
        {
            "optimizer": {**ORTHOADAMW, "weight_decay": 0.0},
            "regularizer": NO_REGULARIZER,
            "task": {"loss": "stablemax"},
        },
        search_space={"optimizer.lr": LogUniform(low=1e-3, high=1e-2)},
        source=f"Prieto et al. 2025 ({PRIETO_CODE}): orthoadamw's settings with stablemax's loss. The paper runs "
        "⊥Grad and StableMax together only on SGD (Figure 6: ⊥SGD lr 10, momentum 0.8, float64); this combination "
        "of its two MLP settings is grokbench's. Space: lr 1e-3 to 1e-2, as orthoadamw",
        against="adamw",
    ),
    Preset(
        "ngd-linf",
        None,
        None,
        "normalized GD lr 10 with ℓ∞ λ=1e-20: the classification recipe of Mohamadi et al. 2024 (docs/paper.md)",
        {"optimizer": {"name": "normalized-gd", "lr": 10.0}, "regularizer": {"name": "linf", "strength": 1e-20}},
        search_space={"optimizer.lr": decade_around(10.0), "regularizer.strength": decade_around(1e-20)},
        source="Mohamadi et al. 2024 (ICML), appendix: classification with normalized GD, lr 10, ℓ∞ λ = 1e-20 (the "
        "`paper` preset for modadd-cls; docs/paper.md). One value each, so the space is a decade around it. The "
        "appendix's regression recipe (GD lr 1, λ = 1e-4) is the `paper` preset for modadd-reg, not this method",
        against="adamw",
    ),
    Preset(
        "adam-l2",
        None,
        None,
        "control (no source; untuned): Adam lr 1e-3 with ℓ2 λ=1e-2 in the loss",
        {"optimizer": ADAM, "regularizer": {"name": "l2", "strength": 1e-2}},
        search_space={"optimizer.lr": decades_either_side(1e-3), "regularizer.strength": decades_either_side(1e-2)},
        source=CONTROL,
    ),
    Preset(
        "adam-linf",
        None,
        None,
        "control (no source; untuned): Adam lr 1e-3 with ℓ∞ λ=1e-3 in the loss",
        {"optimizer": ADAM, "regularizer": {"name": "linf", "strength": 1e-3}},
        search_space={"optimizer.lr": decades_either_side(1e-3), "regularizer.strength": decades_either_side(1e-3)},
        source=CONTROL,
    ),
    Preset(
        "sgd",
        None,
        None,
        "control (no source; untuned): SGD lr 0.1, momentum 0.9, no regularizer",
        {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "regularizer": NO_REGULARIZER},
        search_space={"optimizer.lr": decades_either_side(0.1), "optimizer.momentum": Uniform(low=0.5, high=0.99)},
        source=CONTROL,
    ),
    Preset(
        "noreg",
        None,
        None,
        "control (no source; untuned): Adam lr 1e-3, no regularizer",
        {"optimizer": ADAM, "regularizer": NO_REGULARIZER},
        search_space={"optimizer.lr": decades_either_side(1e-3)},
        source=CONTROL,
    ),
    Preset(
        "grokfast",
        None,
        None,
        "grokbench-v1's Grokfast variant: the EMA filter (α=0.98, λ=2) on the reference AdamW (decoupled λ=1), not "
        "the published configuration (that is grokfast-ema)",
        {
            "optimizer": {
                "name": "grokfast",
                "lr": 1e-3,
                "alpha": 0.98,
                "lamb": 2.0,
                "beta2": 0.98,
                "weight_decay": 1.0,
            },
            "regularizer": NO_REGULARIZER,
        },
        source="Lee et al. 2024's filter at their algorithmic-data α and λ, on grokbench's reference AdamW instead of "
        "their Adam with coupled decay 0.005; grokbench-v1's pairing, kept for its table",
        against="adamw",
    ),
    Preset(
        "orthograd-stablemax",
        None,
        None,
        "grokbench-v1's ⊥AdamW + StableMax at the reference's lr 1e-3, β₂ 0.98, no decay; not the authors' "
        "settings (those are orthoadamw-stablemax)",
        {
            "optimizer": {"name": "orthograd", "lr": 1e-3, "beta2": 0.98},
            "regularizer": NO_REGULARIZER,
            "task": {"loss": "stablemax"},
        },
        source="Prieto et al. 2025's ⊥AdamW and StableMax at grokbench's reference lr and β₂ (the authors run lr "
        "0.01, β₂ 0.999); grokbench-v1's variant, kept for its table",
        against="adamw",
    ),
]


@hookimpl
def register_presets(register):
    for method in METHODS:
        register(method)


@hookimpl
def register_benchmarks(register):
    """grokbench-v1 and grokbench-v2, the benchmarks these methods are the baselines of (package data)."""
    for name in ("grokbench-v1", "grokbench-v2"):
        register(BenchmarkFile(str(Path(__file__).with_name("benchmarks") / f"{name}.toml")))
