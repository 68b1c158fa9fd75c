"""The training loop: one optimizer step per iteration, task evaluation and metrics on a schedule.

Short on purpose; everything concrete (loss, gradients, updates, penalties) is a
plugin's. A step is: batch -> model loss and gradients -> regularizer penalty
(sub)gradients -> decoupled regularizer update -> optimizer update.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch

from .config import TrainConfig
from .contracts import EvalContext, Metric, Model, Optimizer, Regularizer, Task, TaskData

EVAL_CHUNK = 1 << 16


@dataclass
class TrainOutcome:
    status: str  # "completed" or "diverged"
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


def train(
    *,
    task: Task,
    data: TaskData,
    model: Model,
    optimizer: Optimizer,
    regularizer: Regularizer,
    metrics: list[Metric],
    cfg: TrainConfig,
    seed: int,
    on_eval: Callable[[dict[str, float]], None],
) -> TrainOutcome:
    """Train in place; every evaluation record goes to ``on_eval`` as soon as it is made.

    A closed-form model (``model.closed_form``) is fitted once and only moved to each
    evaluated step; the optimizer and regularizer never run.
    """
    lr = float(optimizer.params.lr)
    if model.closed_form:
        model.fit(task, data, lr)
    params = list(model.parameters().values())
    state = optimizer.build(params)
    batches = Batches(data, cfg.batch_size, seed)
    outcome = TrainOutcome(status="completed", steps=0)

    for step in range(cfg.steps + 1):
        if step % cfg.eval_every == 0 or step == cfg.steps:
            if model.closed_form:
                model.set_step(step)
            record = evaluate(step, task, data, model, metrics)
            on_eval(record)
            if not (math.isfinite(record["train_loss"]) and all(torch.isfinite(p).all() for p in params)):
                outcome.status, outcome.message = "diverged", f"non-finite loss or parameters at step {step}"
                break
            if cfg.early_stop and record["test_acc"] >= cfg.generalize_threshold:
                break
        if step == cfg.steps:
            break
        if model.closed_form:
            outcome.steps = step + 1
            continue
        x, y = batches.next()
        _, grads = model.loss_and_grads(x, y, task)
        extra = regularizer.penalty_grads(params)
        if extra is not None:
            for g, e in zip(grads, extra):
                g.add_(e)
        regularizer.decoupled_update(params, lr)
        state.step(grads)
        outcome.steps = step + 1
    return outcome
