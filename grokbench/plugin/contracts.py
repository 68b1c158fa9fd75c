"""The classes plugins subclass: tasks, models, regularizers, optimizers, metrics, presets.

Every component is a class with a unique ``name`` (per kind), a ``Params``
pydantic model (unknown keys are rejected) and a docstring whose first line is
its one-line description. grokbench instantiates components itself, with
validated parameters.
"""

from __future__ import annotations

import abc
import inspect
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, NamedTuple

import torch
from pydantic import BaseModel

from grokbench.strict import StrictModel


class Params(StrictModel):
    """Base class of every component's parameters: unknown keys are an error."""


#: ``json_schema_extra`` of a ``Params`` field that may differ between the runs of one batched program
#: (``Field(..., json_schema_extra=BATCHABLE)``). What declaring it promises depends on the kind:
#:
#: * a task, model or metric field: it changes only what each run builds for itself (its data split, its
#:   initial parameters, its metric), never a shape nor the training step, since each run of a batched
#:   program builds its own task data, model and metrics and the step is the first run's;
#: * an optimizer or regularizer field: in a batched program whose runs differ in it, a ``seedwise``
#:   component is built once with the field set to a float64 tensor ``[G]`` of the runs' values (a field on
#:   which they agree stays a plain number) and applies row g's value to slice g of every stacked tensor
#:   (see :func:`per_member`); a component that is not ``seedwise`` is built per run with its own values.
BATCHABLE: dict[str, Any] = {"batchable": True}


def batchable_fields(params: type[BaseModel]) -> frozenset[str]:
    """The fields of a ``Params`` model declared :data:`BATCHABLE`."""
    return frozenset(
        name
        for name, info in params.model_fields.items()
        if isinstance(info.json_schema_extra, dict) and info.json_schema_extra.get("batchable") is True
    )


def per_member(value: float | torch.Tensor, like: torch.Tensor) -> float | torch.Tensor:
    """A hyperparameter as it applies to ``like``, a tensor stacked along a leading member dimension ``[G, ...]``:
    a number as it is; a tensor ``[G]`` of the members' values (see :data:`BATCHABLE`) as ``[G, 1, ...]`` in
    ``like``'s dtype, so that it broadcasts row by row."""
    if not isinstance(value, torch.Tensor):
        return value
    return value.to(like.dtype).view(-1, *([1] * (like.dim() - 1)))


class Capability(NamedTuple):
    """An optional capability a component class may declare in its ``capabilities``."""

    #: what declaring it promises (rendered in docs/plugins.md)
    doc: str
    #: members the declaring class must define (override); they are also the capability's own members
    requires: tuple[str, ...] = ()
    #: members the declaring class may override; overriding them without declaring it is refused
    optional: tuple[str, ...] = ()


