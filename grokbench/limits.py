"""Bounds on what a run can take, checked before anything is trained or written.

* :func:`check_values`: every integer fits in 64 bits, every float is finite (a raw ``--set`` tree,
  a preset, a suite file: before any component validates it, so no plugin ever sees 10**30 or inf).
* :func:`check_count`: a number of runs (a grid, a seed range) against ``--max-runs``, before expanding it.
* :func:`check_runnable`: each configuration's device exists here and its tensors fit in this machine's
  memory, by the estimate of :func:`estimate_bytes`.

The memory estimate is opt-in per plugin, through the capability ``memory-estimate`` of tasks and
models (a plugin without it is simply not checked):

* ``Task.data_size(params) -> (DataSpec, n)``: the data's shape and the number of model inputs it
  holds (train and test), computed from the parameters without building anything;
* ``Model.size(params, spec) -> (n_parameters, floats_per_input)``: the trainable parameters and the
  activations one input needs in a forward and backward pass.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterable, Mapping
from typing import Any

from .errors import ConfigError

INT_MIN, INT_MAX = -(2**63), 2**63 - 1
#: default of ``--max-runs``: the most runs one command plans before it is refused
MAX_RUNS = 10_000
#: copies of the parameters training keeps (weights, gradients, two optimizer moments, one spare buffer)
PARAM_COPIES = 5
#: bytes of one integer of task data (torch.long)
INT_BYTES = 8


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-8:]} ({len(str(value))} digits)"


def check_values(tree: Any, where: str = "") -> None:
    """Refuse integers beyond 64 bits and infinite or NaN floats anywhere in a nested config tree."""
    if isinstance(tree, Mapping):
        for key, value in tree.items():
            check_values(value, f"{where}.{key}" if where else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            check_values(value, f"{where}[{i}]")
    elif isinstance(tree, bool):
        return
    elif isinstance(tree, int) and not INT_MIN <= tree <= INT_MAX:
        raise ConfigError(
            f"invalid value for {where or 'value'}: integers must fit in 64 bits, -2^63 to 2^63-1 (got {_shown(tree)})"
        )
    elif isinstance(tree, float) and not math.isfinite(tree):
        raise ConfigError(f"invalid value for {where or 'value'}: must be a finite number (got {tree!r})")


def check_count(count: int, limit: int | None, what: str) -> None:
    """Refuse ``count`` runs above ``limit`` (``None``: the default, :data:`MAX_RUNS`), naming the count."""
    limit = MAX_RUNS if limit is None else limit
    if count > limit:
        raise ConfigError(
            f"{what} asks for {count:,} runs, more than the limit of {limit:,} (raise it with --max-runs N)"
        )


# ----------------------------------------------------------------------- memory


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def available_bytes(device: Any) -> int | None:
    """Memory a run on ``device`` can use: free GPU memory, or the host's available memory (None: unknown)."""
    if getattr(device, "type", "cpu") == "cuda":
        import torch

        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def estimate_bytes(cfg: Any, registry: Any) -> int | None:
    """The memory one run of ``cfg`` needs, roughly, from the plugins' optional size hooks (None: no estimate)."""
    task_cls = registry.get("task", cfg.task.name)
    model_cls = registry.get("model", cfg.model.name)
    if not task_cls.supports("memory-estimate"):
        return None
    task_params = task_cls.Params.model_validate(cfg.task.params)
    spec, n = task_cls.data_size(task_params)
    total = n * (spec.positions + 2) * INT_BYTES  # inputs, labels and the split's index tensors
    if model_cls.supports("memory-estimate"):
        n_params, per_input = model_cls.size(model_cls.Params.model_validate(cfg.model.params), spec)
        float_bytes = 8 if cfg.train.dtype == "float64" else 4
        batch = n if cfg.train.batch_size is None else min(n, cfg.train.batch_size)
        total += float_bytes * (PARAM_COPIES * n_params + per_input * max(batch, 1))
    return int(total)


def check_runnable(cfgs: Iterable[Any], registry: Any) -> None:
    """Refuse, before anything is trained or written, a device torch lacks or a run too large for memory."""
    from .building import resolve_device

    devices: dict[str, tuple[Any, int | None]] = {}  # device name -> (torch device, bytes available)
    for cfg in cfgs:
        name = cfg.train.device
        if name not in devices:
            device = resolve_device(name)
            devices[name] = (device, available_bytes(device))
        device, free = devices[name]
        need = estimate_bytes(cfg, registry)
        if need is not None and free is not None and need > free:
            raise ConfigError(
                f"{cfg.task.name}/{cfg.model.name} with task {_compact(cfg.task.params)} and model {_compact(cfg.model.params)} "
                f"needs about {_human(need)} of memory, more than the {_human(free)} available on {device}; make it smaller"
            )


def _compact(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items() if v is not None) or "defaults"
