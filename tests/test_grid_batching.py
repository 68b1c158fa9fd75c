"""A grid as one program: runs that differ in batchable hyperparameters (declared by their components) train as
one batched program, each with its own hyperparameters, and each gets the numbers it would get alone."""

import pytest
import torch

from grokbench.config.run import parse_assignments, resolve_config
from grokbench.config.suites import load_suite
from grokbench.plugin.contracts import batchable_fields
from grokbench.plugin.manager import get_registry
from grokbench.training.batching import batch_groups, batch_key, split_by_memory, stack_components
from grokbench.training.programs import train_config, train_group
from grokbench.training.resources import estimate_bytes

from .test_multiseed import SMALL, assert_same_runs


def grid(points, extra=(), **names):
    """One configuration per (seed, [--set items]) point, on top of the small multi-seed test settings."""
    registry = get_registry()
    return [
        resolve_config(
            registry,
            task="modadd-cls",
            model="quadratic",
            overrides=parse_assignments([*SMALL, *extra, *items]),
            seed=seed,
            **names,
        )
        for seed, items in points
    ]


@pytest.mark.parametrize(
    "extra, names, points, rtol",
    [
        (  # the default preset: Adam + AdamW decay; lr, decay, init scale and seed all differ
            ["train.dtype=float64"],
            {},
            [
                (0, ["optimizer.lr=0.01", "regularizer.strength=1.0", "model.init_scale=1.0"]),
                (0, ["optimizer.lr=0.003", "regularizer.strength=0.1", "model.init_scale=1.0"]),
                (1, ["optimizer.lr=0.01", "regularizer.strength=0.1", "model.init_scale=0.5"]),
                (2, ["optimizer.lr=0.02", "regularizer.strength=1.0", "model.init_scale=2.0"]),
            ],
            1e-10,
        ),
        (  # AdamW's own betas, eps and weight decay
            ["train.dtype=float64"],
            {"optimizer": "adamw", "regularizer": "none"},
            [
                (0, ["optimizer.lr=0.01", "optimizer.beta1=0.9", "optimizer.beta2=0.98", "optimizer.weight_decay=1.0"]),
                (0, ["optimizer.lr=0.01", "optimizer.beta1=0.5", "optimizer.beta2=0.999", "optimizer.eps=1e-6"]),
                (3, ["optimizer.lr=0.005", "optimizer.beta1=0.8", "optimizer.weight_decay=0.0"]),
            ],
            1e-10,
        ),
        (  # minibatch SGD with momentum (one member without) and l2
            ["train.dtype=float64", "train.batch_size=16"],
            {"optimizer": "sgd", "regularizer": "l2"},
            [
                (0, ["optimizer.lr=0.05", "optimizer.momentum=0.9", "regularizer.strength=1e-3"]),
                (1, ["optimizer.lr=0.02", "optimizer.momentum=0.0", "regularizer.strength=1e-2"]),
                (1, ["optimizer.lr=0.05", "optimizer.momentum=0.5", "regularizer.strength=0.0"]),
            ],
            1e-10,
        ),
        (  # components that are not seedwise are built and stepped per run, with each run's own values
            ["train.dtype=float64"],
            {"optimizer": "normalized-gd", "regularizer": "linf"},
            [
                (0, ["optimizer.lr=0.5", "regularizer.strength=1e-3"]),
                (0, ["optimizer.lr=0.2", "regularizer.strength=1e-2"]),
                (4, ["optimizer.lr=1.0", "regularizer.strength=1e-3"]),
            ],
            1e-10,
        ),
        (  # float32, as the suites train
            [],
            {},
            [(0, ["optimizer.lr=0.01"]), (0, ["optimizer.lr=0.003", "regularizer.strength=0.3"]), (1, [])],
            1e-4,
        ),
    ],
    ids=["adam-adamw-decay-init-f64", "adamw-betas-f64", "sgd-momentum-l2-minibatch-f64", "per-run-ngd-linf-f64", "f32"],
)
def test_grid_members_match_training_each_alone(extra, names, points, rtol):
    cfgs = grid(points, extra, **names)
    assert len({c.hash for c in cfgs}) == len(cfgs)
    notices = []
    batched = train_group(cfgs, registry=get_registry(), notice=notices.append)
    assert notices == [] and all(r.environment["batched_seeds"] == len(cfgs) for r in batched)
    assert [r.config for r in batched] == cfgs  # each stored as its own run, with its own configuration
    alone = [train_config(cfg, registry=get_registry()) for cfg in cfgs]
    assert_same_runs(batched, alone, rtol)
    losses = [tuple(r.curves["train_loss"]) for r in batched]
    assert len(set(losses)) == len(losses)  # the hyperparameters really differ between members


def test_batch_key_ignores_exactly_the_declared_fields():
    registry = get_registry()
    base = grid([(0, [])])[0]
    same = grid([(3, ["optimizer.lr=0.1", "regularizer.strength=0.5", "model.init_scale=2.0", "task.split_seed=7"])])
    other = grid([(0, ["model.width=16"]), (0, ["task.p=13"]), (0, ["train.steps=10"])])
    assert batch_key(same[0], registry) == batch_key(base, registry)
    assert all(batch_key(c, registry) != batch_key(base, registry) for c in other)
    assert batchable_fields(registry.get("model", "quadratic").Params) == {"init_scale"}
    assert batchable_fields(registry.get("optimizer", "adam").Params) == {"lr", "beta1", "beta2", "eps"}


