"""Run configuration: the pydantic models, ``--set KEY=VALUE`` overrides, and resolution.

Layers override in order: each component's parameter defaults, the preset, ``--set`` overrides, explicit options
(``--regularizer``, ``--seed``, ...). The result is validated against every component's ``Params`` and frozen into a
:class:`RunConfig` whose hash identifies the run."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import Field, PositiveInt, ValidationError

from grokbench.config.bounds import check_count
from grokbench.errors import ConfigError
from grokbench.plugin.registry import Registry
from grokbench.strict import StrictModel, check_values, validation_error

COMPONENT_KINDS = ("task", "model", "regularizer", "optimizer")
#: the kinds a model trained in closed form does without
TRAINING_KINDS = ("regularizer", "optimizer")


class ComponentConfig(StrictModel):
    """A component by name with its (fully resolved) parameters."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)


class TrainConfig(StrictModel):
    """How a model is trained and evaluated (the same for every task and model)."""

    steps: PositiveInt = 1000
    eval_every: PositiveInt = 50
    batch_size: PositiveInt | None = Field(None, description="minibatch size; None trains full batch")
    memorize_threshold: float = Field(0.99, gt=0, le=1, description="train accuracy that counts as memorized")
    generalize_threshold: float = Field(0.99, gt=0, le=1, description="test accuracy that counts as generalized")
    early_stop: bool = Field(
        False,
        description="stop once test accuracy (and validation accuracy, with a validation split) has reached "
        "generalize_threshold at generalize_evals consecutive evaluations",
    )
    generalize_evals: PositiveInt = Field(
        1, description="consecutive evaluations at generalize_threshold that count as generalized (for early_stop)"
    )
    validation_fraction: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="share of the held-out examples split off as a validation set, disjoint from the test set "
        "(tasks with capability validation; 0: none)",
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:N or auto")
    dtype: Literal["float32", "float64"] = "float32"
    checkpoint_every: PositiveInt | None = Field(
        None,
        description="also save a checkpoint every N evaluations (not part of the run's identity: left out of its hash)",
    )
    stop_on_stall: bool = Field(
        False,
        description="end a full-batch run whose state repeats (a fixed point or a short cycle, exactly or within 1e-5 "
        "with accuracies unchanged and losses within 1e-3 over 10 evaluations) with status stalled",
    )
    flush_denormal: bool = Field(
        False, description="flush subnormal floats to zero on the CPU while training (torch.set_flush_denormal)"
    )

    #: options added after stores existed: left out of the config hash (and variant) while at their default, so
    #: older runs keep their identity
    HASH_OMIT_WHEN_OFF: ClassVar[tuple[str, ...]] = (
        "stop_on_stall",
        "flush_denormal",
        "generalize_evals",
        "validation_fraction",
    )

    @classmethod
    def omit_defaults(cls, train: dict[str, Any]) -> dict[str, Any]:
        """``train`` (a dumped TrainConfig) without the options of :attr:`HASH_OMIT_WHEN_OFF` at their default."""
        return {k: v for k, v in train.items() if k not in cls.HASH_OMIT_WHEN_OFF or v != cls.model_fields[k].default}


class RunConfig(StrictModel):
    """Everything that determines a run; its hash is the run's identity in the store."""

    task: ComponentConfig
    model: ComponentConfig
    #: None for a model trained in closed form (capability ``closed-form``), which takes neither
    regularizer: ComponentConfig | None
    optimizer: ComponentConfig | None
    metrics: dict[str, dict[str, Any]] = Field(default_factory=dict)
    train: TrainConfig = TrainConfig()
    seed: int = 0
    preset: str | None = None

    def name_of(self, kind: str) -> str:
        """The component's name, ``-`` for the optimizer and regularizer of a closed-form model (which has none)."""
        component = getattr(self, kind)
        return "-" if component is None else str(component.name)

    def canonical_json(self) -> str:
        """The configuration as canonical JSON, without the preset's name (which values came from),
        ``train.checkpoint_every`` (which changes no number), and the options of ``HASH_OMIT_WHEN_OFF`` while
        they are off, so that none of them changes the run's identity."""
        tree = self.model_dump(mode="json", exclude={"preset": True, "train": {"checkpoint_every"}})
        tree["train"] = TrainConfig.omit_defaults(tree["train"])
        return json.dumps(tree, sort_keys=True, separators=(",", ":"))

    @property
    def variant(self) -> str:
        """The hash with the seed left out: runs of one variant differ only in their seed."""
        return variant_of(self.model_dump(mode="json"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]


def variant_of(config: Mapping[str, Any]) -> str:
    """The variant hash of a stored configuration (``RunConfig.model_dump(mode="json")``): the config hash
    with the seed (and the preset's name) left out, and the train options of ``TrainConfig.HASH_OMIT_WHEN_OFF`` at
    their default (so a record stored before an option existed has the variant of one stored after). The one
    definition, for runs and stored records alike."""
    canonical = {k: v for k, v in config.items() if k != "preset"} | {"seed": 0}
    if isinstance(canonical.get("train"), Mapping):
        canonical["train"] = TrainConfig.omit_defaults(dict(canonical["train"]))
    return hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]