class Component(abc.ABC):
    """Common base of tasks, models, regularizers, optimizers, metrics and executors.

    Required methods are abstract: registration refuses a class that leaves one
    unimplemented. Optional behaviour is declared in :attr:`capabilities`, from
    the kind's :attr:`CAPABILITIES`; registration (:meth:`check_class`) checks
    the declaration against what the class defines.
    """

    name: ClassVar[str]
    Params: ClassVar[type[Params]] = Params
    #: the optional capabilities this class declares (names from its kind's ``CAPABILITIES``)
    capabilities: ClassVar[frozenset[str]] = frozenset()
    #: the capabilities this kind knows: name -> :class:`Capability` (set by each kind's base class)
    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {}

    def __init__(self, params: BaseModel):
        #: the validated parameters, an instance of this class's ``Params`` (typed Any so subclasses read their fields)
        self.params: Any = params

    @classmethod
    def description(cls) -> str:
        doc = inspect.getdoc(cls) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    @classmethod
    def supports(cls, capability: str) -> bool:
        """Whether this class declares ``capability`` (one of its kind's ``CAPABILITIES``)."""
        return capability in cls.capabilities

    @classmethod
    def check_class(cls) -> None:
        """Registration's check of the class; raise ``TypeError`` with a one-line reason.

        Checks the ``name``, the ``Params`` model, that no required (abstract) method is left
        unimplemented, and the declared ``capabilities``. A kind's base class (and a plugin's
        class) may extend it; call ``super().check_class()`` first.
        """
        from pydantic import BaseModel

        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__name__} has no 'name'")
        if ":" in name:
            raise TypeError(f"{cls.__name__}.name '{name}' contains ':' (reserved for plugin:name)")
        if not (isinstance(cls.Params, type) and issubclass(cls.Params, BaseModel)):
            raise TypeError(f"{cls.__name__}.Params must be a pydantic model")
        if cls.Params.model_config.get("extra") != "forbid":
            raise TypeError(
                f"{cls.__name__}.Params must reject unknown keys (extra='forbid'; subclass grokbench.plugin.contracts.Params)"
            )
        missing = sorted(getattr(cls, "__abstractmethods__", ()))
        if missing:
            raise TypeError(f"{cls.__name__} does not implement the required method(s) {', '.join(missing)}")
        _check_capabilities(cls)


def _kind_base(cls: type[Component]) -> type[Component]:
    """The class that defines ``cls``'s ``CAPABILITIES`` (its kind's base class)."""
    return next(c for c in cls.__mro__ if "CAPABILITIES" in vars(c))


def _static(cls: type, member: str) -> Any:
    """``member`` as stored in the class dictionary that defines it (so classmethods compare by identity)."""
    return next((vars(c)[member] for c in cls.__mro__ if member in vars(c)), None)


def _defines(cls: type, base: type, member: str) -> bool:
    return _static(cls, member) is not _static(base, member)


def _check_capabilities(cls: type[Component]) -> None:
    known = cls.CAPABILITIES
    if not isinstance(cls.capabilities, frozenset):
        raise TypeError(f"{cls.__name__}.capabilities must be a frozenset of names")
    unknown = sorted(cls.capabilities - set(known))
    if unknown:
        raise TypeError(
            f"{cls.__name__} declares unknown capability '{unknown[0]}' (known: {', '.join(sorted(known)) or 'none'})"
        )
    base = _kind_base(cls)
    for cap, spec in known.items():
        if cap in cls.capabilities:
            missing = [m for m in spec.requires if not _defines(cls, base, m)]
            if missing:
                raise TypeError(f"{cls.__name__} declares capability '{cap}' but does not define {', '.join(missing)}")
        else:
            extra = [m for m in (*spec.requires, *spec.optional) if _defines(cls, base, m)]
            if extra:
                raise TypeError(f"{cls.__name__} defines {', '.join(extra)} without declaring capability '{cap}'")


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

    def to(self, device: torch.device | str, dtype: torch.dtype) -> TaskData:
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