def test_a_suite_grid_over_lr_and_decay_is_one_group_per_shape(tmp_path):
    registry = get_registry()
    text = """
[suite]
name = "g"
seeds = [0, 1]
[defaults]
task = "modadd-cls"
model = "quadratic"
set.task = { p = 11 }
set.model = { width = 16 }
[[entries]]
name = "lr-wd"
grid.optimizer.lr = [1e-3, 3e-3]
grid.regularizer.strength = [0.1, 1.0]
[[entries]]
name = "width"
grid.model.width = [16, 32]
"""
    path = tmp_path / "g.toml"
    path.write_text(text)
    suite = load_suite(path, registry)
    # width 16 of the second entry is the grid's lr 1e-3, strength 1.0 point (the defaults): 10 unique runs
    assert [len(g) for g in suite.groups()] == [2, 2, 2, 2, 2]  # without the registry: by variant (seeds only)
    assert [len(g) for g in batch_groups(suite.unique_configs(), registry)] == [8, 2]  # the lr x strength grid is one group


@pytest.mark.parametrize("kind", ["optimizer", "regularizer"])
def test_seedwise_components_with_per_member_hyperparameters_step_each_slice_as_alone(kind):
    """A seedwise component's batchable fields, given as tensors [G], act on slice g as row g's value alone."""
    registry = get_registry()
    checked = 0
    for name in registry.names(kind):
        cls = registry.get(kind, name)
        fields = batchable_fields(cls.Params)
        if not cls.supports("seedwise") or not fields:
            continue
        defaults = cls.Params()
        members = [
            cls(cls.Params(**{f: getattr(defaults, f) * factor for f in fields})) for factor in (1.0, 0.5, 0.9)
        ]
        stacked_component = stack_components(members, torch.device("cpu"))
        assert all(isinstance(getattr(stacked_component.params, f), torch.Tensor) for f in fields if getattr(defaults, f))
        g = torch.Generator().manual_seed(0)
        stacked = [torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)]
        slices = [[p[i].clone() for p in stacked] for i in range(3)]

        def step(params, comp, lr):
            if kind == "optimizer":
                state = comp.build(params)
                for _ in range(3):
                    state.step([p.sin() for p in params])
                return
            grads = [p.sin() for p in params]
            if comp.supports("penalty"):
                grads = [gr + e for gr, e in zip(grads, comp.penalty_grads(params))]
            if comp.supports("decoupled"):
                comp.decoupled_update(params, lr)
            for p, gr in zip(params, grads):
                p.sub_(0.1 * gr)

        lrs = [0.1, 0.2, 0.3]  # the optimizer's lr that a decoupled regularizer is given, per member
        step(stacked, stacked_component, torch.tensor(lrs, dtype=torch.float64))
        for i in range(3):
            step(slices[i], members[i], lrs[i])
            for p, q in zip(stacked, slices[i]):
                assert torch.allclose(p[i], q, rtol=0, atol=1e-14), name
        checked += 1
    assert checked >= (4 if kind == "optimizer" else 2)


def test_a_group_is_split_to_stay_under_its_memory_budget():
    registry = get_registry()
    cfgs = grid([(0, [f"optimizer.lr={lr}"]) for lr in (1e-3, 2e-3, 3e-3, 4e-3, 5e-3)])
    need = estimate_bytes(cfgs[0], registry)
    assert need and all(estimate_bytes(c, registry) == need for c in cfgs)
    assert [len(g) for g in batch_groups(cfgs, registry)] == [5]
    assert [len(g) for g in split_by_memory(cfgs, registry, budget=2 * need)] == [2, 2, 1]
    assert [len(g) for g in split_by_memory(cfgs, registry, budget=need // 2)] == [1, 1, 1, 1, 1]  # one run at least


def test_a_grid_of_a_model_without_a_hand_written_step_batches_through_torch_func():
    """relu-mlp batches through torch.func (FunctionalBatch): init scales, learning rates and decays per member."""
    registry = get_registry()
    cfgs = [
        resolve_config(
            registry,
            task="modadd-cls",
            model="relu-mlp",
            optimizer="adamw",
            regularizer="none",
            overrides=parse_assignments(
                ["task.p=7", "model.width=16", "train.steps=60", "train.eval_every=20", "train.dtype=float64", *items]
            ),
            seed=seed,
        )
        for seed, items in [
            (0, ["model.init_scale=1.0", "optimizer.lr=0.01"]),
            (0, ["model.init_scale=0.5", "optimizer.lr=0.003", "optimizer.weight_decay=1.0"]),
            (2, ["model.init_scale=2.0", "optimizer.lr=0.01"]),
        ]
    ]
    notices = []
    batched = train_group(cfgs, registry=registry, notice=notices.append)
    assert notices == [] and all(r.environment["batched_seeds"] == 3 for r in batched)
    assert_same_runs(batched, [train_config(cfg, registry=registry) for cfg in cfgs], 1e-10)


def test_with_early_stop_only_the_seeds_of_one_configuration_share_a_program():
    """A member that has left is stepped until the last one leaves, so runs whose stopping steps can be far apart
    (different hyperparameters) do not join; their seeds still do."""
    registry = get_registry()
    alphas = [(s, [f"model.init_scale={a}"]) for a in (0.5, 2.0) for s in (0, 1)]
    assert [len(g) for g in batch_groups(grid(alphas), registry)] == [4]
    stopping = grid([(s, [*o, "train.early_stop=true"]) for s, o in alphas])
    assert [[c.seed for c in g] for g in batch_groups(stopping, registry)] == [[0, 1], [0, 1]]
    assert batch_key(stopping[0], registry) == batch_key(stopping[1], registry) != batch_key(stopping[2], registry)
