"""The training loop: one optimizer step per iteration, task evaluation and metrics on a schedule.

Short on purpose; everything concrete (loss, gradients, updates, penalties) is a
plugin's. A step is: batch -> model loss and gradients -> regularizer penalty
(sub)gradients -> decoupled regularizer update -> optimizer update.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar, cast

import torch

from grokbench.config.run import TrainConfig
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
    """Asks a batched program to stop at the first evaluation step after one of its members has left it while
    others train on, before evaluating it: filled in with that step, the members still training (their indices
    among the program's) and their states there, so that they go on in a smaller program (built by the caller)
    exactly as a run resumed from a checkpoint of that step does."""

    step: int = -1
    active: list[int] = field(default_factory=list)
    states: list[TrainState] = field(default_factory=list)


@dataclass
class Member:
    """One run of a (possibly batched) training program: its data, model view, metrics and callbacks.

    ``on_state(step, snapshot)`` is called after each of its evaluations; ``snapshot()`` captures this member's
    training state (its rows of a batched program's tensors), as a single run of it would have it."""

    data: TaskData
    model: Model
    metrics: list[Metric]
    seed: int
    on_eval: Callable[[dict[str, float]], None]
    #: this run's own optimizer and regularizer (its own hyperparameters), stepped on its own when the
    #: program's components are not ``seedwise``; ``None``: the program's
    optimizer: Optimizer | None = None
    regularizer: Regularizer | None = None
    #: after each evaluation: ``(step, snapshot)`` (the run's lifecycle saves a checkpoint or keeps the state)
    on_state: Callable[[int, Callable[[], TrainState]], None] | None = None
    #: when it leaves a program whose other members train on (early stop, divergence, stall): its outcome, so
    #: that its run is ended (stored as finished) then, not when the whole program ends
    on_leave: Callable[[TrainOutcome], None] | None = None


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
    """Train in place; every evaluation record goes to ``on_eval`` as soon as it is made.

    ``resume``: go on from a checkpoint's state (its step is evaluated again when on the schedule);
    ``on_state(step, snapshot)``: called after each evaluation, ``snapshot()`` captures the training state."""
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


def flushing_denormals(fn: F) -> F:
    """``fn(..., cfg=...)`` with subnormal floats flushed to zero on the CPU (this thread) when ``cfg.flush_denormal``; restored (off) after."""

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
    """Train one model, or several seeds stacked in a :class:`BatchedModel`, with one optimizer.

    A batched program feeds seed s's batch as row s of ``[S, n, ...]`` inputs;
    each member is evaluated on its own data and leaves the program (diverged,
    early-stopped, stalled) on its own. A member that has left keeps being stepped
    with the others, which changes nothing for them, but is never recorded again,
    until the next evaluation step with ``pause``: there the program stops, and the
    runner goes on with the members left in a smaller one.
    Optimizers and regularizers with capability ``seedwise`` (element-wise) update the
    stacked tensors in one go; any other one (a global norm, a max) is built and
    stepped once per seed on that seed's views, so it sees exactly what it would alone.
    A model with capability ``closed-form`` is fitted once and moved to each evaluated
    step; it has no optimizer and no regularizer. ``resume``: one checkpointed state per member, all at one
    step, from which training goes on as if it had never stopped. ``pause``: a batched program stops at the
    first evaluation step after a member has left it with others still training, and fills ``pause`` in (the
    outcomes of the members still training, ``pause.active``, are not theirs yet).
    """
    batched = isinstance(trainable, BatchedModel)
    fitted = trainable if isinstance(trainable, Model) and trainable.supports("closed-form") else None
    closed_form = fitted is not None
    states: list[OptimizerState] = []
    if fitted is not None:
        fitted.fit(task, members[0].data)
    else:
        assert optimizer is not None and regularizer is not None, "only a closed-form model trains without them"
        penalty, decoupled = regularizer.supports("penalty"), regularizer.supports("decoupled")
        params = list(trainable.parameters().values())
        # seedwise components step the stacked tensors at once (hyperparameters on which the members differ
        # as tensors [G]: see contracts.BATCHABLE); others step each member's views with its own components
        per_seed = batched and not (optimizer.supports("seedwise") and regularizer.supports("seedwise"))
        groups = [[p[i] for p in params] for i in range(len(members))] if per_seed else [params]
        optimizers = [m.optimizer or optimizer for m in members] if per_seed else [optimizer]
        regs: list[Regularizer] = [m.regularizer or regularizer for m in members] if per_seed else [regularizer]
        states = [opt.build(group) for opt, group in zip(optimizers, groups)]
        lrs = [o.params.lr if isinstance(o.params.lr, torch.Tensor) else float(o.params.lr) for o in optimizers]
    batches = [Batches(m.data, cfg.batch_size, m.seed) for m in members]
    start = 0
    if resume is not None:  # one checkpointed state per member, all at one step
        start = resume[0].step
        restore(resume, trainable, states, batches, metrics=[m.metrics for m in members])

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = zip(*(b.next() for b in batches))
        return (torch.stack(xs), torch.stack(ys)) if batched else (xs[0], ys[0])

    full_batch = next_batch() if batches[0].size is None else None
    outcomes = [TrainOutcome(status="completed", steps=cfg.steps) for _ in members]
    active = list(range(len(members)))

    def leave(i: int, outcome: TrainOutcome) -> None:
        outcomes[i] = outcome
        active.remove(i)
        on_leave = members[i].on_leave
        if on_leave is not None:
            on_leave(outcome)

    # stalls are exact repeats of the state: only full-batch runs trained step by step can have them
    watches = (
        [StallWatch(cfg.eval_every, cfg.steps) for _ in members]
        if cfg.stop_on_stall and not closed_form and full_batch is not None
        else []
    )

    try:
        for step in range(start, cfg.steps + 1):
            if step % cfg.eval_every == 0 or step == cfg.steps:
                if pause is not None and batched and len(active) < len(members):  # go on in a smaller program
                    pause.step, pause.active = step, list(active)
                    pause.states = [capture(step, trainable, states, batches, members[i].metrics, i) for i in active]
                    return outcomes
                if fitted is not None:
                    fitted.set_step(step)
                for i in list(active):
                    m = members[i]
                    record = evaluate(step, task, m.data, m.model, m.metrics)
                    m.on_eval(record)
                    if m.on_state is not None:
                        m.on_state(step, functools.partial(capture, step, trainable, states, batches, m.metrics, i))
                    finite = math.isfinite(record["train_loss"]) and all(
                        torch.isfinite(p).all() for p in m.model.parameters().values()
                    )
                    if not finite:
                        leave(i, TrainOutcome("diverged", step, f"non-finite loss or parameters at step {step}"))
                    elif cfg.early_stop and record["test_acc"] >= cfg.generalize_threshold:
                        leave(i, TrainOutcome("completed", step))
                    elif watches:
                        watches[i].evaluated(step)
                if not active:
                    break
            if step == cfg.steps:
                break
            if closed_form:
                continue
            x, y = full_batch or next_batch()
            _, grads = trainable.loss_and_grads(x, y, task)
            for i in [i for i in active if watches and watches[i].watching(step)]:
                snapshot = member_state(i, len(members), params, states, batched)
                reason = (
                    None
                    if snapshot is None
                    else watches[i].observe(step, snapshot, [g[i] for g in grads] if batched else grads)
                )
                if reason:
                    leave(i, TrainOutcome("stalled", step, reason))
            if not active:
                break
            for i, (group, state, lr, reg) in enumerate(zip(groups, states, lrs, regs)):
                group_grads = [g[i] for g in grads] if per_seed else grads
                if penalty:
                    for g, e in zip(group_grads, reg.penalty_grads(group)):
                        g.add_(e)
                if decoupled:
                    reg.decoupled_update(group, lr)
                state.step(group_grads)
            if on_step is not None:
                on_step(step + 1)
    except KeyboardInterrupt as exc:
        # the members that had already left the program (early stop, divergence, stall) keep their own outcome
        exc.finished = {i: outcomes[i] for i in range(len(members)) if i not in active}  # type: ignore[attr-defined]
        raise
    return outcomes