class Task(Component):
    """A learning problem: data, training loss, and evaluation.

    Subclasses implement :meth:`make_data`, :meth:`loss` and :meth:`evaluate`;
    :meth:`loss_and_output_grad` has an autograd default that a task may replace
    with a closed form.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "classification": Capability(
            "labels are class indices and outputs are class scores (argmax is the prediction)"
        ),
        "memory-estimate": Capability(
            "`data_size(params)` gives the data's DataSpec and number of model inputs without building it "
            "(runs too large for memory are refused before training)",
            requires=("data_size",),
        ),
    }

    @classmethod
    def data_size(cls, params: Any) -> tuple[DataSpec, int]:
        """Capability ``memory-estimate``: ``(spec, n_inputs)`` of the data these parameters make (train and test)."""
        raise NotImplementedError(f"task '{cls.name}' does not declare capability 'memory-estimate'")

    @abc.abstractmethod
    def make_data(self, seed: int) -> TaskData:
        """Build the split for this seed, deterministically, on the CPU."""

    @abc.abstractmethod
    def loss(self, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Training loss (a scalar, averaged over the batch)."""

    def loss_and_output_grad(self, out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(loss, d loss / d out)``; the default uses autograd."""
        with torch.enable_grad():
            out = out.detach().requires_grad_(True)
            loss = self.loss(out, y)
            (grad,) = torch.autograd.grad(loss, out)
        return loss.detach(), grad

    @abc.abstractmethod
    def evaluate(self, predict: Predict, data: TaskData) -> dict[str, float]:
        """Evaluate a predictor; must return at least ``train_loss``,
        ``train_acc``, ``test_loss`` and ``test_acc`` (accuracies in [0, 1])."""


class ClassificationTask(Task):
    """A task whose labels are class indices: cross-entropy loss and argmax accuracy, ready-made.

    Subclasses implement :meth:`make_data` (``y`` holds class indices, ``output_dim``
    classes); :meth:`evaluate` reports the loss and the argmax accuracy on both splits.
    """

    capabilities: ClassVar[frozenset[str]] = frozenset({"classification"})

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

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "closed-form": Capability(
            "trained in closed form: the trainer calls `fit` once and `set_step` before every evaluation; "
            "a run of it takes no optimizer and no regularizer",
            requires=("fit", "set_step"),
        ),
        "ntk": Capability(
            "a closed-form empirical NTK `ntk` (fast path of `grokbench.training.ntk.empirical_ntk`)", requires=("ntk",)
        ),
        "ntk-limit": Capability(
            "the expected eNTK of the first output over initializations, `expected_ntk` (its infinite-width limit)",
            requires=("expected_ntk",),
        ),
        "token-weights": Capability(
            "first-layer weights per position and token, `token_weights` (Fourier metrics)", requires=("token_weights",)
        ),
        "homogeneous": Capability(
            "positively homogeneous in its parameters, f(c·θ) = c^L f(θ) with L = `homogeneity`",
            requires=("homogeneity",),
        ),
        "batched-step": Capability(
            "a hand-written multi-seed training step: `stack` returns a `BatchedModel` (otherwise seeds batch through torch.func)",
            requires=("stack",),
        ),
        "memory-estimate": Capability(
            "`size(params, spec)` gives (trainable parameters, floats of activations per input) without building it",
            requires=("size",),
        ),
    }
    #: degree L of positive homogeneity (capability ``homogeneous``)
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

    @abc.abstractmethod
    def apply(self, params: Mapping[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """Outputs ``[n, output_dim]`` for inputs ``x`` under ``params``, a pure function of ``params``
        (``torch.func`` differentiates and vmaps it: seeds batch through it)."""

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.apply(self.params_, x)

    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Loss on a batch and its gradient for each tensor of :meth:`parameters`.

        The default is autograd through :meth:`apply` and the task's loss; a replacement must
        compute the same gradients. They may be buffers that the next call overwrites (the
        trainer consumes them before calling again)."""
        names = list(self.params_)
        leaves = [self.params_[k].detach().requires_grad_(True) for k in names]
        with torch.enable_grad():
            loss = task.loss(self.apply(dict(zip(names, leaves)), x), y)
            grads = torch.autograd.grad(loss, leaves)
        return loss.detach(), list(grads)

    # ------------------------------------------------- optional capabilities (see CAPABILITIES)

    def fit(self, task: Task, data: TaskData) -> None:
        """Capability ``closed-form``: solve training once."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'closed-form'")

    def set_step(self, step: int) -> None:
        """Capability ``closed-form``: make predictions those of training step ``step``."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'closed-form'")

    def ntk(
        self, params: Mapping[str, torch.Tensor], x1: torch.Tensor, x2: torch.Tensor, output: str = "first"
    ) -> torch.Tensor:
        """Capability ``ntk``: the empirical NTK under ``params`` in closed form (see :mod:`grokbench.training.ntk` for ``output``).

        Without it, :func:`grokbench.training.ntk.empirical_ntk` uses the generic ``torch.func`` path."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'ntk'")

    def expected_ntk(self, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
        """Capability ``ntk-limit``: E over initializations (this model's parameters and init) of the first output's
        eNTK Θ₀₀(x1, x2), float64 ``[n1, n2]``: the kernel of its infinite-width limit at this width."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'ntk-limit'")

    @classmethod
    def size(cls, params: Any, spec: DataSpec) -> tuple[int, int]:
        """Capability ``memory-estimate``: ``(n_parameters, floats_per_input)`` of a forward and backward pass."""
        raise NotImplementedError(f"model '{cls.name}' does not declare capability 'memory-estimate'")

    def token_weights(self) -> torch.Tensor:
        """Capability ``token-weights``: first-layer weights as ``[positions, vocab_size, hidden]``."""
        raise NotImplementedError(f"model '{self.name}' does not declare capability 'token-weights'")

    @classmethod
    def stack(cls, models: Sequence[Model]) -> BatchedModel:
        """Capability ``batched-step``: train ``models`` (this class, same parameters and data shape, one per
        seed) as one hand-written batched program."""
        raise NotImplementedError(f"model '{cls.name}' does not declare capability 'batched-step'")


