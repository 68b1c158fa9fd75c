"""Benchmarks: a benchmark file's tracks checked against the registry, and each method expanded into a suite."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from grokbench.config.run import TrainConfig, deep_merge
from grokbench.config.suites import EntrySpec, PlannedRun, Suite, SuiteMeta, SuiteSpec, expand
from grokbench.errors import ConfigError
from grokbench.plugin.benchmark_file import BenchmarkSpec, TrackSpec, read_benchmark_spec
from grokbench.plugin.registry import Registry
from grokbench.strict import validation_error

#: what a method (preset) may set; everything else is the track's
METHOD_KEYS = {"optimizer": None, "regularizer": None, "task": {"loss"}}


#: what a track may not set (it belongs to the method)
TRACK_FORBIDDEN = ("optimizer", "regularizer", "task.loss", "preset")


@dataclass(frozen=True)
class MethodPlan:
    """One method on the benchmark: its suite (the applicable tracks) and the tracks it does not apply to."""

    method: str
    suite: Suite
    not_applicable: dict[str, str]  # track -> why


@dataclass(frozen=True)
class Benchmark:
    spec: BenchmarkSpec
    source: str

    @property
    def name(self) -> str:
        return self.spec.benchmark.name

    @property
    def tracks(self) -> list[str]:
        return [t.name for t in self.spec.tracks]

    @property
    def key(self) -> str:
        """``NAME@vVERSION``: a method's plan is stored per benchmark version, so a version 2 of the same name
        never replaces version 1's."""
        return f"{self.name}@v{self.spec.benchmark.version}"

    @property
    def digest(self) -> str:
        """The SHA-256 of the file's validated content (its formatting and comments aside), stored with each plan."""
        text = json.dumps(self.spec.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def suite_name(self, method: str) -> str:
        return f"{self.key}/{method}"

    def track(self, name: str) -> TrackSpec:
        for t in self.spec.tracks:
            if t.name == name:
                return t
        raise ConfigError(f"{self.source}: no track '{name}' (tracks: {', '.join(self.tracks)})")

    def merged(self, track: TrackSpec) -> TrackSpec:
        """A track with the defaults filled in."""
        d = self.spec.defaults
        return track.model_copy(
            update={
                "task": track.task or d.task,
                "model": track.model or d.model,
                "set": deep_merge(d.set, track.set),
                "seeds": track.seeds or d.seeds or self.spec.benchmark.seeds,
            }
        )

    def plan(
        self,
        method: str,
        registry: Registry,
        tracks: list[str] | None = None,
        *,
        specs: list[TrackSpec] | None = None,
        suite: str | None = None,
    ) -> MethodPlan:
        """Expand one method over the tracks (all, or those named; or the merged track ``specs`` a study derives:
        trials, variants) into a suite (named ``suite``, by default the method's); ConfigError on bad input."""
        check_method(method, registry)
        entries, skipped = [], {}
        for track in specs if specs is not None else [self.merged(self.track(n)) for n in tracks or self.tracks]:
            assert track.task and track.model  # checked by load_benchmark
            why = not_applicable(method, track.task, track.model, track.set.get("task", {}), registry)
            if why:
                skipped[track.name] = why
                continue
            entries.append(
                EntrySpec(
                    name=track.name,
                    task=track.task,
                    model=track.model,
                    preset=method,
                    set=track.set,
                    seeds=track.seeds,
                )
            )
        meta = SuiteMeta(
            name=self.name,
            description=f"{self.name} v{self.spec.benchmark.version}, method {method}",
            seeds=self.spec.benchmark.seeds,
        )
        runs: list[PlannedRun] = []
        if entries:
            spec = SuiteSpec(suite=meta, entries=entries)
            try:
                runs = expand(spec, registry, self.source)
            except ConfigError as exc:
                raise ConfigError(f"method '{method}': {exc}") from None
        else:
            spec = SuiteSpec.model_construct(suite=meta, entries=[])
        return MethodPlan(method, Suite(suite or self.suite_name(method), self.source, spec, runs), skipped)


def check_method(method: str, registry: Registry) -> None:
    """A method is a preset that sets only optimizer, regularizer and task.loss (ConfigError otherwise)."""
    presets = [e.component for e in registry.entries["preset"].values() if e.component.name == method]
    if not presets:
        methods = sorted(n for n in registry.preset_names() if is_method(n, registry))
        raise ConfigError(f"unknown method '{method}' (a method is a preset; methods: {', '.join(methods)})")
    for preset in presets:
        bad = method_key_error(preset.settings)
        if bad:
            raise ConfigError(
                f"preset '{method}' is not a method: it sets '{bad}', which a track fixes (a method sets only optimizer, regularizer, task.loss)"
            )
        for kind in ("optimizer", "regularizer"):
            if preset.task is None and preset.model is None and "name" not in preset.settings.get(kind, {}):
                raise ConfigError(f"preset '{method}' is not a method: it names no {kind}")
    for entry in registry.entries["preset"].values():
        if entry.component.name == method:
            _check_method_components(method, entry, registry)


def _check_method_components(method: str, entry: Any, registry: Registry) -> None:
    """The optimizer and regularizer a method's preset names exist and take its values: a ConfigError naming the
    method and its plugin otherwise (a method's mistake, not a track's)."""
    for kind in ("optimizer", "regularizer"):
        section = dict(entry.component.settings.get(kind, {}))
        name = section.pop("name", None)
        if name is None:
            continue
        try:
            cls = registry.get(kind, name)
            registry.params(cls, section)
        except ConfigError as exc:
            raise ConfigError(f"method '{method}' (a preset of plugin {entry.plugin.label}): {exc}") from None
        except ValidationError as exc:
            error = validation_error(exc, kind, model=cls.Params)
            raise ConfigError(f"method '{method}' (a preset of plugin {entry.plugin.label}): {error}") from None


def method_key_error(settings: Any) -> str | None:
    """The first key of ``settings`` a method may not set, or None."""
    for key, value in settings.items():
        if key not in METHOD_KEYS:
            return key
        allowed = METHOD_KEYS[key]
        if allowed is not None:
            extra = sorted(set(value) - allowed)
            if extra:
                return f"{key}.{extra[0]}"
    return None


def is_method(name: str, registry: Registry) -> bool:
    try:
        check_method(name, registry)
    except ConfigError:
        return False
    return True


def not_applicable(method: str, task: str, model: str, task_set: dict[str, Any], registry: Registry) -> str | None:
    """Why ``method`` cannot run on this task and model (None when it can).

    It cannot when no preset of that name applies to the task and model, or when the
    task does not accept the method's task settings (StableMax on a regression task).
    """
    presets = registry.presets_for(method, task, model)
    if not presets:
        return f"no preset '{method}' for task '{task}' and model '{model}'"
    wanted: dict[str, Any] = {}
    for entry in presets:
        wanted.update(entry.component.settings.get("task", {}))
    if wanted:
        try:
            registry.params(registry.get("task", task), {**task_set, **wanted})
        except ValidationError as exc:
            err = exc.errors()[0]
            key = ".".join(str(x) for x in err["loc"]) or "task"
            return f"task '{task}' does not take {key}={wanted.get(key, '?')!r}"
    return None


def default_benchmark(registry: Registry) -> str:
    """The benchmark a command uses when none is named: the only one installed."""
    names = registry.names("benchmark")
    if len(names) == 1:
        return names[0]
    if not names:
        raise ConfigError("no benchmark is installed: name a benchmark file with --benchmark FILE")
    raise ConfigError(
        f"{len(names)} benchmarks are installed ({', '.join(names)}): name one with --benchmark NAME "
        f"(e.g. --benchmark {names[0]}); 'grokbench list' describes them"
    )


def find_benchmark(name_or_path: str | None, registry: Registry) -> Path:
    """A benchmark file's path, or the file of a benchmark a plugin registered (``grokbench-v1``)."""
    if name_or_path is None:
        name_or_path = default_benchmark(registry)
    path = Path(name_or_path)
    if path.suffix == ".toml" or os.sep in name_or_path:
        return path
    return Path(registry.get("benchmark", name_or_path).path)


def load_benchmark(name_or_path: str | None, registry: Registry) -> Benchmark:
    """Read and validate a benchmark file (by path or registered name; None: the only one installed); every
    track is checked against the registry."""
    path = find_benchmark(name_or_path, registry)
    spec = read_benchmark_spec(path)
    bench = Benchmark(spec, str(path))
    names = bench.tracks
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise ConfigError(f"{path}: track name '{dup[0]}' is used twice")
    for track in spec.tracks:
        merged = bench.merged(track)
        where = f"{path}: track '{track.name}'"
        for kind in ("task", "model"):
            if not getattr(merged, kind):
                raise ConfigError(f"{where}: no {kind} (set '{kind}' in the track or in [defaults])")
            try:
                registry.get(kind, getattr(merged, kind))
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from None
        _check_track_settings(where, merged, registry)
        for key in TRACK_FORBIDDEN:
            head, _, leaf = key.partition(".")
            node = merged.set.get(head)
            if (leaf and isinstance(node, dict) and leaf in node) or (not leaf and node is not None):
                raise ConfigError(f"{where}: sets '{key}', which belongs to the method")
    for method in {spec.benchmark.reference, *spec.benchmark.baselines}:
        if method not in registry.preset_names():
            raise ConfigError(f"{path}: method '{method}' is not a preset of any installed plugin")
    meta = spec.benchmark
    for method in meta.baselines:
        for entry in registry.entries["preset"].values():
            against = entry.component.against if entry.component.name == method else None
            if against and against not in registry.preset_names():
                raise ConfigError(f"{path}: method '{method}' is measured against '{against}', which is not a preset")
    if meta.reference not in meta.baselines:
        raise ConfigError(f"{path}: the reference '{meta.reference}' must be one of the baselines")
    for method in meta.controls:
        if method not in meta.baselines or method == meta.reference:
            raise ConfigError(f"{path}: control '{method}' must be one of the baselines, and not the reference")
    for name in meta.open:
        if name not in names:
            raise ConfigError(f"{path}: open track '{name}' is not a track (tracks: {', '.join(names)})")
    shared = sorted(set(meta.tuning_seeds or []) & set(meta.seeds))
    if shared:
        raise ConfigError(f"{path}: tuning seed {shared[0]} is also a scoring seed (the two sets must be disjoint)")
    return bench


def _check_track_settings(where: str, merged: TrackSpec, registry: Registry) -> None:
    """The track's own task, model and train values are valid (a track's mistake, not a method's)."""
    for kind in ("task", "model", "train"):
        raw = merged.set.get(kind, {})
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: invalid value for set.{kind}: expected a table (got {raw!r})")
        model: Any = TrainConfig if kind == "train" else registry.get(kind, getattr(merged, kind)).Params
        try:
            if kind == "train":
                model.model_validate(raw)
            else:
                registry.params(registry.get(kind, getattr(merged, kind)), raw)
        except ValidationError as exc:
            raise ConfigError(f"{where}: {validation_error(exc, kind, model=model)}") from None


def plan_methods(
    bench: Benchmark, methods: list[str] | None, tracks: list[str] | None, registry: Registry
) -> list[MethodPlan]:
    """Every named method (the baselines when none) over the named tracks (all when none); ConfigError on bad input."""
    for name in tracks or []:
        bench.track(name)
    chosen = list(dict.fromkeys(methods or bench.spec.benchmark.baselines))
    return [bench.plan(m, registry, tracks) for m in chosen]
