"""Pytest fixtures and helpers for plugin authors, loaded by pytest through the ``pytest11`` entry point
(their use: docs/plugins.md, *Testing a plugin*).

Fixtures: ``grokbench_extra_plugins`` and ``grokbench_distributions`` (what loads besides the first-party plugins),
``grokbench_registry``, ``tiny_task`` / ``tiny_data`` (:class:`TinyModAdd`), ``grokbench_run`` (a few steps through
the real runner, nothing stored). Helpers: :func:`check_model_contract`, :func:`check_task_contract`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import torch
from pydantic import Field

from grokbench.plugin.contracts import ClassificationTask, DataSpec, Model, Params, Task, TaskData
from grokbench.plugin.manager import hookimpl, load_plugins

TINY_TASK = "tiny-modadd"


class TinyModAdd(ClassificationTask):
    """(a, b) -> (a + b) mod p for a tiny p, cross-entropy: a task for plugin tests (not registered by default)."""

    name = TINY_TASK

    class Params(Params):
        p: int = Field(7, ge=2, le=64, description="the modulus")
        train_fraction: float = Field(0.6, gt=0, lt=1, description="fraction of the p² pairs used for training")

    def make_data(self, seed: int) -> TaskData:
        p = self.params.p
        a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
        x = torch.stack([a.reshape(-1), b.reshape(-1)], dim=1)
        y = (x[:, 0] + x[:, 1]) % p
        perm = torch.randperm(p * p, generator=torch.Generator().manual_seed(seed))
        n = max(1, min(p * p - 1, round(self.params.train_fraction * p * p)))
        train, test = perm[:n], perm[n:]
        return TaskData(DataSpec(positions=2, vocab_size=p, output_dim=p), x[train], y[train], x[test], y[test])


class _TestingPlugin:
    """Registers the tiny task (only inside these fixtures)."""

    @hookimpl
    def register_tasks(self, register):
        register(TinyModAdd)


def check_model_contract(model_cls: type[Model], params: Mapping[str, Any] | None = None, seed: int = 0) -> Model:
    """Build ``model_cls`` on the tiny task and check what grokbench relies on; return the model.

    Checks: ``parameters()`` is a non-empty dict of floating-point tensors;
    ``apply`` maps ``[n, 2]`` tokens to ``[n, 7]``; ``loss_and_grads`` returns a
    finite scalar and one finite gradient per parameter, of its shape; the same
    seed gives the same initialization.
    """
    task = TinyModAdd(TinyModAdd.Params())
    data = task.make_data(seed)

    def build() -> Model:
        return model_cls(
            model_cls.Params.model_validate(dict(params or {})),
            data.spec,
            generator=torch.Generator().manual_seed(seed),
        )

    model = build()
    named = model.parameters()
    assert isinstance(named, dict) and named, "parameters() must be a non-empty dict"
    assert all(isinstance(t, torch.Tensor) and t.is_floating_point() for t in named.values()), (
        "parameters must be float tensors"
    )
    out = model(data.x_train)
    assert tuple(out.shape) == (len(data.x_train), data.spec.output_dim), f"apply returned {tuple(out.shape)}"
    loss, grads = model.loss_and_grads(data.x_train, data.y_train, task)
    assert loss.ndim == 0 and torch.isfinite(loss), f"loss must be a finite scalar, got {loss}"
    assert len(grads) == len(named), "one gradient per parameter"
    for (key, t), g in zip(named.items(), grads):
        assert g.shape == t.shape, f"gradient of {key} has shape {tuple(g.shape)}, expected {tuple(t.shape)}"
        assert torch.isfinite(g).all(), f"gradient of {key} is not finite"
    again = build().parameters()
    assert all(torch.equal(named[k], again[k]) for k in named), "the same seed must give the same initialization"
    return model


def check_task_contract(task_cls: type[Task], params: Mapping[str, Any] | None = None, seed: int = 0) -> TaskData:
    """Build ``task_cls`` and check what grokbench relies on; return its data for ``seed``.

    Checks: ``make_data`` is deterministic in the seed and returns integer
    inputs ``[n, positions]`` within the vocabulary and non-empty splits;
    ``loss`` is a finite scalar; ``evaluate`` returns ``train_loss``,
    ``train_acc``, ``test_loss`` and ``test_acc`` with accuracies in [0, 1].
    """
    task = task_cls(task_cls.Params.model_validate(dict(params or {})))
    data, again = task.make_data(seed), task.make_data(seed)
    spec = data.spec
    for split in ("x_train", "y_train", "x_test", "y_test"):
        assert torch.equal(getattr(data, split), getattr(again, split)), (
            f"make_data({seed}) is not deterministic ({split})"
        )
    for x in (data.x_train, data.x_test):
        assert not x.is_floating_point() and x.ndim == 2 and x.shape[1] == spec.positions, (
            f"inputs must be integer [n, {spec.positions}]"
        )
        assert len(x) and int(x.min()) >= 0 and int(x.max()) < spec.vocab_size, (
            f"tokens must lie in [0, {spec.vocab_size})"
        )
    out = torch.randn(len(data.x_train), spec.output_dim, generator=torch.Generator().manual_seed(seed))
    loss = task.loss(out, data.y_train)
    assert loss.ndim == 0 and torch.isfinite(loss), f"loss must be a finite scalar, got {loss}"

    def predict(x: torch.Tensor) -> torch.Tensor:
        return torch.randn(len(x), spec.output_dim, generator=torch.Generator().manual_seed(len(x)))

    result = task.evaluate(predict, data)
    missing = {"train_loss", "train_acc", "test_loss", "test_acc"} - set(result)
    assert not missing, f"evaluate must return {sorted(missing)}"
    for key in ("train_acc", "test_acc"):
        assert 0.0 <= result[key] <= 1.0, f"{key} = {result[key]} is not in [0, 1]"
    return data


@pytest.fixture
def grokbench_extra_plugins() -> list[tuple[str, Any]]:
    """Override in your conftest.py: ``[(entry_point_name, plugin_object), ...]``."""
    return []


@pytest.fixture
def grokbench_distributions() -> list[str]:
    """Override in your conftest.py: installed distributions whose entry points load besides grokbench's own."""
    return []


@pytest.fixture
def grokbench_registry(grokbench_extra_plugins, grokbench_distributions):
    """grokbench's first-party plugins, your distributions and extra plugins and the tiny task, in a fresh registry."""
    return load_plugins(
        extra=[*grokbench_extra_plugins, ("grokbench-testing", _TestingPlugin())], distributions=grokbench_distributions
    )


@pytest.fixture
def tiny_task() -> TinyModAdd:
    return TinyModAdd(TinyModAdd.Params())


@pytest.fixture
def tiny_data(tiny_task) -> TaskData:
    return tiny_task.make_data(0)


@pytest.fixture
def grokbench_run(grokbench_registry):
    """``grokbench_run(model=..., task="tiny-modadd", steps=50, eval_every=None, **kwargs)`` -> RunResult (not stored)."""
    from grokbench.api import run

    def _run(model: str, task: str = TINY_TASK, steps: int = 50, eval_every: int | None = None, **kwargs: Any):
        overrides = dict(kwargs.pop("overrides", None) or {})
        train = {"steps": steps, "eval_every": eval_every or max(1, steps // 5), **overrides.pop("train", {})}
        return run(
            task, model, overrides={**overrides, "train": train}, registry=grokbench_registry, store=False, **kwargs
        )

    return _run
