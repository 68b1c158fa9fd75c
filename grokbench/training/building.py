"""Building a run: a resolved configuration's plugins and device, then its task data, model, optimizer,
regularizer and metrics, each checked against the contract before training (a ConfigError naming the plugin)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from grokbench.config.run import COMPONENT_KINDS, RunConfig
from grokbench.errors import ConfigError
from grokbench.plugin.conformance import check_model, check_task_data
from grokbench.plugin.contracts import TaskData
from grokbench.plugin.registry import Entry, Registry


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"invalid device '{name}' (use cpu, cuda, cuda:N or auto)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device '{name}' is not available: torch sees no CUDA device")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(f"device '{name}' is not available: torch sees {torch.cuda.device_count()} CUDA device(s)")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device '{name}' (use cpu, cuda, cuda:N or auto)")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"device '{name}' is not available: torch sees no MPS device (use cpu, cuda, cuda:N or auto)")
    return device


@dataclass
class Prepared:
    """One configuration: its plugins and device (:func:`start`), then its components, built and checked (:func:`build`)."""

    cfg: RunConfig
    registry: Registry
    entries: dict[str, Entry]
    metric_entries: dict[str, Entry]
    plugins: dict[str, Any]
    device: torch.device
    task: Any = None
    data: Any = None
    model: Any = None
    optimizer: Any = None
    regularizer: Any = None
    metrics: list[Any] = field(default_factory=list)

    def components(self) -> dict[str, Entry]:
        """Every component's registry entry (metrics as ``metric:<name>``), to name the plugin behind a failure."""
        return {**self.entries, **{f"metric:{name}": e for name, e in self.metric_entries.items()}}


def start(cfg: RunConfig, registry: Registry) -> Prepared:
    """Resolve the configuration's plugins and device: what even a run that fails to build records."""
    entries = {kind: registry.entry(kind, c.name) for kind in COMPONENT_KINDS if (c := getattr(cfg, kind)) is not None}
    metric_entries = {name: registry.entry("metric", name) for name in cfg.metrics}
    plugins = {kind: {"name": e.name, **e.plugin.provenance()} for kind, e in entries.items()}
    plugins["metrics"] = {name: e.plugin.provenance() for name, e in metric_entries.items()}
    if preset := registry.preset_provenance(cfg.preset, cfg.task.name, cfg.model.name):
        plugins["preset"] = preset
    return Prepared(cfg, registry, entries, metric_entries, plugins, resolve_device(cfg.train.device))


def build(prep: Prepared) -> Prepared:
    """Build task, data, model, metrics, optimizer and regularizer into ``prep`` (a ConfigError propagates).

    The metrics are attached last, so that a run whose building fails records no metric summaries."""
    cfg = prep.cfg
    dtype = getattr(torch, cfg.train.dtype)

    def make(kind: str, **kwargs: Any) -> Any:
        if kind not in prep.entries:
            return None  # no optimizer nor regularizer for a closed-form model
        cls = prep.entries[kind].component
        return cls(prep.registry.params(cls, getattr(cfg, kind).params), **kwargs)

    torch.manual_seed(cfg.seed)
    prep.task = make("task")
    data = prep.task.make_data(cfg.seed)
    check_task_data(data, prep.entries["task"])
    if cfg.train.validation_fraction > 0:
        data = split_validation(prep.task, data, cfg, prep.entries["task"])
    prep.data = data.to(prep.device, dtype)
    generator = torch.Generator().manual_seed(cfg.seed)
    prep.model = make("model", spec=prep.data.spec, generator=generator, device=prep.device, dtype=dtype)
    check_model(prep.model, prep.data, prep.entries["model"], cfg.train.batch_size)
    metrics = []
    for name, params in cfg.metrics.items():
        cls = prep.metric_entries[name].component
        metric = cls(prep.registry.params(cls, params))
        metric.check(prep.task, prep.model)
        metrics.append(metric)
    prep.optimizer, prep.regularizer = make("optimizer"), make("regularizer")
    prep.metrics = metrics
    return prep


def split_validation(task: Any, data: TaskData, cfg: RunConfig, entry: Entry) -> TaskData:
    """The task's data with its validation split (``train.validation_fraction`` of the held-out examples, seeded by
    the run's seed), checked: a ConfigError naming the plugin when the task has no such split or returns none."""
    if not task.supports("validation"):
        raise ConfigError(
            f"task '{cfg.task.name}' has no validation split (it does not declare capability 'validation'): "
            "leave train.validation_fraction at 0 for it"
        )
    split = task.split_validation(data, cfg.train.validation_fraction, cfg.seed)
    check_task_data(split, entry)
    if not isinstance(split.x_val, torch.Tensor) or not isinstance(split.y_val, torch.Tensor) or not len(split.x_val):
        raise ConfigError(
            f"task '{cfg.task.name}' from plugin {entry.plugin.label} violates the contract: split_validation "
            "returned no validation examples"
        )
    return split


def prepare(cfg: RunConfig, registry: Registry) -> Prepared:
    """:func:`start` then :func:`build`: a configuration ready to train."""
    return build(start(cfg, registry))
