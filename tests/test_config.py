import pytest

from grokbench.config.run import parse_assignments, resolve_config
from grokbench.errors import ConfigError


def resolve(registry, **kw):
    kw.setdefault("task", "modadd-cls")
    kw.setdefault("model", "quadratic")
    return resolve_config(registry, **kw)


def test_default_preset_applies_for_the_pair(registry):
    cfg = resolve(registry)
    assert cfg.preset == "default"
    assert cfg.task.params["p"] == 97 and cfg.model.params["width"] == 512
    assert cfg.regularizer.name == "adamw" and cfg.regularizer.params == {"strength": 1.0}
    assert cfg.optimizer.name == "adam" and cfg.optimizer.params["lr"] == 1e-3
    assert set(cfg.metrics) >= {"linf_norm", "l2_norm"}


def test_layers_override_in_order(registry):
    cfg = resolve(registry, overrides=parse_assignments(["task.p=31", "optimizer.lr=0.01", "train.steps=7"]), seed=4)
    assert cfg.task.params["p"] == 31 and cfg.optimizer.params["lr"] == 0.01 and cfg.train.steps == 7 and cfg.seed == 4


def test_explicit_component_drops_the_presets_parameters(registry):
    cfg = resolve(registry, regularizer="l2", overrides=parse_assignments(["regularizer.strength=0.5"]))
    assert cfg.regularizer.name == "l2" and cfg.regularizer.params == {"strength": 0.5}
    cfg = resolve(registry, optimizer="gd")
    assert cfg.optimizer.params == {"lr": 1.0}  # gd's own default, not the preset's Adam lr


def test_paper_preset(registry):
    cfg = resolve(registry, preset="paper")
    assert cfg.optimizer.name == "normalized-gd" and cfg.optimizer.params["lr"] == 10.0
    assert cfg.regularizer.name == "linf" and cfg.regularizer.params["strength"] == 1e-20
    assert cfg.task.params["n_train"] == "2*p^(5/3)" and cfg.model.params["width"] == "4p"
    reg = resolve(registry, task="modadd-reg", preset="paper")
    assert reg.optimizer.name == "gd" and reg.optimizer.params["lr"] == 1.0
    assert reg.regularizer.params["strength"] == 1e-4 and reg.task.params["n_train"] == "2*p^2.25"


def test_hash_is_stable_and_tracks_every_value(registry):
    a, b = resolve(registry), resolve(registry)
    assert a.hash == b.hash and len(a.hash) == 16
    assert resolve(registry, seed=1).hash != a.hash
    assert resolve(registry, overrides={"model": {"init_scale": 2.0}}).hash != a.hash


def test_hash_identifies_values_not_where_they_came_from(registry):
    paper = resolve(registry, preset="paper")
    spelled_out = resolve(
        registry,
        optimizer="normalized-gd",
        regularizer="linf",
        overrides={
            "task": {"p": 97, "train_fraction": None, "n_train": "2*p^(5/3)"},
            "model": {"width": "4p"},
            "optimizer": {"lr": 10.0},
            "regularizer": {"strength": 1e-20},
            "train": {"steps": 5000, "eval_every": 50},
        },
    )
    assert paper.preset == "paper" and spelled_out.preset == "default"
    assert paper.hash == spelled_out.hash


def test_set_values_are_json_or_strings():
    tree = parse_assignments(["a.b=3", "a.c=0.5", "a.d=true", "a.e=null", "a.f=hello", 'a.g="4p"', "a.h=[1, 2]"])
    assert tree == {"a": {"b": 3, "c": 0.5, "d": True, "e": None, "f": "hello", "g": "4p", "h": [1, 2]}}


@pytest.mark.parametrize(
    "items,message",
    [
        (["task.p"], "malformed --set"),
        (["=3"], "malformed --set"),
        (["task..p=3"], "malformed --set"),
        (["task.p=3", "task.p.q=4"], "both a value and sub-keys"),
    ],
)
def test_malformed_assignments(items, message):
    with pytest.raises(ConfigError, match=message):
        parse_assignments(items)


@pytest.mark.parametrize(
    "overrides,message",
    [
        ({"task": {"p": 1}}, "invalid value for task.p"),
        ({"task": {"train_fraction": 0.0}}, "invalid value for task.train_fraction"),
        ({"task": {"train_fraction": 1.0}}, "invalid value for task.train_fraction"),
        ({"task": {"q": 1}}, "unknown key 'task.q'"),
        ({"model": {"width": 0}}, "invalid value for model.width"),
        ({"optimizer": {"lr": 0}}, "invalid value for optimizer.lr"),
        ({"train": {"steps": -5}}, "invalid value for train.steps"),
        ({"train": {"stepz": 5}}, "unknown key 'train.stepz'"),
        ({"nonsense": 1}, "unknown key 'nonsense'"),
        ({"metrics": {"nope": True}}, "unknown metric 'nope'"),
        ({"seed": "x"}, "invalid value for seed"),
    ],
)
def test_invalid_values_are_config_errors(registry, overrides, message):
    with pytest.raises(ConfigError, match=message):
        resolve(registry, overrides=overrides)


def test_unknown_names_suggest_the_closest(registry):
    with pytest.raises(ConfigError, match="did you mean 'modadd-cls'"):
        resolve(registry, task="modad-cls")
    with pytest.raises(ConfigError, match="did you mean 'quadratic'"):
        resolve(registry, model="quadratc")
    with pytest.raises(ConfigError, match="unknown regularizer 'zzz'"):
        resolve(registry, regularizer="zzz")
    with pytest.raises(ConfigError, match="no preset 'nope'"):
        resolve(registry, preset="nope")


def test_metrics_can_be_removed(registry):
    cfg = resolve(registry, overrides={"metrics": {"l2_norm": False}})
    assert "l2_norm" not in cfg.metrics and "linf_norm" in cfg.metrics
