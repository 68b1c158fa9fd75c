"""grokbench-v2's baseline methods: each registers with a source, a comparison that exists and a search space whose
trials resolve into runnable configurations over batchable keys; Grokfast-EMA's coupled decay is torch's Adam
weight_decay on the filtered gradient; v1's presets keep their settings and their runs' identities."""

import json
import subprocess
import sys

import pytest
import torch
from grokbench_plugins.methods.grokfast import Grokfast
from grokbench_plugins.methods.methods import METHODS

from grokbench.config.benchmark import check_method
from grokbench.config.run import resolve_config
from grokbench.config.search import draw_trials, trial_settings
from grokbench.plugin.contracts import batchable_fields

V2 = ["adamw", "adam", "grokfast-ema", "orthoadamw", "stablemax", "orthoadamw-stablemax", "ngd-linf"]
CONTROLS = ["noreg", "sgd", "adam-l2", "adam-linf"]
V1_VARIANTS = ["grokfast", "orthograd-stablemax"]


def method(name):
    (preset,) = [m for m in METHODS if m.name == name]
    return preset


def test_every_method_registers_with_a_source_a_comparison_and_a_space(registry):
    assert not registry.broken
    assert sorted(m.name for m in METHODS) == sorted(V2 + CONTROLS + V1_VARIANTS)
    names = set(registry.preset_names())
    for name in V2 + CONTROLS + V1_VARIANTS:
        check_method(name, registry)  # a method: sets only optimizer, regularizer, task.loss
        preset = method(name)
        assert preset.source, name
        assert preset.against is None or preset.against in names, (name, preset.against)
        assert preset.against != name
    for name in V2 + CONTROLS:
        assert method(name).space() is not None, name
    against = {name: method(name).against for name in V2 + V1_VARIANTS}
    assert against == {
        "adamw": None,
        "adam": None,
        "grokfast-ema": "adam",
        "orthoadamw": "adamw",
        "stablemax": "adamw",
        "orthoadamw-stablemax": "adamw",
        "ngd-linf": "adamw",
        "grokfast": "adamw",
        "orthograd-stablemax": "adamw",
    }
    for name in CONTROLS:
        assert method(name).source.startswith("no source: a control, untuned"), name
        assert method(name).description.startswith("control (no source; untuned)"), name
        assert method(name).against is None
    assert not any("literature" in m.description for m in METHODS)


def test_each_space_has_its_papers_ranges(registry):
    def bounds(name):
        return {k: (float(f"{d.low:.4g}"), float(f"{d.high:.4g}")) for k, d in method(name).space().params.items()}

    assert bounds("adamw") == {"optimizer.lr": (3.162e-4, 3.162e-3), "regularizer.strength": (0.3162, 3.162)}
    assert bounds("adam") == {"optimizer.lr": (3.162e-4, 3.162e-3)}
    assert bounds("grokfast-ema") == {
        "optimizer.alpha": (0.8, 0.99),
        "optimizer.coupled_decay": (0.005, 0.05),
        "optimizer.lamb": (0.1, 5.0),
        "optimizer.lr": (3.162e-4, 3.162e-3),
    }
    assert bounds("orthoadamw") == bounds("orthoadamw-stablemax") == {"optimizer.lr": (1e-3, 1e-2)}
    assert bounds("stablemax") == {"optimizer.lr": (3.162e-3, 3.162e-2)}
    assert bounds("noreg") == {"optimizer.lr": (1e-4, 1e-2)}
    assert bounds("sgd") == {"optimizer.lr": (1e-2, 1.0), "optimizer.momentum": (0.5, 0.99)}
    assert bounds("ngd-linf") == {"optimizer.lr": (3.162, 31.62), "regularizer.strength": (3.162e-21, 3.162e-20)}
    assert bounds("adam-l2") == {"optimizer.lr": (1e-4, 1e-2), "regularizer.strength": (1e-3, 1e-1)}
    assert bounds("adam-linf") == {"optimizer.lr": (1e-4, 1e-2), "regularizer.strength": (1e-4, 1e-2)}
    # each preset's own value lies inside its space
    for name in V2 + CONTROLS:
        settings = method(name).settings
        for key, dist in method(name).space().params.items():
            section, field = key.split(".")
            assert dist.low <= settings[section][field] <= dist.high, (name, key)


