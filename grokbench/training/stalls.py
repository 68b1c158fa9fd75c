"""Stalled runs: a full-batch run whose state repeats, exactly or nearly, without its metrics moving.

Training is deterministic given the state (parameters and optimizer state), so a state seen again exactly
cycles for ever: with ``train.stop_on_stall`` such a run stops with status ``stalled`` and every stored summary
is what the full run gives. A state that returns within a relative tolerance (a near-cycle: normalized GD
bouncing across a valley) only drifts; it is a stall when, besides, the train and test accuracies have not
changed and the losses have moved by less than a relative tolerance over the last evaluations (:class:`StallWatch`).
"""

from __future__ import annotations

import hashlib
import math
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from grokbench.plugin.contracts import OptimizerState
from grokbench.training.state import row

#: optimizer steps watched after each evaluation (periods up to WINDOW are found)
WINDOW = 4
#: a near-cycle: the state after one period is within this relative distance of the evaluated state, per tensor
RTOL = 1e-5
#: evaluations (the latest included) over which a near-cycle's metrics must not progress
PATIENCE = 10
#: no progress: accuracies equal, losses within this relative change over the PATIENCE evaluations
LOSS_RTOL = 1e-3
ACCURACIES = ("train_acc", "test_acc")
LOSSES = ("train_loss", "test_loss")


