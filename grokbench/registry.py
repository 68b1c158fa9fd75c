"""What the plugins registered: components by kind and name, each with the plugin behind it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .contracts import Executor, Logger, Metric, Model, Optimizer, Preset, Regularizer, Task
from .errors import ConfigError, unknown_name

#: kind -> (registration hook, base class)
KINDS: dict[str, tuple[str, type]] = {
    "task": ("register_tasks", Task),
    "model": ("register_models", Model),
    "regularizer": ("register_regularizers", Regularizer),
    "optimizer": ("register_optimizers", Optimizer),
    "metric": ("register_metrics", Metric),
    "preset": ("register_presets", Preset),
    "executor": ("register_executors", Executor),
    "logger": ("register_loggers", Logger),
}


@dataclass
class PluginInfo:
    """One plugin: where it came from and what it registered (or why it is broken)."""

    name: str
    distribution: str | None = None
    version: str | None = None
    error: str | None = None
    registered: list[tuple[str, str]] = field(default_factory=list)
    #: the entry point's target ("package.module"), when it came from one
    module: str | None = None
    #: skipped because GROKBENCH_DISABLE_PLUGINS names it
    disabled: bool = False

    @property
    def label(self) -> str:
        if self.distribution:
            return f"{self.name} ({self.distribution} {self.version})"
        return self.name

    def provenance(self) -> dict[str, Any]:
        return {"plugin": self.name, "distribution": self.distribution, "version": self.version}


@dataclass
class Entry:
    """A registered component (a class, or a Preset instance) and its plugin."""

    kind: str
    name: str
    component: Any
    plugin: PluginInfo


def preset_key(preset: Preset) -> str:
    return f"{preset.name}[{preset.task or '*'}/{preset.model or '*'}]"


def validate_component(kind: str, obj: Any) -> str:
    """Check that ``obj`` fits the contract of ``kind``; return its registry key."""
    _, base = KINDS[kind]
    if kind == "preset":
        if not isinstance(obj, Preset):
            raise TypeError(f"register_presets expects Preset instances, got {obj!r}")
        return preset_key(obj)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise TypeError(f"{KINDS[kind][0]} expects subclasses of {base.__module__}.{base.__name__}, got {obj!r}")
    name = getattr(obj, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{obj.__name__} has no 'name'")
    from pydantic import BaseModel

    if not (isinstance(obj.Params, type) and issubclass(obj.Params, BaseModel)):
        raise TypeError(f"{obj.__name__}.Params must be a pydantic model")
    if obj.Params.model_config.get("extra") != "forbid":
        raise TypeError(f"{obj.__name__}.Params must reject unknown keys (extra='forbid'; subclass grokbench.contracts.Params)")
    if kind == "logger" and not (isinstance(obj.requires, tuple) and all(isinstance(m, str) for m in obj.requires)):
        raise TypeError(f"{obj.__name__}.requires must be a tuple of module names")
    return name


class Registry:
    """Components by kind and name, the plugins that provided them, and the broken ones."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.conflicts: dict[str, dict[str, list[PluginInfo]]] = {kind: {} for kind in KINDS}
        self.plugins: list[PluginInfo] = []

    def add_plugin(self, info: PluginInfo, staged: list[tuple[str, str, Any]]) -> None:
        """Add one plugin's registrations; a name another plugin already holds becomes a conflict."""
        self.plugins.append(info)
        for kind, key, obj in staged:
            info.registered.append((kind, key))
            if key in self.conflicts[kind]:
                self.conflicts[kind][key].append(info)
            elif key in self.entries[kind]:
                first = self.entries[kind].pop(key)
                self.conflicts[kind][key] = [first.plugin, info]
            else:
                self.entries[kind][key] = Entry(kind, key, obj, info)

    def names(self, kind: str) -> list[str]:
        return sorted(set(self.entries[kind]) | set(self.conflicts[kind]))

    def entry(self, kind: str, name: str) -> Entry:
        if name in self.conflicts[kind]:
            owners = " and ".join(p.label for p in self.conflicts[kind][name])
            raise ConfigError(f"{kind} '{name}' is registered by more than one plugin: {owners}; uninstall or disable one")
        try:
            return self.entries[kind][name]
        except KeyError:
            raise unknown_name(kind, name, self.names(kind)) from None

    def get(self, kind: str, name: str) -> Any:
        return self.entry(kind, name).component

    def presets_for(self, name: str, task: str, model: str) -> list[Entry]:
        """Presets called ``name`` that apply to this task and model, most general first."""
        found = [
            e
            for e in self.entries["preset"].values()
            if e.component.name == name
            and e.component.task in (None, task)
            and e.component.model in (None, model)
        ]
        return sorted(found, key=lambda e: (e.component.task is not None) + (e.component.model is not None))

    def preset_names(self) -> list[str]:
        return sorted({e.component.name for e in self.entries["preset"].values()})

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]