def test_every_trial_of_every_space_resolves_over_batchable_keys(registry):
    """The 8 trials a track would draw are valid runs of the method, and every key the space varies is BATCHABLE,
    so a track's trials can train as one batched program."""
    for name in V2 + CONTROLS:
        preset = method(name)
        for key in preset.space().params:
            kind, field = key.split(".")
            cls = registry.get(kind, preset.settings[kind]["name"])
            assert field in batchable_fields(cls.Params), (name, key)
        trials = draw_trials(preset.space(), 8, "grokbench-v2", 1)
        assert len({json.dumps(t, sort_keys=True) for t in trials}) == 8
        for trial in trials:
            settings = trial_settings(dict(preset.settings), trial)
            cfg = resolve_config(
                registry,
                task="modadd-cls",
                model="quadratic",
                overrides={**settings, "task": {"p": 7, **settings.get("task", {})}},
            )
            for key, value in trial.items():
                kind, field = key.split(".")
                assert getattr(cfg, kind).params[field] == pytest.approx(value), (name, key)


def test_authors_settings_as_their_code_runs_them(registry):
    def resolved(name, task="modadd-cls"):
        return resolve_config(registry, task=task, model="quadratic", preset=name, overrides={"task": {"p": 7}})

    ema = resolved("grokfast-ema")
    assert (ema.optimizer.name, ema.regularizer.name) == ("grokfast", "none")
    assert {k: ema.optimizer.params[k] for k in ("base", "lr", "alpha", "lamb", "beta1", "beta2", "eps", "weight_decay", "coupled_decay")} == {
        "base": "adamw", "lr": 1e-3, "alpha": 0.98, "lamb": 2.0, "beta1": 0.9, "beta2": 0.98, "eps": 1e-8,
        "weight_decay": 0.0, "coupled_decay": 0.005,
    }  # fmt: skip
    adam = resolved("adam")
    assert (
        adam.optimizer.name,
        adam.optimizer.params["lr"],
        adam.optimizer.params["beta2"],
        adam.regularizer.name,
    ) == ("adam", 1e-3, 0.98, "none")
    for name in ("orthoadamw", "orthoadamw-stablemax"):
        cfg = resolved(name)
        assert cfg.optimizer.name == "orthograd" and cfg.regularizer.name == "none"
        assert {k: cfg.optimizer.params[k] for k in ("base", "lr", "beta1", "beta2", "eps", "weight_decay")} == {
            "base": "adamw",
            "lr": 0.01,
            "beta1": 0.9,
            "beta2": 0.999,
            "eps": 1e-8,
            "weight_decay": 0.0,
        }
    assert resolved("orthoadamw").task.params["loss"] == "cross_entropy"
    assert resolved("orthoadamw-stablemax").task.params["loss"] == "stablemax"
    stable = resolved("stablemax")
    assert (stable.optimizer.name, stable.regularizer.name, stable.task.params["loss"]) == ("adam", "none", "stablemax")
    assert (stable.optimizer.params["lr"], stable.optimizer.params["beta2"], stable.optimizer.params["eps"]) == (
        0.01,
        0.999,
        1e-25,
    )
    ngd = resolved("ngd-linf")
    assert (
        ngd.optimizer.name,
        ngd.optimizer.params["lr"],
        ngd.regularizer.name,
        ngd.regularizer.params["strength"],
    ) == ("normalized-gd", 10.0, "linf", 1e-20)


def _authors_filter(params, grads, alpha, lamb):
    """ironjr/grokfast's gradfilter_ema, on p.grad in place: the EMA starts at the first gradient."""
    if grads is None:
        grads = [p.grad.detach().clone() for p in params]
    for i, p in enumerate(params):
        grads[i] = grads[i] * alpha + p.grad.detach() * (1 - alpha)
        p.grad = p.grad + grads[i] * lamb
    return grads


