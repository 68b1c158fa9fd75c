"""The classes plugins subclass: tasks, models, regularizers, optimizers, metrics, presets.

Every component is a class with a unique ``name`` (per kind), a ``Params``
pydantic model (unknown keys are rejected) and a docstring whose first line is
its one-line description. grokbench instantiates components itself, with
validated parameters.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator, Mapping, Sequence

import torch
from pydantic import BaseModel, ConfigDict


class Params(BaseModel):
    """Base class of every component's parameters: unknown keys are an error."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Component:
    """Common base of tasks, models, regularizers, optimizers and metrics."""

    kind: ClassVar[str] = "component"
    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params

    def __init__(self, params: Params):
        self.params = params

    @classmethod
    def description(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""


# --------------------------------------------------------------------------- data


@dataclass(frozen=True)
class DataSpec:
    """The shape of a task's inputs and outputs, all a model needs to be built.

    Inputs are integer tensors of shape ``[n, positions]`` with values in
    ``[0, vocab_size)``; a model returns ``[n, output_dim]``.
    """

    positions: int
    vocab_size: int
    output_dim: int


@dataclass
class TaskData:
    """Training and held-out examples of one run, on the run's device."""

    spec: DataSpec
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    extras: dict[str, Any] = field(default_factory=dict)

    def to(self, device: torch.device | str, dtype: torch.dtype) -> "TaskData":
        def move(t: Any) -> Any:
            if not isinstance(t, torch.Tensor):
                return t
            return t.to(device=device, dtype=dtype if t.is_floating_point() else t.dtype)

        return TaskData(
            spec=self.spec,
            x_train=move(self.x_train),
            y_train=move(self.y_train),
            x_test=move(self.x_test),
            y_test=move(self.y_test),
            extras={k: move(v) for k, v in self.extras.items()},
        )


Predict = Callable[[torch.Tensor], torch.Tensor]


# -------------------------------------------------------------------------- kinds


class Task(Component):
    """A learning problem: data, training loss, and evaluation.

    Subclasses implement :meth:`make_data`, :meth:`loss` and :meth:`evaluate`;
    :meth:`loss_and_output_grad` has an autograd default that a task may replace
    with a closed form.
    """

    kind: ClassVar[str] = "task"
    #: whether margin-style metrics (argmax over output classes) make sense
    classification: ClassVar[bool] = False

    def make_data(self, seed: int) -> TaskData:
        """Build the split for this seed, deterministically, on the CPU."""
        raise NotImplementedError

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss (a scalar, averaged over the batch)."""
        raise NotImplementedError

    def loss_and_output_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loss, d loss / d out)``; the default uses autograd."""
        with torch.enable_grad():
            out = out.detach().requires_grad_(True)
            loss = self.loss(out, y)
            (grad,) = torch.autograd.grad(loss, out)
        return loss.detach(), grad

    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        """Evaluate a predictor; must return at least ``train_loss``,
        ``train_acc``, ``test_loss`` and ``test_acc`` (accuracies in [0, 1])."""
        raise NotImplementedError


class ClassificationTask(Task):
    """A task whose labels are class indices: cross-entropy loss and argmax accuracy, ready-made.

    Subclasses implement :meth:`make_data` (``y`` holds class indices, ``output_dim``
    classes); :meth:`evaluate` reports the loss and the argmax accuracy on both splits.
    """

    classification: ClassVar[bool] = True

    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.cross_entropy(out, y)

    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        result = {}
        for split, x, y in (("train", data.x_train, data.y_train), ("test", data.x_test, data.y_test)):
            out = predict(x)
            result[f"{split}_loss"] = self.loss(out, y).item()
            result[f"{split}_acc"] = (out.argmax(1) == y).float().mean().item()
        return result


class Model(Component):
    """A parametric model on integer token inputs.

    Parameters are a dict of leaf tensors built in ``__init__`` from the
    generator it receives (so the same seed gives the same initialization).
    :meth:`apply` is a pure function of the parameters, which lets
    ``torch.func`` differentiate it; :meth:`loss_and_grads` defaults to
    autograd and may be replaced by a hand-written backward pass.
    """

    kind: ClassVar[str] = "model"
    #: degree of positive homogeneity in the parameters (f(c·θ) = c^L f(θ)), if any
    homogeneity: ClassVar[int | None] = None

    def __init__(
        self,
        params: Params,
        spec: DataSpec,
        *,
        generator: torch.Generator,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
    ):
        super().__init__(params)
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = dtype
        self.params_: dict[str, torch.Tensor] = {}

    def parameters(self) -> dict[str, torch.Tensor]:
        """The trainable tensors, by name (updated in place by optimizers)."""
        return self.params_

    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[n, output_dim]`` for inputs ``x`` under ``params``."""
        raise NotImplementedError

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(self.params_, x)

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Loss on a batch and its gradient for each tensor of :meth:`parameters`.

        The gradients may be buffers that the next call overwrites (the trainer
        consumes them before calling again)."""
        names = list(self.params_)
        leaves = [self.params_[k].detach().requires_grad_(True) for k in names]
        with torch.enable_grad():
            loss = task.loss(self.apply(dict(zip(names, leaves)), x), y)
            grads = torch.autograd.grad(loss, leaves)
        return loss.detach(), list(grads)

    # ------------------------------------------------- optional capabilities
    # A model opts into each of these by overriding the method; the defaults say "not supported".

    #: trained in closed form (kernel methods): the trainer calls :meth:`fit` once and
    #: :meth:`set_step` before every evaluation, and never runs the optimizer
    closed_form: ClassVar[bool] = False

    def fit(self, task: Task, data: TaskData, lr: float) -> None:
        """Closed-form models: solve training once (``lr`` is the optimizer's, the step size of the time axis)."""
        raise NotImplementedError

    def set_step(self, step: int) -> None:
        """Closed-form models: make predictions those of training step ``step``."""
        raise NotImplementedError

    def ntk(
        self, params: Mapping[str, torch.Tensor], x1: torch.Tensor, x2: torch.Tensor, output: str = "first"
    ) -> torch.Tensor:
        """Closed-form empirical NTK under ``params`` (see :mod:`grokbench.ntk` for ``output``).

        Optional fast path of :func:`grokbench.ntk.empirical_ntk`; the default is not implemented,
        and the generic ``torch.func`` path is used instead.
        """
        raise NotImplementedError

    def token_weights(self) -> torch.Tensor | None:
        """First-layer weights as ``[positions, vocab_size, hidden]`` (for Fourier metrics), or ``None``."""
        return None

    @classmethod
    def stack(cls, models: Sequence["Model"]) -> "BatchedModel | None":
        """Optional capability: train ``models`` (this class, same parameters and data shape, one per seed)
        as one batched program. Return a :class:`BatchedModel`, or ``None`` (the default) when unsupported:
        grokbench then trains the seeds one after another."""
        return None


class BatchedModel:
    """Several models of one class, one per seed, trained as one tensor program.

    Each parameter is stacked along a leading seed dimension ``[S, ...]``; each
    member model's parameters become views of its slice, so evaluating a
    member (and its metrics) sees the trained values. :meth:`loss_and_grads`
    takes inputs ``[S, n, ...]`` (seed s's batch in row s) and returns, for each
    stacked parameter, the stacked gradients of each member's own loss, exactly
    what each member's ``loss_and_grads`` would return (within float
    rounding). Subclasses implement it; see the ``quadratic`` model.
    """

    def __init__(self, models: Sequence[Model]):
        self.members = list(models)
        names = list(self.members[0].parameters())
        self.params_ = {k: torch.stack([m.parameters()[k] for m in self.members]) for k in names}
        for i, member in enumerate(self.members):
            member.params_ = {k: self.params_[k][i] for k in names}

    def parameters(self) -> dict[str, torch.Tensor]:
        return self.params_

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        raise NotImplementedError


class Regularizer(Component):
    """Explicit or implicit regularization of the parameters.

    ``strength`` (λ) is conventional. :meth:`penalty` is added to the loss and
    :meth:`penalty_grads` to its gradient; :meth:`decoupled_update` runs before
    every optimizer step (AdamW-style decay). The defaults do nothing.
    """

    kind: ClassVar[str] = "regularizer"
    #: True when applying it to parameters stacked along a leading seed dimension is the same as
    #: applying it to each seed's slice alone (element-wise, such as weight decay); batched
    #: multi-seed training then applies it once, instead of once per seed
    seedwise: ClassVar[bool] = False

    def penalty(self, params: list[torch.Tensor]) -> torch.Tensor | None:
        """The penalty added to the loss (a scalar tensor), or ``None`` for none."""
        return None

    def penalty_grads(self, params: list[torch.Tensor]) -> list[torch.Tensor] | None:
        """(Sub)gradient of :meth:`penalty`; the default uses autograd."""
        leaves = [p.detach().requires_grad_(True) for p in params]
        with torch.enable_grad():
            value = self.penalty(leaves)
            if value is None:
                return None
            return list(torch.autograd.grad(value, leaves))

    def decoupled_update(self, params: list[torch.Tensor], lr: float) -> None:
        """Update ``params`` in place before each optimizer step (``lr`` is the optimizer's); default: nothing."""
        return None


class Optimizer(Component):
    """Builds an object with ``step(grads)`` that updates parameters in place.

    Parameters must include ``lr`` (> 0). :meth:`build` returns a
    :class:`torch.optim.Optimizer` or anything with ``step(grads)``.
    """

    kind: ClassVar[str] = "optimizer"
    #: True when its update of parameters stacked along a leading seed dimension equals updating
    #: each seed's slice alone (element-wise updates such as SGD or Adam); batched multi-seed
    #: training then builds one state for all seeds, instead of one per seed
    seedwise: ClassVar[bool] = False

    def build(self, params: list[torch.Tensor]) -> "OptimizerState":
        """Return the state that updates ``params`` (the model's tensors, in order) from their gradients."""
        raise NotImplementedError


class OptimizerState:
    """What :meth:`Optimizer.build` returns: in-place updates from gradients."""

    def step(self, grads: list[torch.Tensor]) -> None:
        """Update the parameters in place from ``grads`` (same order and shapes; the trainer may reuse them)."""
        raise NotImplementedError

    def state_tensors(self) -> list[torch.Tensor] | None:
        """Every value the next steps depend on besides the parameters ([] when none); None: not known.

        Lets the trainer tell an exact cycle of the run's state (``train.stop_on_stall``); None never stalls.
        """
        return None


class TorchOptimizerState(OptimizerState):
    """Adapts a ``torch.optim.Optimizer`` to the ``step(grads)`` interface."""

    def __init__(self, params: list[torch.Tensor], make: Callable[[list[torch.Tensor]], torch.optim.Optimizer]):
        self.params = params
        self.torch_optimizer = make(params)

    def step(self, grads: list[torch.Tensor]) -> None:
        for p, g in zip(self.params, grads):
            p.grad = g
        self.torch_optimizer.step()
        for p in self.params:
            p.grad = None

    def state_tensors(self) -> list[torch.Tensor] | None:
        out: list[torch.Tensor] = []
        for p in self.params:
            for _, value in sorted(self.torch_optimizer.state.get(p, {}).items()):
                if isinstance(value, torch.Tensor):
                    out.append(value)
                elif value is not None:
                    out.append(torch.tensor(float(value)))
        return out


@dataclass
class EvalContext:
    """What a metric sees at an evaluation step."""

    step: int
    model: Model
    task: Task
    data: TaskData
    predict: Predict
    evaluation: dict[str, float]


class Metric(Component):
    """A quantity recorded at every evaluation step as one or more curves."""

    kind: ClassVar[str] = "metric"
    #: computed in every run unless the configuration removes it
    default: ClassVar[bool] = False
    #: curve names this metric records (for listings and summaries)
    outputs: ClassVar[tuple[str, ...]] = ()

    def check(self, task: Task, model: Model) -> None:
        """Raise :class:`grokbench.errors.ConfigError` if unsupported for this task/model."""

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        raise NotImplementedError

    #: summary keys :meth:`summarize` returns; every run's summary holds them (``None`` when not selected)
    summary_keys: ClassVar[tuple[str, ...]] = ()

    def summarize(self, curves: list[dict[str, float]], summary: Mapping[str, Any]) -> dict[str, Any]:
        """Summary values from the run's curves, given the core summary (``t_memorize``, ...)."""
        return {}


class Executor(Component):
    """Trains groups of runs somewhere and hands the results back to the driver.

    Lifecycle, driven by :func:`grokbench.executors.run_suite`: ``start()``
    (acquire resources; raise :class:`grokbench.errors.ConfigError` for bad
    input such as an unreachable cluster, before anything is written), then
    ``map(work, groups)``, then ``close()`` (always called after a successful
    ``start``).

    ``work`` is a picklable module-level function that takes a list of
    :class:`grokbench.config.RunConfig` and returns a list of
    :class:`grokbench.runner.RunResult`, one per config; call it exactly as
    given, on one group per call, so that a model can batch the seeds of a
    group. An executor never writes to the results store.
    """

    kind: ClassVar[str] = "executor"
    #: True when ``work`` runs in the driver's own process (it may then use the driver's plugins directly)
    in_process: ClassVar[bool] = False

    def start(self) -> None:
        """Acquire resources: start a pool, connect to a cluster."""

    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        """Call ``work(groups[i])`` for every ``i`` and yield ``(i, results)`` as each finishes, in any order.

        When a group cannot be run at all (a worker crashed, a task was lost),
        yield ``(i, exception)`` instead: the driver records its runs as failed
        and the suite goes on.
        """
        raise NotImplementedError

    def close(self) -> None:
        """Release what :meth:`start` acquired."""


@dataclass(frozen=True)
class Preset:
    """Named configuration values for a task (and model), such as the paper's settings.

    ``settings`` is a nested mapping shaped like a run configuration, for
    example ``{"task": {"p": 97}, "optimizer": {"name": "adam", "lr": 1e-3}}``.
    ``task`` or ``model`` may be ``None`` to apply to any.
    """

    name: str
    task: str | None
    model: str | None
    description: str
    settings: Mapping[str, Any]

    kind: ClassVar[str] = "preset"