def fingerprint(tensors: Sequence[torch.Tensor]) -> bytes:
    """An exact fingerprint of the tensors' values (a hash of their bytes, shapes and dtypes)."""
    digest = hashlib.blake2b(digest_size=20)
    for t in tensors:
        t = t.detach()
        digest.update(f"{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.digest()


def all_zero(grads: Sequence[torch.Tensor]) -> bool:
    return all(not bool(g.any()) for g in grads)


def distance(state: Sequence[torch.Tensor], ref: Sequence[torch.Tensor]) -> float:
    """The largest relative distance ``‖a − b‖ / ‖b‖`` over the state's tensors (in float64; a tensor that is
    zero in both counts 0, one that leaves zero counts inf). Per tensor, so that a small tensor that moves (an
    optimizer's step count) is not hidden by large ones that do not."""
    worst = 0.0
    for a, b in zip(state, ref):
        a64, b64 = a.detach().double(), b.double()
        diff, norm = float(torch.linalg.vector_norm(a64 - b64)), float(torch.linalg.vector_norm(b64))
        if diff:
            worst = max(worst, diff / norm if norm else math.inf)
    return worst


def still(records: Sequence[Mapping[str, float]], loss_rtol: float = LOSS_RTOL) -> bool:
    """Whether the records show no progress: each accuracy equal in all, each loss within ``loss_rtol`` of
    its largest magnitude (a loss or accuracy that is missing or not finite in any of them: progress)."""
    if not records:
        return False
    for keys, tol in ((ACCURACIES, 0.0), (LOSSES, loss_rtol)):
        for key in keys:
            found = [r.get(key) for r in records]
            values = [float(v) for v in found if v is not None and math.isfinite(v)]
            if len(values) < len(found):
                return False
            low, high = min(values), max(values)
            if high - low > tol * max(abs(low), abs(high)):
                return False
    return True


class StallWatch:
    """Watches one run's state in the ``window`` steps after each evaluation and says when it has stalled.

    A state that returns to the one evaluated at step ``s`` after a period dividing both ``eval_every`` and
    ``steps - s`` means every later evaluation would see (nearly) the state evaluated at ``s``. Exactly (the
    same bytes): the run stops there, every summary the full run's. Within ``rtol`` (:func:`distance`): it
    stops only when the last ``patience`` evaluation records show no progress (:func:`still`), so its
    summaries are the full run's to the drift the cycle still has. A cycle that starts after ``s`` is
    confirmed at the next evaluation. An optimizer state that keeps the default ``state_dict`` is not known
    and never declared stalled. The reason says whether the task-loss gradient was exactly zero (it
    underflowed: only the regularizer moves the parameters, as normalized GD with a tiny ℓ∞ term does)."""

    def __init__(
        self,
        eval_every: int,
        steps: int,
        window: int = WINDOW,
        rtol: float = RTOL,
        patience: int = PATIENCE,
        loss_rtol: float = LOSS_RTOL,
    ):
        self.eval_every, self.steps, self.window = eval_every, steps, window
        self.rtol, self.loss_rtol = rtol, loss_rtol
        self.start = -1  # the evaluation step whose window is open
        self.seen: dict[bytes, int] = {}
        self.ref: list[torch.Tensor] | None = None  # the state at ``start``, for the near test
        self.records: deque[Mapping[str, float]] = deque(maxlen=patience)
        self.zero_grads = True

    def watching(self, step: int) -> bool:
        """Whether ``step`` (a state before its update) is fingerprinted."""
        return self.start >= 0 and step <= self.start + self.window

    def evaluated(self, step: int, record: Mapping[str, float] | None = None) -> None:
        """Open the window of evaluation step ``step``; ``record``: its evaluation (without one, only exact
        repeats are stalls)."""
        self.start, self.seen, self.ref, self.zero_grads = step, {}, None, True
        if record is None:
            self.records.clear()
        else:
            self.records.append(dict(record))

    def observe(
        self, step: int, state: Sequence[torch.Tensor], task_grads: Sequence[torch.Tensor] | None
    ) -> str | None:
        """Look at the state at ``step`` (and the task-loss gradients taken there); the reason if the run stalled."""
        key = fingerprint(state)
        first = self.seen.setdefault(key, step)
        if task_grads is not None and self.zero_grads:
            self.zero_grads = all_zero(task_grads)
        if step == self.start:
            self.ref = [t.detach().clone() for t in state] if self.near_possible() else None
        if first == step:
            return self.near(step, state)
        period = step - first
        if first != self.start or not self.divides(period):
            return None
        kind = "the parameters no longer change" if period == 1 else f"the parameters repeat with period {period}"
        return f"stalled at step {first}: {kind} (exact, with the optimizer state); {self.cause()}"

    def divides(self, period: int) -> bool:
        """Whether a cycle of ``period`` from ``start`` shows every later evaluation the state at ``start``."""
        return not (self.eval_every % period or (self.steps - self.start) % period)

    def near_possible(self) -> bool:
        """Whether the evaluations so far allow a near-cycle stall: ``patience`` of them without progress."""
        return len(self.records) == self.records.maxlen and still(list(self.records), self.loss_rtol)

    def near(self, step: int, state: Sequence[torch.Tensor]) -> str | None:
        """The reason if ``state`` is within ``rtol`` of the evaluated state after a dividing period."""
        period = step - self.start
        if self.ref is None or period < 1 or not self.divides(period):
            return None
        d = distance(state, self.ref)
        if d > self.rtol:
            return None
        kind = "the parameters no longer change" if period == 1 else f"the parameters repeat with period {period}"
        return (
            f"stalled at step {self.start}: {kind} to a relative {d:.1e} (within {self.rtol:g}, with the optimizer "
            f"state), and over the last {len(self.records)} evaluations the accuracies are unchanged and the losses "
            f"within {self.loss_rtol:g}; {self.cause()}"
        )

    def cause(self) -> str:
        return (
            "the task-loss gradient is exactly zero (underflow), so only the regularizer, if any, moves the parameters"
            if self.zero_grads
            else "the task-loss gradient is not zero"
        )


def _tensors(value: Any) -> list[torch.Tensor]:
    """Every tensor (and number) in a state dict, in a fixed order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for key in sorted(value, key=str) for t in _tensors(value[key])]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [torch.tensor(float(value))]
    return []


def member_state(
    i: int, members: int, params: list[torch.Tensor], states: list[OptimizerState], batched: bool
) -> list[torch.Tensor] | None:
    """Member ``i``'s parameters and optimizer state (rows of stacked tensors); None when the state is not known."""
    own = states[i] if len(states) > 1 else states[0]
    if not own.supports("state-dict"):
        return None  # not known
    state = own.state_dict()
    if batched:
        params = [p[i] for p in params]
        if len(states) == 1:
            state = row(state, i, members)
    return params + _tensors(state)