@pytest.mark.parametrize("decay", [0.005, 0.5])
def test_coupled_decay_is_torch_adam_weight_decay_after_the_filter(decay):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3))
    x, y = torch.randn(16, 5), torch.randint(0, 3, (16,))
    theirs = [p.detach().clone().requires_grad_(True) for p in model.parameters()]
    ours = [p.detach().clone().requires_grad_(True) for p in model.parameters()]

    def loss(params):
        w1, b1, w2, b2 = params
        return torch.nn.functional.cross_entropy(torch.tanh(x @ w1.T + b1) @ w2.T + b2, y)

    reference = torch.optim.Adam(theirs, lr=1e-2, betas=(0.9, 0.98), weight_decay=decay)
    params = Grokfast.Params(lr=1e-2, alpha=0.9, lamb=2.0, beta2=0.98, coupled_decay=decay)
    state = Grokfast(params).build([p.data for p in ours])
    ema = None
    for _ in range(6):
        reference.zero_grad()
        loss(theirs).backward()
        ema = _authors_filter(theirs, ema, 0.9, 2.0)
        reference.step()
        state.step(list(torch.autograd.grad(loss(ours), ours)))
    moved = max((a - p).abs().max().item() for a, p in zip(ours, model.parameters()))
    assert moved > 1e-2  # the steps did something
    for a, b in zip(ours, theirs):
        assert torch.allclose(a, b, rtol=0, atol=1e-6)
    # without the decay the parameters end elsewhere: the decay is applied, not ignored
    plain = [p.detach().clone() for p in model.parameters()]
    state = Grokfast(Grokfast.Params(lr=1e-2, alpha=0.9, lamb=2.0, beta2=0.98)).build(plain)
    for _ in range(6):
        state.step(list(torch.autograd.grad(loss([p.requires_grad_(True) for p in plain]), plain)))
    assert max((a - b).abs().max().item() for a, b in zip(plain, theirs)) > 1e-5


def test_coupled_decay_left_out_while_zero_so_stored_runs_keep_their_identity(registry):
    assert "coupled_decay" not in Grokfast.Params().model_dump(mode="json")
    assert Grokfast.Params(coupled_decay=0.005).model_dump(mode="json")["coupled_decay"] == 0.005
    hashes = {
        name: resolve_config(
            registry, task="modadd-cls", model="quadratic", preset=name, overrides={"task": {"p": 23}}
        ).hash
        for name in ("grokfast", "orthograd-stablemax", "adamw", "ngd-linf")
    }
    # the hashes these configurations had before the v2 methods existed
    assert hashes == {
        "grokfast": "4a8955d62581dd7e",
        "orthograd-stablemax": "c1379cd0c1673d81",
        "adamw": "d1be8c052881c213",
        "ngd-linf": "a07be4fba2c70522",
    }


def test_v1_presets_keep_their_settings():
    adam = {"name": "adam", "lr": 1e-3, "beta2": 0.98}
    none = {"name": "none"}
    assert {m.name: m.settings for m in METHODS if m.name in ["adamw", "ngd-linf", *CONTROLS, *V1_VARIANTS]} == {
        "adamw": {"optimizer": adam, "regularizer": {"name": "adamw", "strength": 1.0}},
        "adam-l2": {"optimizer": adam, "regularizer": {"name": "l2", "strength": 1e-2}},
        "adam-linf": {"optimizer": adam, "regularizer": {"name": "linf", "strength": 1e-3}},
        "ngd-linf": {
            "optimizer": {"name": "normalized-gd", "lr": 10.0},
            "regularizer": {"name": "linf", "strength": 1e-20},
        },
        "sgd": {"optimizer": {"name": "sgd", "lr": 0.1, "momentum": 0.9}, "regularizer": none},
        "noreg": {"optimizer": adam, "regularizer": none},
        "grokfast": {
            "optimizer": {
                "name": "grokfast",
                "lr": 1e-3,
                "alpha": 0.98,
                "lamb": 2.0,
                "beta2": 0.98,
                "weight_decay": 1.0,
            },
            "regularizer": none,
        },
        "orthograd-stablemax": {
            "optimizer": {"name": "orthograd", "lr": 1e-3, "beta2": 0.98},
            "regularizer": none,
            "task": {"loss": "stablemax"},
        },
    }


def test_grokfast_ema_runs_from_the_command_line_and_stores_its_decay(tmp_path):
    """A real subprocess of the CLI: the published Grokfast-EMA trains, and its run records the coupled decay."""
    done = subprocess.run(
        [sys.executable, "-m", "grokbench", "run", "--preset", "grokfast-ema", "--task", "modadd-cls", "--model",
         "quadratic", "--set", "task.p=7", "--set", "train.steps=40", "--set", "train.eval_every=20",
         "--store", str(tmp_path / "s.db"), "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == "completed"
    import sqlite3

    (config,) = sqlite3.connect(tmp_path / "s.db").execute("select config from runs").fetchone()
    optimizer = json.loads(config)["optimizer"]
    assert optimizer["name"] == "grokfast" and optimizer["params"]["coupled_decay"] == 0.005
