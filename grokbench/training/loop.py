"""The training loop: one optimizer step per iteration, evaluations on a schedule.

Everything concrete (loss, gradients, updates, penalties) is a plugin's. A step is: batch -> model loss and
gradients -> regularizer penalty (sub)gradients -> decoupled regularizer update -> optimizer update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch

from grokbench.config.run import TrainConfig
from grokbench.plugin.conformance import check_grads, check_loss_and_grads, check_state
from grokbench.plugin.contracts import (
    BatchedModel,
    EvalContext,
    Metric,
    Model,
    Optimizer,
    OptimizerState,
    Regularizer,
    Task,
    TaskData,
)
from grokbench.training.stalls import StallWatch, member_state
from grokbench.training.state import TrainState, capture, restore

EVAL_CHUNK = 1 << 16
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class TrainOutcome:
    status: str  # "completed", "diverged" or "stalled"
    steps: int  # optimizer steps taken
    message: str | None = None


def make_predict(model: Model) -> Callable[[torch.Tensor], torch.Tensor]:
    """Batched, gradient-free forward pass in chunks (bounded memory on big evaluation sets)."""

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        if len(x) <= EVAL_CHUNK:
            return model(x)
        return torch.cat([model(x[i : i + EVAL_CHUNK]) for i in range(0, len(x), EVAL_CHUNK)])

    return predict


def evaluate(step: int, task: Task, data: TaskData, model: Model, metrics: list[Metric]) -> dict[str, float]:
    predict = make_predict(model)
    record: dict[str, float] = {"step": step, **task.evaluate(predict, data)}
    ctx = EvalContext(step=step, model=model, task=task, data=data, predict=predict, evaluation=dict(record))
    for metric in metrics:
        record.update(metric.compute(ctx))
    return record


class Batches:
    """Full batch, or shuffled minibatches drawn epoch by epoch from a seeded generator."""

    def __init__(self, data: TaskData, batch_size: int | None, seed: int):
        self.x, self.y, self.n = data.x_train, data.y_train, len(data.x_train)
        self.size = batch_size if batch_size and batch_size < self.n else None
        self.generator = torch.Generator().manual_seed(seed)
        self.order, self.pos = torch.empty(0, dtype=torch.long), 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self.size is None:
            return self.x, self.y
        if self.pos + self.size > len(self.order):
            self.order, self.pos = torch.randperm(self.n, generator=self.generator).to(self.x.device), 0
        idx = self.order[self.pos : self.pos + self.size]
        self.pos += self.size
        return self.x[idx], self.y[idx]


@dataclass
class Pause:
    """Asks a batched program to stop at the first evaluation step after a member has left it while others
    train on, before evaluating. Filled in with that step, the members still training (indices among the
    program's) and their states there, so that they go on in a smaller program as resumed runs do."""

    step: int = -1
    active: list[int] = field(default_factory=list)
    states: list[TrainState] = field(default_factory=list)


@dataclass
class Member:
    """One run of a (possibly batched) program: its data, model view, metrics and callbacks."""

    data: TaskData
    model: Model
    metrics: list[Metric]
    seed: int
    on_eval: Callable[[dict[str, float]], None]
    #: this run's own optimizer and regularizer, stepped on their own when the program's are not ``seedwise``;
    #: ``None``: the program's
    optimizer: Optimizer | None = None
    regularizer: Regularizer | None = None
    #: after each evaluation: ``(step, snapshot)``, ``snapshot()`` captures this run's state as if trained alone
    on_state: Callable[[int, Callable[[], TrainState]], None] | None = None
    #: when it leaves a program whose other members train on: its outcome, so its run ends then
    on_leave: Callable[[TrainOutcome], None] | None = None
    #: its evaluations in a row at the threshold so far (see :func:`generalized`); a resumed run starts from its
    #: stored curves' (:func:`held_streak`)
    held: int = 0


def generalized(record: Mapping[str, float], cfg: TrainConfig) -> bool:
    """Whether an evaluation is at ``generalize_threshold``: test accuracy, and validation accuracy too where the
    run has a validation split (a NaN is below it). ``early_stop`` waits for ``generalize_evals`` in a row."""
    threshold = cfg.generalize_threshold
    return record["test_acc"] >= threshold and ("val_acc" not in record or record["val_acc"] >= threshold)


def held_streak(curves: Sequence[Mapping[str, float]], cfg: TrainConfig) -> int:
    """How many of the last evaluations of ``curves`` are in a row at the threshold (:func:`generalized`)."""
    streak = 0
    for record in reversed(curves):
        if not generalized(record, cfg):
            break
        streak += 1
    return streak


def train(
    *,
    task: Task,
    data: TaskData,
    model: Model,
    optimizer: Optimizer | None,
    regularizer: Regularizer | None,
    metrics: list[Metric],
    cfg: TrainConfig,
    seed: int,
    on_eval: Callable[[dict[str, float]], None],
    resume: TrainState | None = None,
    on_state: Callable[[int, Callable[[], TrainState]], None] | None = None,
    on_step: Callable[[int], None] | None = None,
) -> TrainOutcome:
    """Train one model in place; every evaluation record goes to ``on_eval`` as soon as it is made.

    ``resume``: go on from a checkpoint's state; ``on_state``: as :attr:`Member.on_state`."""
    member = Member(data, model, metrics, seed, on_eval, on_state=on_state)
    return train_members(
        task=task,
        members=[member],
        trainable=model,
        optimizer=optimizer,
        regularizer=regularizer,
        cfg=cfg,
        resume=[resume] if resume is not None else None,
        on_step=on_step,
    )[0]


def step_function(
    *,
    task: Task,
    data: TaskData,
    model: Model,
    optimizer: Optimizer,
    regularizer: Regularizer,
    cfg: TrainConfig,
    seed: int,
) -> Callable[[], None]:
    """One training step of a single run, as :func:`train_members` takes it (its batch, the model's loss and
    gradients, the regularizer's and optimizer's updates), with no evaluation: what
    :mod:`grokbench.training.costs` times. Each call trains the model one step further."""
    member = Member(data, model, [], seed, lambda record: None)
    updates = _Updates.build(model, [member], optimizer, regularizer)
    batches = Batches(data, cfg.batch_size, seed)
    full = batches.next() if batches.size is None else None

    def step() -> None:
        x, y = full or batches.next()
        _, grads = model.loss_and_grads(x, y, task)
        updates.step(grads)

    return step


def flushing_denormals(fn: F) -> F:
    """``fn(..., cfg=...)`` with subnormal floats flushed to zero on the CPU (this thread) when
    ``cfg.flush_denormal``; turned off again after."""

    @functools.wraps(fn)
    def wrapper(*args: Any, cfg: TrainConfig, **kwargs: Any) -> Any:
        if not cfg.flush_denormal:
            return fn(*args, cfg=cfg, **kwargs)
        torch.set_flush_denormal(True)
        try:
            return fn(*args, cfg=cfg, **kwargs)
        finally:
            torch.set_flush_denormal(False)

    return cast(F, wrapper)


@flushing_denormals
def train_members(
    *,
    task: Task,
    members: list[Member],
    trainable: Model | BatchedModel,
    optimizer: Optimizer | None,
    regularizer: Regularizer | None,
    cfg: TrainConfig,
    resume: Sequence[TrainState] | None = None,
    on_step: Callable[[int], None] | None = None,
    pause: Pause | None = None,
) -> list[TrainOutcome]:
    """Train one model, or several seeds stacked in a :class:`BatchedModel`; one outcome per member.

    Each member is evaluated on its own data and leaves on its own (diverged, early-stopped, stalled); one
    that has left is still stepped but never recorded again. ``resume``: one checkpointed state per member,
    all at one step. ``pause``: stop at the first evaluation step after a member has left (see :class:`Pause`).
    A ``closed-form`` model is fitted once and moved to each evaluated step, with no optimizer."""
    fitted, updates = _setup(task, members, trainable, optimizer, regularizer)
    program = _Program(task, members, trainable, cfg, updates, resume)
    try:
        for step in range(program.start, cfg.steps + 1):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                if program.pauses(step, pause):
                    return program.outcomes
                if fitted is not None:
                    fitted.set_step(step)
                program.evaluate_members(step)
                if not program.active:
                    break
            if step == cfg.steps:
                break
            if updates is None:  # closed form: nothing to step
                continue
            x, y = program.batch()
            out = trainable.loss_and_grads(x, y, task)
            if step == program.start:
                check_loss_and_grads(out, list(trainable.parameters().values()))
            _, grads = out
            program.watch_stalls(step, grads)
            if not program.active:
                break
            updates.step(grads)
            if on_step is not None:
                on_step(step + 1)
    except KeyboardInterrupt as exc:
        exc.left = program.left()  # type: ignore[attr-defined]
        raise
    return program.outcomes


def _setup(
    task: Task,
    members: list[Member],
    trainable: Model | BatchedModel,
    optimizer: Optimizer | None,
    regularizer: Regularizer | None,
) -> tuple[Model | None, _Updates | None]:
    """The closed-form model, fitted (and no updates), or the program's updates (and no fitted model)."""
    if isinstance(trainable, Model) and trainable.supports("closed-form"):
        trainable.fit(task, members[0].data)
        return trainable, None
    assert optimizer is not None and regularizer is not None, "only a closed-form model trains without them"
    return None, _Updates.build(trainable, members, optimizer, regularizer)


@dataclass
class _Updates:
    """A program's optimizer states and the tensors each one updates. ``seedwise`` (element-wise) components
    update the stacked tensors in one group (differing hyperparameters as tensors ``[G]``); any other one (a
    global norm, a max) gets one group per member, its views, with its own components: it sees what it would alone."""

    params: list[torch.Tensor]
    groups: list[list[torch.Tensor]]
    states: list[OptimizerState]
    regularizers: list[Regularizer]
    lrs: list[float | torch.Tensor]
    per_seed: bool
    penalty: bool
    decoupled: bool
    checked: bool = False

    @classmethod
    def build(
        cls, trainable: Model | BatchedModel, members: list[Member], optimizer: Optimizer, regularizer: Regularizer
    ) -> _Updates:
        penalty, decoupled = regularizer.supports("penalty"), regularizer.supports("decoupled")
        params = list(trainable.parameters().values())
        seedwise = optimizer.supports("seedwise") and regularizer.supports("seedwise")
        per_seed = isinstance(trainable, BatchedModel) and not seedwise
        groups = [[p[i] for p in params] for i in range(len(members))] if per_seed else [params]
        optimizers = [m.optimizer or optimizer for m in members] if per_seed else [optimizer]
        regs = [m.regularizer or regularizer for m in members] if per_seed else [regularizer]
        states = [opt.build(group) for opt, group in zip(optimizers, groups)]
        for state in states:
            check_state(state)
        lrs = [o.params.lr if isinstance(o.params.lr, torch.Tensor) else float(o.params.lr) for o in optimizers]
        return cls(params, groups, states, regs, lrs, per_seed, penalty, decoupled)

    def step(self, grads: list[torch.Tensor]) -> None:
        """Add the penalty gradients, apply the decoupled update, then step the optimizer, group by group."""
        for i, (group, state, lr, reg) in enumerate(zip(self.groups, self.states, self.lrs, self.regularizers)):
            group_grads = [g[i] for g in grads] if self.per_seed else grads
            if self.penalty:
                extra = reg.penalty_grads(group)
                if not self.checked:
                    check_grads("regularizer", "penalty_grads", extra, group)
                for g, e in zip(group_grads, extra):
                    g.add_(e)
            if self.decoupled:
                reg.decoupled_update(group, lr)
            state.step(group_grads)
        self.checked = True  # return values are checked at the first step only


class _Program:
    """The members of one :func:`train_members` call as they train: their minibatches, which of them are still
    training, each one's outcome and stall watch."""

    def __init__(
        self,
        task: Task,
        members: list[Member],
        trainable: Model | BatchedModel,
        cfg: TrainConfig,
        updates: _Updates | None,
        resume: Sequence[TrainState] | None,
    ):
        self.task, self.members, self.trainable, self.cfg, self.updates = task, members, trainable, cfg, updates
        self.batched = isinstance(trainable, BatchedModel)
        self.states = updates.states if updates is not None else []
        self.batches = [Batches(m.data, cfg.batch_size, m.seed) for m in members]
        self.start = 0
        if resume is not None:  # one checkpointed state per member, all at one step
            self.start = resume[0].step
            restore(resume, trainable, self.states, self.batches, metrics=[m.metrics for m in members])
        self.full_batch = self._next_batch() if self.batches[0].size is None else None
        self.outcomes = [TrainOutcome(status="completed", steps=cfg.steps) for _ in members]
        self.active = list(range(len(members)))
        # stalls are exact repeats of the state: only full-batch runs trained step by step can have them
        stalls = cfg.stop_on_stall and updates is not None and self.full_batch is not None
        self.watches = [StallWatch(cfg.eval_every, cfg.steps) for _ in members] if stalls else []

    def _next_batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(b.next() for b in self.batches))
        return (torch.stack(xs), torch.stack(ys)) if self.batched else (xs[0], ys[0])

    def batch(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.full_batch or self._next_batch()

    def leave(self, i: int, outcome: TrainOutcome) -> None:
        self.outcomes[i] = outcome
        self.active.remove(i)
        on_leave = self.members[i].on_leave
        if on_leave is not None:
            on_leave(outcome)

    def left(self) -> dict[int, TrainOutcome]:
        """The outcomes of the members that have left, by index."""
        return {i: self.outcomes[i] for i in range(len(self.members)) if i not in self.active}

    def pauses(self, step: int, pause: Pause | None) -> bool:
        """Whether a batched program stops here to go on smaller: fills ``pause`` in when a member has left."""
        if pause is None or not self.batched or len(self.active) == len(self.members):
            return False
        pause.step, pause.active = step, list(self.active)
        pause.states = [
            capture(step, self.trainable, self.states, self.batches, self.members[i].metrics, i) for i in self.active
        ]
        return True

    def evaluate_members(self, step: int) -> None:
        """Evaluate each member still training and hand its record and state to its callbacks; it leaves when
        its loss or parameters are not finite, or on early stop (``generalize_evals`` evaluations in a row at the
        threshold); otherwise its stall window opens."""
        cfg = self.cfg
        for i in list(self.active):
            m = self.members[i]
            record = evaluate(step, self.task, m.data, m.model, m.metrics)
            m.on_eval(record)
            if m.on_state is not None:
                m.on_state(
                    step, functools.partial(capture, step, self.trainable, self.states, self.batches, m.metrics, i)
                )
            finite = math.isfinite(record["train_loss"]) and all(
                torch.isfinite(p).all() for p in m.model.parameters().values()
            )
            m.held = m.held + 1 if generalized(record, cfg) else 0
            if not finite:
                self.leave(i, TrainOutcome("diverged", step, f"non-finite loss or parameters at step {step}"))
            elif cfg.early_stop and m.held >= cfg.generalize_evals:
                self.leave(i, TrainOutcome("completed", step))
            elif self.watches:
                self.watches[i].evaluated(step, record)

    def watch_stalls(self, step: int, grads: list[torch.Tensor]) -> None:
        """Fingerprint the state of each member in its stall window; one whose state repeats leaves, stalled."""
        if not self.watches:
            return
        assert self.updates is not None
        for i in [i for i in self.active if self.watches[i].watching(step)]:
            state = member_state(i, len(self.members), self.updates.params, self.states, self.batched)
            if state is None:
                continue
            reason = self.watches[i].observe(step, state, [g[i] for g in grads] if self.batched else grads)
            if reason:
                self.leave(i, TrainOutcome("stalled", step, reason))