# ----------------------------------------------------------------- --set parsing


def parse_value(text: str) -> Any:
    """A ``--set`` value: JSON where it parses (numbers, booleans, null, lists), else the plain string."""
    try:
        return json.loads(text)
    except ValueError:  # not JSON (or an integer of more digits than Python converts): the plain string
        return text


def parse_assignments(items: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``["task.p=97", "train.steps=10"]`` -> nested dict; malformed items are a ConfigError."""
    tree: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        parts = key.split(".")
        if not sep or not key or any(not p for p in parts):
            raise ConfigError(f"malformed --set '{item}': expected KEY=VALUE with a dotted key such as task.p=97")
        node = tree
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"malformed --set '{item}': '{part}' is given both a value and sub-keys")
        node[parts[-1]] = parse_value(raw)
    return tree


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def nest(dotted: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    tree: dict[str, Any] = {}
    for key, value in dotted.items():
        node = tree
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def parse_seeds(text: str, max_runs: int | None = None) -> list[int]:
    """``"0-15"`` -> 0..15; ``"0,3,5"`` -> [0, 3, 5]; ranges and lists mix (``"0-3,7"``). Repeats are an error,
    and so are more than ``max_runs`` seeds (default :data:`grokbench.config.bounds.MAX_RUNS`), before any list grows."""
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if dash else int(lo)
        except ValueError:
            raise ConfigError(
                f"invalid seeds '{text}': expected a range such as 0-15 or a list such as 0,3,5"
            ) from None
        if last < first:
            raise ConfigError(f"invalid seeds '{text}': the range {part.strip()} is empty")
        check_values({"seeds": [first, last]})
        check_count(len(seeds) + last - first + 1, max_runs, f"--seeds {text}")
        seeds.extend(range(first, last + 1))
    if len(set(seeds)) != len(seeds):
        raise ConfigError(f"invalid seeds '{text}': a seed is repeated")
    return seeds


# -------------------------------------------------------------------- resolution


def _validate_params(registry: Registry, kind: str, name: str, raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    cls = registry.get(kind, name)
    try:
        params = registry.params(cls, raw)
    except ValidationError as exc:
        raise validation_error(exc, where, model=cls.Params) from None
    return params.model_dump(mode="json")


def resolve_config(
    registry: Registry,
    *,
    task: str,
    model: str,
    regularizer: str | None = None,
    optimizer: str | None = None,
    preset: str | None = None,
    overrides: Mapping[str, Any] | None = None,
    seed: int | None = None,
    device: str | None = None,
) -> RunConfig:
    """Build and validate a RunConfig from names, a preset and overrides (see the module docstring)."""
    registry.get("task", task)
    registry.get("model", model)
    preset_name, from_preset = _preset_settings(registry, preset, task, model)
    overrides = dict(overrides or {})
    tree = deep_merge(from_preset or {}, overrides)
    check_values({**tree, "seed": seed} if seed is not None else tree)  # before any plugin validates a value
    unknown = set(tree) - set(COMPONENT_KINDS) - {"metrics", "train", "seed"}
    if unknown:
        raise ConfigError(
            f"unknown key '{sorted(unknown)[0]}' (top-level keys: task, model, regularizer, optimizer, metrics, train, seed)"
        )
    explicit = {"task": task, "model": model, "regularizer": regularizer, "optimizer": optimizer}
    components: dict[str, ComponentConfig | None] = dict.fromkeys(TRAINING_KINDS)
    chosen = {
        kind: _chosen(kind, explicit[kind], (from_preset or {}).get(kind, {}), overrides.get(kind, {}))
        for kind in _kinds(registry, model, explicit, overrides)
    }
    for kind, (name, raw) in chosen.items():
        components[kind] = ComponentConfig(name=name, params=_validate_params(registry, kind, name, raw, kind))
    metrics = _resolve_metrics(registry, tree.get("metrics"))
    train_raw = tree.get("train", {})
    if device is not None:
        train_raw = {**train_raw, "device": device}
    try:
        train_cfg = TrainConfig.model_validate(train_raw)
    except ValidationError as exc:
        raise validation_error(exc, "train", model=TrainConfig) from None
    if train_cfg.validation_fraction > 0 and not registry.get("task", task).supports("validation"):
        raise ConfigError(
            f"task '{task}' has no validation split (it does not declare capability 'validation'): "
            "leave train.validation_fraction at 0 for it"
        )
    run_seed = seed if seed is not None else tree.get("seed", 0)
    if not isinstance(run_seed, int) or isinstance(run_seed, bool):
        raise ConfigError(f"invalid value for seed: expected an integer (got {run_seed!r})")
    return RunConfig(
        **components,
        metrics=metrics,
        train=train_cfg,
        seed=run_seed,
        preset=preset_name if from_preset is not None else None,
    )


def _preset_settings(
    registry: Registry, preset: str | None, task: str, model: str
) -> tuple[str, dict[str, Any] | None]:
    """The preset's name (``default`` unless one is named) and its merged settings (None: no preset applies)."""
    if preset is not None and not preset.strip():
        raise ConfigError("invalid preset '': a preset name must not be empty (omit it for 'default')")
    name = preset or "default"
    entries = registry.presets_for(name, task, model)
    if preset and not entries:
        names = registry.preset_names()
        raise ConfigError(
            f"no preset '{preset}' for task '{task}' and model '{model}'"
            + (f" (presets: {', '.join(names)})" if names else "")
        )
    if not entries:
        return name, None
    settings: dict[str, Any] = {}
    for entry in entries:
        settings = deep_merge(settings, entry.component.settings)
    return name, settings


def _kinds(
    registry: Registry, model: str, explicit: Mapping[str, str | None], overrides: Mapping[str, Any]
) -> list[str]:
    """The component kinds this run has: a closed-form model has no optimizer nor regularizer (naming one is an error)."""
    if not registry.get("model", model).supports("closed-form"):
        return list(COMPONENT_KINDS)
    for kind in TRAINING_KINDS:
        if explicit[kind] or overrides.get(kind):
            raise ConfigError(
                f"model '{model}' is trained in closed form and takes no {kind} (drop the {kind} from the run's options)"
            )
    return [k for k in COMPONENT_KINDS if k not in TRAINING_KINDS]


def _chosen(kind: str, explicit: str | None, preset_section: Any, override_section: Any) -> tuple[str, dict[str, Any]]:
    """The component of ``kind`` (named explicitly, by ``--set KIND.name`` or by the preset) and its raw parameters:
    the preset's, when it names this component, under the overrides."""
    for section in (preset_section, override_section):
        if not isinstance(section, Mapping):
            raise ConfigError(f"invalid value for {kind}: expected parameters, got {section!r}")
    preset_sec, over_sec = dict(preset_section), dict(override_section)
    chosen = explicit or over_sec.pop("name", None) or preset_sec.get("name")
    if not chosen:
        raise ConfigError(f"no {kind} given and no preset names one: pass --{kind} NAME")
    if not isinstance(chosen, str):
        raise ConfigError(f"invalid value for {kind}.name: expected a {kind} name (got {chosen!r})")
    over_sec.pop("name", None)
    # a preset's parameters belong to the component it names: drop them when another one is chosen
    if preset_sec.pop("name", chosen) != chosen:
        preset_sec = {}
    return chosen, deep_merge(preset_sec, over_sec)


def _resolve_metrics(registry: Registry, raw: Any) -> dict[str, dict[str, Any]]:
    """Default metrics, plus those named in ``raw``; a metric set to false or null is removed."""
    selected: dict[str, Any] = {n: {} for n, e in registry.entries["metric"].items() if e.component.default}
    if raw is None:
        raw = {}
    if isinstance(raw, list):
        raw = {name: {} for name in raw}
    if not isinstance(raw, dict):
        raise ConfigError(f"invalid value for metrics: expected metric names (got {raw!r})")
    for name, params in raw.items():
        if params is False or params is None:
            registry.get("metric", name)
            selected.pop(name, None)
        elif params is True:
            selected.setdefault(name, {})
        elif isinstance(params, dict):
            selected[name] = params
        else:
            raise ConfigError(f"invalid value for metrics.{name}: expected true, false or parameters (got {params!r})")
    return {
        name: _validate_params(registry, "metric", name, params, f"metrics.{name}")
        for name, params in sorted(selected.items())
    }
