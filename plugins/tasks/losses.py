"""Classification losses shared by the first-party classification tasks: StableMax cross-entropy and MSE.

Prieto, Barsbey, Mediano & Birdal (2025), "Grokking at the edge of numerical
stability", replace the exponential of softmax by

    s(x) = x + 1        for x ≥ 0
    s(x) = 1 / (1 − x)  for x < 0

and normalize: StableMax(x)_i = s(x_i) / Σ_j s(x_j). The loss is the mean over the
batch of −log StableMax(x)_label. s is positive, continuous with a continuous
first derivative at 0 (both pieces have value 1 and slope 1 there), and grows
linearly rather than exponentially, so the probabilities saturate far later than
softmax's ("softmax collapse"). As in the authors' code it is evaluated in float64.

``mse`` is Gromov (2023)'s loss for the same tables: the squared distance of the output vector from the
label's one-hot vector, summed over classes and averaged over the batch.
"""

from __future__ import annotations

import torch

#: the ``loss`` values a first-party classification task accepts
CLASSIFICATION_LOSSES = ("cross_entropy", "mse", "stablemax")


def stablemax_s(x: torch.Tensor) -> torch.Tensor:
    """s(x) = x + 1 for x ≥ 0, 1 / (1 − x) for x < 0 (element-wise)."""
    return torch.where(x >= 0, x + 1, 1 / (1 - x.clamp(max=0)))


def stablemax(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """StableMax probabilities s(x_i) / Σ_j s(x_j) along ``dim``."""
    s = stablemax_s(x)
    return s / s.sum(dim=dim, keepdim=True)


def stablemax_cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of −log StableMax(out)_y, computed in float64, returned in ``out``'s dtype."""
    s = stablemax_s(out.to(torch.float64))
    logp = s.gather(1, y[:, None])[:, 0].log() - s.sum(1).log()
    return (-logp.mean()).to(out.dtype)


def one_hot_mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ‖out − onehot(y)‖², the squared error summed over the classes."""
    target = torch.nn.functional.one_hot(y, out.shape[1]).to(out.dtype)
    return (out - target).pow(2).sum(1).mean()


def classification_loss(name: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The loss called ``name`` (one of :data:`CLASSIFICATION_LOSSES`) on logits ``out`` and labels ``y``."""
    if name == "stablemax":
        return stablemax_cross_entropy(out, y)
    if name == "mse":
        return one_hot_mse(out, y)
    return torch.nn.functional.cross_entropy(out, y)
