"""Stalled runs: a full-batch run whose state repeats exactly can no longer change anything it records.

Training is deterministic given the state (parameters and optimizer state), so a state seen again cycles for
ever; with ``train.stop_on_stall`` such a run stops with status ``stalled`` and every stored summary is what the
full run gives (:class:`StallWatch`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

import torch

from grokbench.plugin.contracts import OptimizerState
from grokbench.training.state import row

#: optimizer steps watched after each evaluation (periods up to WINDOW are found)
WINDOW = 4


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


class StallWatch:
    """Fingerprints one run's state in the ``window`` steps after each evaluation and says when it has stalled.

    A cycle that starts at evaluation step ``s`` and whose period divides both ``eval_every`` and ``steps - s``
    means every later evaluation would see the state evaluated at ``s``: the run stops there. A cycle that
    starts later is confirmed at the next evaluation. An optimizer state that keeps the default ``state_dict``
    is not known and never declared stalled. The reason says whether the task-loss gradient was exactly zero
    (it underflowed: only the regularizer moves the parameters, as normalized GD with a tiny ℓ∞ term does)."""

    def __init__(self, eval_every: int, steps: int, window: int = WINDOW):
        self.eval_every, self.steps, self.window = eval_every, steps, window
        self.start = -1  # the evaluation step whose window is open
        self.seen: dict[bytes, int] = {}
        self.zero_grads = True

    def watching(self, step: int) -> bool:
        """Whether ``step`` (a state before its update) is fingerprinted."""
        return self.start >= 0 and step <= self.start + self.window

    def evaluated(self, step: int) -> None:
        """Open the window of evaluation step ``step``."""
        self.start, self.seen, self.zero_grads = step, {}, True

    def observe(
        self, step: int, state: Sequence[torch.Tensor], task_grads: Sequence[torch.Tensor] | None
    ) -> str | None:
        """Fingerprint the state at ``step`` (and the task-loss gradients taken there); the reason if the run stalled."""
        key = fingerprint(state)
        first = self.seen.setdefault(key, step)
        if task_grads is not None and self.zero_grads:
            self.zero_grads = all_zero(task_grads)
        if first == step:
            return None
        period = step - first
        if first != self.start or self.eval_every % period or (self.steps - first) % period:
            return None
        cause = (
            "the task-loss gradient is exactly zero (underflow), so only the regularizer, if any, moves the parameters"
            if self.zero_grads
            else "the task-loss gradient is not zero"
        )
        kind = "the parameters no longer change" if period == 1 else f"the parameters repeat with period {period}"
        return f"stalled at step {first}: {kind} (exact, with the optimizer state); {cause}"


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
