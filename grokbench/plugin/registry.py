"""What the plugins registered: components by kind and name, each with the plugin behind it."""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from grokbench.errors import ConfigError, unknown_name
from grokbench.plugin.benchmark_file import read_benchmark_spec
from grokbench.plugin.contracts import (
    BenchmarkFile,
    Executor,
    Logger,
    Metric,
    Model,
    Optimizer,
    Preset,
    Regularizer,
    Task,
)

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
    "benchmark": ("register_benchmarks", BenchmarkFile),
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
    #: contract notices: what to change before the next plugin contract refuses it (it works meanwhile)
    notices: list[str] = field(default_factory=list)

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
    """Check that ``obj`` fits the contract of ``kind``; return its registry key.

    A component class is checked by its own :meth:`~grokbench.plugin.contracts.Component.check_class`
    (name, Params, required methods, declared capabilities), which raises ``TypeError``."""
    _, base = KINDS[kind]
    if kind == "benchmark":
        if not isinstance(obj, BenchmarkFile):
            raise TypeError(f"register_benchmarks expects BenchmarkFile instances, got {obj!r}")
        return read_benchmark_spec(obj.path).benchmark.name
    if kind == "preset":
        if not isinstance(obj, Preset):
            raise TypeError(f"register_presets expects Preset instances, got {obj!r}")
        obj.space()  # ValueError naming the key of an invalid search space
        return preset_key(obj)
    if not (isinstance(obj, type) and issubclass(obj, base)):
        raise TypeError(
            f"{KINDS[kind][0]} expects subclasses of grokbench.plugin.contracts.{base.__name__}, got {obj!r}"
        )
    component: Any = obj
    component.check_class()
    return str(component.name)


def split_name(name: str) -> tuple[str | None, str]:
    """``"plugin:name"`` -> ``("plugin", "name")``; ``"name"`` -> ``(None, "name")``."""
    plugin, sep, rest = name.partition(":")
    return (plugin, rest) if sep else (None, name)


class Registry:
    """Components by kind and name, the plugins that provided them, and the broken ones."""

    def __init__(self) -> None:
        self.entries: dict[str, dict[str, Entry]] = {kind: {} for kind in KINDS}
        self.conflicts: dict[str, dict[str, list[PluginInfo]]] = {kind: {} for kind in KINDS}
        self.plugins: list[PluginInfo] = []
        #: every registration by (kind, plugin name, component name), clashing ones included
        self.qualified: dict[str, dict[tuple[str, str], Entry]] = {kind: {} for kind in KINDS}

    def add_plugin(self, info: PluginInfo, staged: list[tuple[str, str, Any]]) -> None:
        """Add one plugin's registrations; a name another plugin already holds becomes a conflict."""
        self.plugins.append(info)
        for kind, key, obj in staged:
            info.registered.append((kind, key))
            self.qualified[kind][(info.name, key)] = Entry(kind, key, obj, info)
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
        """The component ``name``, or ``plugin:name`` to pick one plugin's (resolves a clash)."""
        plugin, bare = split_name(name)
        if plugin is not None:
            found = self.qualified[kind].get((plugin, bare))
            if found is None:
                raise self._unknown(kind, name, [f"{p}:{n}" for p, n in self.qualified[kind]])
            return found
        if name in self.conflicts[kind]:
            owners = " and ".join(p.label for p in self.conflicts[kind][name])
            choices = " or ".join(f"'{p.name}:{name}'" for p in self.conflicts[kind][name])
            raise ConfigError(
                f"{kind} '{name}' is registered by more than one plugin: {owners}; name one as {choices}, or disable one"
            )
        try:
            return self.entries[kind][name]
        except KeyError:
            raise self._unknown(kind, name, self.names(kind)) from None

    def _unknown(self, kind: str, name: str, known: list[str]) -> ConfigError:
        """The unknown-name error, naming the plugins that failed to load (one of them may provide ``name``)."""
        error = unknown_name(kind, name, known)
        broken = "; ".join(f"plugin '{p.name}' {p.error}" for p in self.broken)
        return ConfigError(f"{error}; {broken}") if broken else error

    def get(self, kind: str, name: str) -> Any:
        return self.entry(kind, name).component

    def params(self, component: Any, raw: Mapping[str, Any]) -> Any:
        """``component.Params`` validated from ``raw``. A validator that looks up other plugins (a kernel model's
        network) finds this registry in pydantic's validation context, under ``"registry"``."""
        return component.Params.model_validate(dict(raw), context={"registry": self})

    def presets_for(self, name: str, task: str, model: str) -> list[Entry]:
        """Presets called ``name`` (or ``plugin:name``: that plugin's only) that apply to this task and model,
        most general first (``task`` and ``model`` may be qualified names too)."""
        plugin, name = split_name(name)
        task, model = split_name(task)[1], split_name(model)[1]
        found = [
            e
            for e in self.entries["preset"].values()
            if e.component.name == name
            and plugin in (None, e.plugin.name)
            and e.component.task in (None, task)
            and e.component.model in (None, model)
        ]
        return sorted(found, key=lambda e: (e.component.task is not None) + (e.component.model is not None))

    def preset_provenance(self, name: str | None, task: str, model: str) -> dict[str, Any] | None:
        """What a run records of its method preset ``name``: the preset, and the plugin, distribution and version
        of its most specific registration for this task and model (None without a preset)."""
        found = self.presets_for(name, task, model) if name else []
        return {"name": name, **found[-1].plugin.provenance()} if found else None

    def preset_names(self) -> list[str]:
        return sorted({e.component.name for e in self.entries["preset"].values()})

    @property
    def broken(self) -> list[PluginInfo]:
        return [p for p in self.plugins if p.error]


def logger_class(name: str, registry: Registry) -> Any:
    """The logger plugin ``name``, its extra checked (ConfigError for an unknown one or a missing module)."""
    cls = registry.get("logger", name)
    missing = [m for m in cls.requires if importlib.util.find_spec(m) is None]
    if missing:
        extra = f"pip install 'grokbench[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"
        raise ConfigError(f"logger '{name}' needs {', '.join(missing)}, which is not installed: {extra}")
    return cls