class BatchedModel(abc.ABC):
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

    @abc.abstractmethod
    def loss_and_grads(self, x: torch.Tensor, y: torch.Tensor, task: Task) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Each member's loss (their mean) and the stacked gradients ``[S, ...]`` of each parameter."""


class Regularizer(Component):
    """Explicit or implicit regularization of the parameters.

    ``strength`` (λ) is conventional. :meth:`penalty` is added to the loss and
    :meth:`penalty_grads` to its gradient; :meth:`decoupled_update` runs before
    every optimizer step (AdamW-style decay). The defaults do nothing.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "seedwise": Capability(
            "applying it to parameters stacked along a leading seed dimension equals applying it to each seed's "
            "slice (element-wise, such as weight decay): batched multi-seed training applies it once"
        ),
        "penalty": Capability(
            "adds `penalty(params)` to the loss and its (sub)gradient `penalty_grads` (default: autograd) to the gradients",
            requires=("penalty",),
            optional=("penalty_grads",),
        ),
        "decoupled": Capability(
            "updates the parameters in place before every optimizer step, `decoupled_update`",
            requires=("decoupled_update",),
        ),
    }

    def penalty(self, params: list[torch.Tensor]) -> torch.Tensor:
        """Capability ``penalty``: the penalty added to the loss (a scalar tensor)."""
        raise NotImplementedError(f"regularizer '{self.name}' does not declare capability 'penalty'")

    def penalty_grads(self, params: list[torch.Tensor]) -> list[torch.Tensor]:
        """Capability ``penalty``: (sub)gradient of :meth:`penalty`, one per parameter; the default uses
        autograd, with zeros for a parameter the penalty does not depend on."""
        leaves = [p.detach().requires_grad_(True) for p in params]
        with torch.enable_grad():
            grads = torch.autograd.grad(self.penalty(leaves), leaves, allow_unused=True)
        return [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]

    def decoupled_update(self, params: list[torch.Tensor], lr: float | torch.Tensor) -> None:
        """Capability ``decoupled``: update ``params`` in place before each optimizer step (``lr`` is the optimizer's:
        a tensor ``[G]`` in a batched program whose members differ in it, see :data:`BATCHABLE`)."""
        raise NotImplementedError(f"regularizer '{self.name}' does not declare capability 'decoupled'")


class Optimizer(Component):
    """Builds an object with ``step(grads)`` that updates parameters in place.

    Parameters must include ``lr`` (> 0). :meth:`build` returns a
    :class:`torch.optim.Optimizer` or anything with ``step(grads)``.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "seedwise": Capability(
            "its update of parameters stacked along a leading seed dimension equals updating each seed's slice "
            "alone (element-wise, such as SGD or Adam): batched multi-seed training builds one state for all seeds"
        ),
    }

    @abc.abstractmethod
    def build(self, params: list[torch.Tensor]) -> OptimizerState:
        """Return the state that updates ``params`` (the model's tensors, in order) from their gradients."""


