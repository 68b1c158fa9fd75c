"""The strict pydantic base model of grokbench's own configuration, and the one formatter of its errors."""

from __future__ import annotations

import difflib
import math
import sys
from collections.abc import Mapping
from typing import Any, TypeVar, get_args

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from pydantic import BaseModel, ConfigDict, ValidationError

from grokbench.errors import ConfigError

INT_MIN, INT_MAX = -(2**63), 2**63 - 1


class StrictModel(BaseModel):
    """Unknown keys are an error; values are frozen. Base of component ``Params``, run and suite configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def key_path(where: str, loc: tuple[Any, ...]) -> str:
    """``("task", ("p",))`` -> ``task.p``; list indices as ``[i]``."""
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _fields_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """The keys ``model`` takes at ``loc`` (the parent of an error's key), following nested models and lists."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        field = current.model_fields.get(part) if isinstance(current, type) and issubclass(current, BaseModel) else None
        if field is None:
            return []
        todo, current = [field.annotation], None
        while todo:  # the first model in the annotation (list[TrackSpec], TrackFields | None, ...)
            ann = todo.pop(0)
            if isinstance(ann, type) and issubclass(ann, BaseModel):
                current = ann
                break
            todo.extend(get_args(ann))
        if current is None:
            return []
    return list(current.model_fields) if isinstance(current, type) and issubclass(current, BaseModel) else []


def validation_error(
    exc: ValidationError,
    where: str = "",
    *,
    unknown: str = "unknown key '{key}'",
    model: type[BaseModel] | None = None,
) -> ConfigError:
    """The first error of ``exc`` as one line: unknown key, missing key, or invalid value (with the value given).

    An unknown key comes first (a misspelled key is missing too) and, given the ``model`` validated, is followed
    by the closest key it takes: "(did you mean 'reference'?)". ``where`` prefixes the key (``task`` ->
    ``task.p``); ``unknown`` words an unknown key."""
    errors = exc.errors()
    err = next((e for e in errors if e["type"] == "extra_forbidden"), errors[0])
    key = key_path(where, tuple(err["loc"])) or where
    if err["type"] == "extra_forbidden":
        loc = tuple(err["loc"])
        fields = _fields_at(model, loc[:-1]) if model is not None and loc else []
        close = difflib.get_close_matches(str(loc[-1]), fields, n=1, cutoff=0.6) if fields else []
        hint = f" (did you mean '{key_path(where, (*loc[:-1], close[0]))}'?)" if close else ""
        return ConfigError(unknown.format(key=key) + hint)
    if err["type"] == "missing":
        return ConfigError(f"missing key '{key}'")
    got = err.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return ConfigError(f"invalid value for {key}: {err['msg']}{shown}")


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


Spec = TypeVar("Spec", bound=StrictModel)


def parse_toml(text: str, source: str, model: type[Spec]) -> Spec:
    """Parse TOML and validate it as ``model`` (a suite, a benchmark); errors name ``source`` and the key."""
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: invalid TOML: {exc}") from None
    try:
        check_values(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: {exc}") from None
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(f"{source}: {validation_error(exc, model=model)}") from None
