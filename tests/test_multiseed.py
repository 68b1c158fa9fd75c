"""Multi-seed training: a batched program gives each seed what training it alone gives, stored as its own run."""

import json

import pandas as pd
import pytest
import torch
from click.testing import CliRunner
from grokbench_plugins.models.quadratic import QuadraticNetwork
from grokbench_plugins.tasks.modadd import ModAddClassification, ModAddRegression

from grokbench import cli as cli_module
from grokbench.config.run import parse_assignments, parse_seeds, resolve_config
from grokbench.errors import ConfigError
from grokbench.plugin.contracts import Model
from grokbench.plugin.manager import get_registry, load_plugins
from grokbench.storage.store import Store
from grokbench.training.programs import train_config, train_group

from .test_run import exploding_plugin

SMALL = ["task.p=11", "model.width=32", "train.steps=120", "train.eval_every=20"]


def configs(seeds, extra=(), registry=None, **names):
    registry = registry or get_registry()
    overrides = parse_assignments([*SMALL, *extra])
    return [resolve_config(registry, task="modadd-cls", model="quadratic", overrides=overrides, seed=s, **names) for s in seeds]


def assert_same_runs(batched, alone, rtol):
    for b, a in zip(batched, alone):
        assert (b.status, b.steps, b.config.seed) == (a.status, a.steps, a.config.seed)
        assert b.summary["t_memorize"] == a.summary["t_memorize"] and b.summary["t_generalize"] == a.summary["t_generalize"]
        pd.testing.assert_frame_equal(b.curves, a.curves, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize(
    "extra, names, rtol",
    [
        (["train.dtype=float64", "optimizer.lr=0.01"], {}, 1e-10),  # default preset: Adam + AdamW decay, full batch
        (["train.batch_size=16", "train.dtype=float64", "optimizer.lr=0.05", "regularizer.strength=1e-3"], {"optimizer": "sgd", "regularizer": "l2"}, 1e-10),
        (["optimizer.lr=0.01"], {}, 1e-4),  # float32
        (["train.dtype=float64", "optimizer.lr=0.5", "regularizer.strength=1e-3"], {"optimizer": "normalized-gd", "regularizer": "linf"}, 1e-10),
    ],
    ids=["adamw-full-batch-f64", "sgd-l2-minibatch-f64", "adamw-f32", "per-seed-normalized-gd-linf-f64"],
)
def test_batched_seeds_match_training_each_alone(extra, names, rtol):
    cfgs = configs([0, 1, 5], extra, **names)
    notices = []
    batched = train_group(cfgs, registry=get_registry(), notice=notices.append)
    assert notices == [] and all(r.environment["batched_seeds"] == 3 for r in batched)
    alone = [train_config(cfg, registry=get_registry()) for cfg in cfgs]
    assert_same_runs(batched, alone, rtol)
    # the seeds really differ, and training moved them
    assert not batched[0].curves["train_loss"].equals(batched[1].curves["train_loss"])
    assert batched[0].curves["train_loss"].iloc[-1] < batched[0].curves["train_loss"].iloc[0]


def test_members_leave_the_batch_on_their_own():
    """Early stopping: each seed stops at its own first generalizing evaluation, as it would alone."""
    extra = ["task.p=23", "task.train_fraction=0.6", "model.width=128", "optimizer.lr=3e-3", "train.steps=3000", "train.eval_every=50", "train.early_stop=true"]
    cfgs = configs([0, 1], extra)
    batched = train_group(cfgs, registry=get_registry())
    alone = [train_config(cfg, registry=get_registry()) for cfg in cfgs]
    assert_same_runs(batched, alone, 1e-3)
    assert all(r.summary["t_generalize"] == r.steps < 3000 for r in batched)


def test_a_batched_program_shrinks_as_its_members_leave(monkeypatch):
    """Seeds 0, 1 and 2 leave (early stop) at steps 20, 60 and never: the program goes on as seeds 1 and 2 from
    step 40 and as seed 2 alone from step 80 (the evaluation after each left, from the states there, as a resumed
    run does), so no member is stepped after it left, and each seed gets what it gets alone (float64)."""
    import dataclasses

    from grokbench.training import programs as runner

    leaves, programs, real = {0: 20, 1: 60}, [], runner.train_members

    def generalizing(on_eval, at):
        def report(record):
            if at is not None and record["step"] >= at:
                record["test_acc"] = 1.0  # the trainer decides on the record after this callback
            on_eval(record)

        return report

    def spy(**kw):
        programs.append(([m.seed for m in kw["members"]], kw["resume"][0].step if kw["resume"] else 0))
        members = [dataclasses.replace(m, on_eval=generalizing(m.on_eval, leaves.get(m.seed))) for m in kw["members"]]
        return real(**{**kw, "members": members})

    monkeypatch.setattr(runner, "train_members", spy)
    cfgs = configs([0, 1, 2], ["train.dtype=float64", "optimizer.lr=0.01", "train.early_stop=true"])
    batched = train_group(cfgs, registry=get_registry(), notice=lambda _: None)
    assert programs == [([0, 1, 2], 0), ([1, 2], 40), ([2], 80)]
    assert [(r.status, r.steps) for r in batched] == [("completed", 20), ("completed", 60), ("completed", 120)]
    assert all(r.environment["batched_seeds"] == 3 for r in batched)
    walls = [r.environment["group_wall_seconds"] for r in batched]
    assert walls[0] < walls[1] < walls[2] and batched[2].wall_seconds > batched[0].wall_seconds
    alone = [train_config(cfg, registry=get_registry()) for cfg in cfgs]
    assert_same_runs(batched, alone, 1e-10)


def test_a_failing_smaller_program_retrains_only_the_members_still_training(monkeypatch):
    """Seed 0 leaves the program at step 20 (early stop) and is stored as finished; the smaller program of seeds
    1 and 2 then raises. Only seeds 1 and 2 are trained again, one after another; seed 0 keeps its result."""
    import dataclasses

    from grokbench.training import programs as runner

    programs, notices, real = [], [], runner.train_members

    def spy(**kw):
        seeds = [m.seed for m in kw["members"]]
        programs.append((seeds, kw["resume"][0].step if kw["resume"] else 0))
        if seeds == [1, 2]:
            raise RuntimeError("the smaller program broke")

        def generalizing(on_eval):
            def report(record):
                if record["step"] >= 20:
                    record["test_acc"] = 1.0
                on_eval(record)

            return report

        members = [dataclasses.replace(m, on_eval=generalizing(m.on_eval)) if m.seed == 0 else m for m in kw["members"]]
        return real(**{**kw, "members": members})

    monkeypatch.setattr(runner, "train_members", spy)
    cfgs = configs([0, 1, 2], ["train.dtype=float64", "optimizer.lr=0.01", "train.early_stop=true"])
    results = train_group(cfgs, registry=get_registry(), notice=notices.append)
    assert programs == [([0, 1, 2], 0), ([1, 2], 40), ([1], 0), ([2], 0)]
    assert notices == [
        "batched training failed (RuntimeError: the smaller program broke); training 2 runs one after another"
        ", keeping the 1 that had finished before"
    ]
    assert [(r.config.seed, r.status, r.steps) for r in results] == [(0, "completed", 20), (1, "completed", 120), (2, "completed", 120)]
    assert results[0].environment["batched_seeds"] == 3 and "batched_seeds" not in results[1].environment


@pytest.mark.parametrize("parameterization", ["standard", "mean-field"])
@pytest.mark.parametrize(
    "task",
    [ModAddClassification(ModAddClassification.Params(p=7)), ModAddClassification(ModAddClassification.Params(p=7, loss="mse")), ModAddRegression(ModAddRegression.Params(p=5))],
    ids=["cls-ce", "cls-mse", "reg"],
)
def test_stacked_gradients_are_each_members_autograd_gradients(task, parameterization):
    datas = [task.make_data(s).to("cpu", torch.float64) for s in range(3)]
    params = QuadraticNetwork.Params(width=16, init_scale=0.8, parameterization=parameterization)
    models = [QuadraticNetwork(params, datas[0].spec, generator=torch.Generator().manual_seed(s), dtype=torch.float64) for s in range(3)]
    expected = [Model.loss_and_grads(m, d.x_train, d.y_train, task)[1] for m, d in zip(models, datas)]
    stacked = QuadraticNetwork.stack(models)
    x, y = torch.stack([d.x_train for d in datas]), torch.stack([d.y_train for d in datas])
    for _ in range(2):  # the second call with the same batch uses the cached sparse scatter
        _, grads = stacked.loss_and_grads(x, y, task)
        for s in range(3):
            for g, e in zip(grads, expected[s]):
                assert torch.allclose(g[s], e, rtol=1e-9, atol=1e-12)
    # members are views of the stacked parameters
    stacked.parameters()["W"][1].zero_()
    assert models[1].parameters()["W"].abs().max() == 0 and models[0].parameters()["W"].abs().max() > 0


def test_unbatchable_groups_fall_back_to_sequential_runs_with_one_notice():
    # a model without batch support (a subclass that changes the math) runs seed after seed; failures are recorded per run
    registry = load_plugins(extra=[("exploding", exploding_plugin)])
    cfgs = [resolve_config(registry, task="modadd-cls", model="exploding", overrides={"task": {"p": 11}}, seed=s) for s in (0, 1)]
    notices = []
    results = train_group(cfgs, registry=registry, notice=notices.append)
    assert len(notices) == 1 and "model 'exploding' changes the quadratic network's math" in notices[0] and "one after another" in notices[0]
    assert all("batched_seeds" not in r.environment for r in results)
    assert [r.status for r in results] == ["failed", "failed"] and "out of cheese" in results[0].message
    # configurations that differ in more than their seed are not batched
    mixed = configs([0], ["model.width=16"]) + configs([1])
    notices.clear()
    train_group(mixed, registry=get_registry(), notice=notices.append)
    assert "differ in more than their seed" in notices[0]


def test_parse_seeds():
    assert parse_seeds("0-3") == [0, 1, 2, 3]
    assert parse_seeds("0,3,5") == [0, 3, 5]
    assert parse_seeds("7, 0-1") == [7, 0, 1]
    for bad in ("3-1", "a", "1,1", "0-2,2", ""):
        with pytest.raises(ConfigError):
            parse_seeds(bad)


def test_cli_seeds_json_lines_and_store(tmp_path):
    store = tmp_path / "s.db"
    args = ["run", "-t", "modadd-cls", "-m", "quadratic", *sum((["--set", s] for s in SMALL), []), "--store", str(store), "--json", "-q"]
    result = CliRunner().invoke(cli_module.cli, [*args, "--seeds", "0-2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.strip().splitlines()]
    assert [r["seed"] for r in lines] == [0, 1, 2] and all(r["status"] == "completed" for r in lines)
    stored = Store(store).runs()
    assert sorted(stored["id"]) == sorted(r["run_id"] for r in lines)
    assert Store(store).get_run(lines[1]["run_id"])["environment"]["batched_seeds"] == 3
    for bad in (["--seeds", "0-2", "--seed", "1"], ["--seeds", "x"]):
        result = CliRunner().invoke(cli_module.cli, [*args, *bad])
        assert result.exit_code == 2 and result.output.startswith("error: ")
    assert len(Store(store).runs()) == 3


@pytest.mark.parametrize("kind", ["optimizer", "regularizer"])
def test_seedwise_components_step_stacked_tensors_like_each_slice(kind):
    """A component that declares itself seedwise must update stacked parameters exactly as each slice alone."""
    registry = get_registry()
    checked = 0
    for name in registry.names(kind):
        cls = registry.get(kind, name)
        if not cls.supports("seedwise"):
            continue
        component = cls(cls.Params())
        g = torch.Generator().manual_seed(0)
        stacked = [torch.randn(3, 4, 5, generator=g, dtype=torch.float64), torch.randn(3, 6, generator=g, dtype=torch.float64)]
        slices = [[p[i].clone() for p in stacked] for i in range(3)]

        def step(params, comp=component):
            grads = [p.sin() for p in params]
            if kind == "optimizer":
                state = comp.build(params)
                for _ in range(3):
                    state.step([p.sin() for p in params])
            else:
                if comp.supports("penalty"):
                    grads = [gr + e for gr, e in zip(grads, comp.penalty_grads(params))]
                if comp.supports("decoupled"):
                    comp.decoupled_update(params, 0.1)
                for p, gr in zip(params, grads):
                    p.sub_(0.1 * gr)

        step(stacked)
        for i in range(3):
            step(slices[i], cls(cls.Params()))
            for p, q in zip(stacked, slices[i]):
                assert torch.allclose(p[i], q, rtol=0, atol=1e-14), name
        checked += 1
    assert checked >= 3


def test_a_failing_batched_program_retrains_each_seed_alone(monkeypatch):
    from grokbench_plugins.models import quadratic

    def broken(self, x, y, task):
        raise RuntimeError("batched step broke")

    monkeypatch.setattr(quadratic.StackedQuadratic, "loss_and_grads", broken)
    cfgs = configs([0, 1], ["train.dtype=float64", "optimizer.lr=0.01"])
    notices = []
    results = train_group(cfgs, registry=get_registry(), notice=notices.append)
    assert len(notices) == 1 and "batched step broke" in notices[0]
    assert [r.status for r in results] == ["completed", "completed"]
    assert_same_runs(results, [train_config(c, registry=get_registry()) for c in cfgs], 0)


def test_the_relu_mlp_batches_through_torch_func_like_each_seed_alone():
    """relu-mlp's one-hot is vmap-safe (F.one_hot is not: it calls .item()), so its seeds train as one program."""
    registry = get_registry()
    overrides = parse_assignments(["task.n_bits=8", "task.k=2", "task.n_train=64", "task.n_test=64", "model.width=16",
                                   "train.steps=60", "train.eval_every=20", "train.dtype=float64"])
    cfgs = [resolve_config(registry, task="sparse-parity", model="relu-mlp", overrides=overrides, seed=s) for s in (0, 1, 2)]
    notices = []
    batched = train_group(cfgs, registry=get_registry(), notice=notices.append)
    assert notices == [] and all(r.environment["batched_seeds"] == 3 for r in batched)
    assert_same_runs(batched, [train_config(cfg, registry=get_registry()) for cfg in cfgs], 1e-10)


def test_an_interrupt_keeps_the_outcome_of_a_seed_that_had_already_finished(monkeypatch):
    """Ctrl-C in a batched group: a seed that had already left it (here: early stop at step 0) stays completed;
    only the seeds still training are interrupted."""
    from grokbench.plugin.contracts import GroupInterrupted
    from grokbench.training import loop as trainer

    real, calls = trainer.evaluate, []

    def evaluate(step, task, data, model, metrics):
        record = real(step, task, data, model, metrics)
        calls.append(step)
        if len(calls) == 1:  # seed 0's first evaluation: "generalized", so early stop takes it out of the program
            record["test_acc"] = 1.0
        if step >= 40:
            raise KeyboardInterrupt
        return record

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    cfgs = configs([0, 1], ["train.early_stop=true"])
    with pytest.raises(GroupInterrupted) as caught:
        train_group(cfgs, registry=get_registry(), notice=lambda _: None)
    first, second = caught.value.results
    assert (first.status, first.steps, first.config.seed) == ("completed", 0, 0)
    assert (second.status, second.steps, second.config.seed) == ("interrupted", 20, 1)
    assert list(second.curves["step"]) == [0, 20]


def test_a_seed_that_leaves_a_batched_group_is_stored_finished_at_once(tmp_path, monkeypatch):
    """A member that early-stops is written as finished when it leaves, not when the group ends: a group killed
    later (no Ctrl-C, no SIGTERM) cannot turn it back into an interrupted run to train again."""
    from grokbench.recording.live import lifecycles
    from grokbench.training import loop as trainer

    store = Store(tmp_path / "runs.db")
    real, seen = trainer.evaluate, []
    lcs = lifecycles(2, store, get_registry())

    def evaluate(step, task, data, model, metrics):
        record = real(step, task, data, model, metrics)
        if step == 20 and 20 not in seen:  # seed 0's evaluation at step 20: "generalized", it leaves the program
            record["test_acc"] = 1.0
        if step == 60:  # seed 1 trains on: how the store sees both runs now
            seen.append({lc.run_id: store.get_run(lc.run_id)["status"] for lc in lcs})
        seen.append(step)
        return record

    monkeypatch.setattr(trainer, "evaluate", evaluate)
    first, second = train_group(configs([0, 1], ["train.early_stop=true"]), registry=get_registry(), notice=lambda _: None, lifecycles=lcs)
    assert (first.status, first.steps, second.status, second.steps) == ("completed", 20, "completed", 120)
    assert {first.run_id: "completed", second.run_id: "running"} in seen
    stored = store.get_run(first.run_id)
    assert (stored["status"], stored["steps"]) == ("completed", 20)
    assert stored["environment"]["group_wall_seconds"] < store.get_run(second.run_id)["environment"]["group_wall_seconds"]
    assert list(store.curves(first.run_id)["step"]) == [0, 20]
    from grokbench.reporting.text import seeds_line

    group = store.get_run(second.run_id)["environment"]["group_wall_seconds"]  # the longest: the program's
    assert f"{group:.2f} s wall for all 2 seeds together" in seeds_line([first.to_json(), second.to_json()])