class OptimizerState(abc.ABC):
    """What :meth:`Optimizer.build` returns: in-place updates from gradients."""

    @abc.abstractmethod
    def step(self, grads: list[torch.Tensor]) -> None:
        """Update the parameters in place from ``grads`` (same order and shapes; the trainer may reuse them)."""

    def state_dict(self) -> dict[str, Any]:
        """The state a checkpoint saves (tensors, numbers, strings, nested dicts and lists).

        A stateful optimizer overrides this and :meth:`load_state_dict`, or a resumed run is not exact; a
        stateless one overrides it to return ``{}``, which also lets ``train.stop_on_stall`` see that the
        parameters are the whole state (a state that keeps this default is never declared stalled)."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:  # noqa: B027 (optional: stateless states keep it)
        """Restore what :meth:`state_dict` returned."""


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

    def state_dict(self) -> dict[str, Any]:
        return self.torch_optimizer.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.torch_optimizer.load_state_dict(state)


@dataclass
class EvalContext:
    """What a metric sees at an evaluation step."""

    step: int
    model: Model
    task: Task
    data: TaskData
    predict: Predict
    evaluation: dict[str, float]


@dataclass(frozen=True)
class SummaryColumn:
    """A leaderboard column a metric contributes: the median over seeds of one of its summary values.

    ``key`` is one of the metric's ``summary_keys`` or ``final_<output>`` (the last value of one of its
    curves); ``direction`` says which way is better (``"max"``, ``"min"``, or ``None`` for neither);
    ``format`` is a Python format spec for tables (``".3g"``).
    """

    key: str
    label: str
    direction: Literal["max", "min"] | None = None
    format: str = ".3g"


@dataclass(frozen=True)
class CurvePanel:
    """A learning-curve panel a metric contributes, drawn beside accuracy and loss: ``curves`` (among its
    ``outputs``) against step, median over seeds, with ``label`` as the y axis (log scale with ``log_y``)."""

    curves: tuple[str, ...]
    label: str
    log_y: bool = False


class Metric(Component):
    """A quantity recorded at every evaluation step as one or more curves.

    What it contributes to reports is declared, and checked when it registers (:meth:`check_class`):
    ``report_columns`` (:class:`SummaryColumn`) and ``report_panels`` (:class:`CurvePanel`).

    A metric whose values depend on what it kept from earlier evaluations (a reference kernel from step 0)
    declares capability ``stateful``: checkpoints save its :meth:`state_dict` and a resumed run restores it.
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "stateful": Capability(
            "it keeps state between evaluations (a reference from step 0): checkpoints save state_dict() and "
            "``grokbench resume`` restores it with load_state_dict(), so a resumed run records the same curves",
            requires=("state_dict", "load_state_dict"),
        ),
    }

    #: computed in every run unless the configuration removes it
    default: ClassVar[bool] = False
    #: curve names this metric records (for listings and summaries)
    outputs: ClassVar[tuple[str, ...]] = ()

    def check(self, task: Task, model: Model) -> None:
        """Raise :class:`grokbench.errors.ConfigError` if unsupported for this task/model."""

    @abc.abstractmethod
    def compute(self, ctx: EvalContext) -> dict[str, float]:
        """The metric's values at this evaluation step, by curve name."""

    def state_dict(self) -> dict[str, Any]:
        """What it kept from earlier evaluations (tensors, numbers, strings, nested dicts and lists; capability ``stateful``)."""
        raise NotImplementedError(f"metric '{self.name}' does not declare capability 'stateful'")

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take back what :meth:`state_dict` returned, before the first evaluation of a resumed run (capability ``stateful``)."""
        raise NotImplementedError(f"metric '{self.name}' does not declare capability 'stateful'")

    #: summary keys :meth:`summarize` returns; every run's summary holds them (``None`` when not selected)
    summary_keys: ClassVar[tuple[str, ...]] = ()

    def summarize(self, curves: list[dict[str, float]], summary: Mapping[str, Any]) -> dict[str, Any]:
        """Summary values from the run's curves, given the core summary (``t_memorize``, ...)."""
        return {}

    #: leaderboard columns (md, html, csv, baseline.json) and the end-of-run summary rows
    report_columns: ClassVar[tuple[SummaryColumn, ...]] = ()
    #: learning-curve panels (plots and the HTML page)
    report_panels: ClassVar[tuple[CurvePanel, ...]] = ()

    @classmethod
    def check_class(cls) -> None:
        """Raise TypeError (one line) when the report declarations do not fit the metric's outputs and summary keys."""
        super().check_class()
        summaries = set(cls.summary_keys) | {f"final_{o}" for o in cls.outputs}
        for column in cls.report_columns:
            if not isinstance(column, SummaryColumn):
                raise TypeError(
                    f"metric '{cls.name}': report_columns holds {column!r}, not a grokbench.plugin.contracts.SummaryColumn"
                )
            if column.key not in summaries:
                raise TypeError(
                    f"metric '{cls.name}': report column '{column.key}' is none of its summary_keys or final_<output> ({', '.join(sorted(summaries)) or 'none'})"
                )
            if column.direction not in ("max", "min", None):
                raise TypeError(
                    f"metric '{cls.name}': report column '{column.key}' has direction {column.direction!r} (use 'max', 'min' or None)"
                )
            try:
                format(1.0, column.format)
            except ValueError:
                raise TypeError(
                    f"metric '{cls.name}': report column '{column.key}' has an invalid format {column.format!r}"
                ) from None
        for panel in cls.report_panels:
            if not isinstance(panel, CurvePanel):
                raise TypeError(
                    f"metric '{cls.name}': report_panels holds {panel!r}, not a grokbench.plugin.contracts.CurvePanel"
                )
            if isinstance(panel.curves, str) or not panel.curves:
                raise TypeError(
                    f"metric '{cls.name}': report panel '{panel.label}' names no curve (give a tuple of its outputs)"
                )
            unknown = [c for c in panel.curves if c not in cls.outputs]
            if unknown:
                raise TypeError(
                    f"metric '{cls.name}': report panel '{panel.label}' names curve '{unknown[0]}', not one of its outputs ({', '.join(cls.outputs) or 'none'})"
                )


