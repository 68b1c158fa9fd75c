"""The strict pydantic base model of grokbench's own configuration, and the one formatter of its errors."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ConfigError


class StrictModel(BaseModel):
    """Unknown keys are an error; values are frozen. Base of component ``Params``, run and suite configuration."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def key_path(where: str, loc: tuple[Any, ...]) -> str:
    """``("task", ("p",))`` -> ``task.p``; list indices as ``[i]``."""
    out = where
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def validation_error(exc: ValidationError, where: str = "", *, unknown: str = "unknown key '{key}'") -> ConfigError:
    """The first error of ``exc`` as one line: unknown key, missing key, or invalid value (with the value given).

    ``where`` prefixes the key (``task`` -> ``task.p``); ``unknown`` words an unknown key."""
    err = exc.errors()[0]
    key = key_path(where, tuple(err["loc"])) or where
    if err["type"] == "extra_forbidden":
        return ConfigError(unknown.format(key=key))
    if err["type"] == "missing":
        return ConfigError(f"missing key '{key}'")
    got = err.get("input")
    shown = f" (got {got!r})" if not isinstance(got, (dict, list)) else ""
    return ConfigError(f"invalid value for {key}: {err['msg']}{shown}")
