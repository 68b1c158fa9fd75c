"""What a run needs before it trains: its device and an estimate of its memory, refused when they are not there."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

from grokbench.errors import ConfigError

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


#: copies of the parameters training keeps (weights, gradients, two optimizer moments, one spare buffer)
PARAM_COPIES = 5


#: bytes of one integer of task data (torch.long)
INT_BYTES = 8


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
    task_params = registry.params(task_cls, cfg.task.params)
    spec, n = task_cls.data_size(task_params)
    total = n * (spec.positions + 2) * INT_BYTES  # inputs, labels and the split's index tensors
    if model_cls.supports("memory-estimate"):
        n_params, per_input = model_cls.size(registry.params(model_cls, cfg.model.params), spec)
        float_bytes = 8 if cfg.train.dtype == "float64" else 4
        batch = n if cfg.train.batch_size is None else min(n, cfg.train.batch_size)
        total += float_bytes * (PARAM_COPIES * n_params + per_input * max(batch, 1))
    return int(total)


def check_runnable(cfgs: Iterable[Any], registry: Any) -> None:
    """Refuse, before anything is trained or written, a device torch lacks or a run too large for memory."""
    from grokbench.training.building import resolve_device

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