class Executor(Component):
    """Trains groups of runs somewhere and hands the results back to the driver.

    Lifecycle, driven by :func:`grokbench.driving.suites.run_suite`: ``start()``
    (acquire resources; raise :class:`grokbench.errors.ConfigError` for bad
    input such as an unreachable cluster, before anything is written), then
    ``map(work, groups)``, then ``close()`` (always called after a successful
    ``start``).

    ``work`` is a picklable callable (a module-level function or a partial of one) that takes a list of
    :class:`grokbench.config.run.RunConfig` and returns a list of
    :class:`grokbench.training.programs.RunResult`, one per config; call it exactly as
    given, on one group per call, so that a model can batch the runs of a
    group (seeds and batchable hyperparameters, :func:`grokbench.training.batching.batch_groups`).
    An executor never writes to the results store itself (``work`` may: where the executor is not
    ``remote``, each run records itself in the store as it trains).
    """

    CAPABILITIES: ClassVar[Mapping[str, Capability]] = {
        "in-process": Capability(
            "`work` runs in the driver's own process (it may then use the driver's plugins directly)"
        ),
    }

    def start(self) -> None:
        """Acquire resources: start a pool, connect to a cluster."""

    @abc.abstractmethod
    def map(self, work: Callable[[list[Any]], list[Any]], groups: Sequence[list[Any]]) -> Iterator[tuple[int, Any]]:
        """Call ``work(groups[i])`` for every ``i`` and yield ``(i, results)`` as each finishes, in any order.

        When a group cannot be run at all (a worker crashed, a task was lost),
        yield ``(i, exception)`` instead: the driver records its runs as failed
        and the suite goes on.

        Ctrl-C or SIGTERM raises KeyboardInterrupt inside ``map`` (while it waits,
        or where it last yielded). Stop then: start no more groups, tell the busy
        workers to stop (``work`` raises :class:`grokbench.plugin.contracts.GroupInterrupted`
        with the runs it kept when interrupted), yield ``(i, GroupInterrupted)``
        for each group that handed back what it kept (the driver stores those
        runs, ``interrupted`` with their curves, unless their workers recorded them
        already), then raise KeyboardInterrupt again. An executor whose workers cannot
        hand anything back (Ray's cancelled tasks) stops them and raises at once.
        """

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


@dataclass(frozen=True)
class BenchmarkFile:
    """A benchmark protocol a plugin ships: a TOML file in the benchmark format (docs/benchmark.md).

    Registered with ``register(BenchmarkFile(path))``; the file is read and its schema checked when the plugin
    registers, and its ``[benchmark].name`` is the name ``grokbench bench run --benchmark NAME`` takes. Ship the
    file as package data so that it is installed with the plugin.
    """

    path: str


class Logger(Component):
    """Receives a run's events (start with the resolved config, each evaluation, each checkpoint, the end) and
    sends them to a tracker: a file, TensorBoard, MLflow, Weights & Biases.

    One instance serves the runs of one command in turn (``start`` ... ``end``, then the next run). It is made
    with ``directory``, where it may write (``--log-dir``; default ``<store>.logs`` next to the store). The
    modules it imports are declared in ``requires`` (checked before any training: missing ones are one line,
    exit 2, naming ``pip install 'grokbench[<extra>]'``). A logger that raises is switched off for the run,
    with a warning; the run goes on.
    """

    #: importable modules this logger needs (checked when it is selected)
    requires: ClassVar[tuple[str, ...]] = ()
    #: the grokbench extra that installs them, if any
    extra: ClassVar[str | None] = None

    def __init__(self, params: Params, *, directory: Any):
        super().__init__(params)
        self.directory = directory

    @classmethod
    def check_class(cls) -> None:
        super().check_class()
        if not (isinstance(cls.requires, tuple) and all(isinstance(m, str) for m in cls.requires)):
            raise TypeError(f"{cls.__name__}.requires must be a tuple of module names")

    def start(self, run_id: str, config: dict[str, Any], info: dict[str, Any]) -> None:
        """A run starts (or resumes): its id, resolved configuration (JSON) and ``info`` (plugins, store)."""

    def evaluation(self, step: int, record: dict[str, float]) -> None:
        """One evaluation: every curve's value at ``step``."""

    def checkpoint(self, step: int, path: str, reasons: list[str]) -> None:
        """A checkpoint was written (``reasons``: memorize, generalize, end, every, interrupted)."""

    def end(self, status: str, summary: dict[str, Any]) -> None:
        """The run ended with ``status`` and ``summary`` (t_memorize, t_generalize, final values...)."""


class GroupInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped a group of runs in a worker: ``results`` are the runs it kept (finished, or
    ``interrupted`` with their curves); the group's other runs never started. Picklable: it travels back from a
    worker process to the driver, which stores what it kept."""

    def __init__(self, results: Sequence[Any] = ()):
        super().__init__(f"{len(results)} runs kept")
        self.results = list(results)

    def __reduce__(self) -> Any:
        return (type(self), (self.results,))
