"""The baseline file ``grokbench report`` writes and ``grokbench compare`` reads, validated by its schema.

A baseline that is not JSON, or JSON of the wrong shape (entries not a list, an entry without its keys,
a string where a number belongs, an unknown ``format``) is a ConfigError naming the file and the key.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from grokbench.errors import ConfigError
from grokbench.files import read_text
from grokbench.version import __version__

#: the baseline format this grokbench writes and reads
BASELINE_FORMAT = 2


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class BaselineEntry(_Strict):
    group: str
    task: str
    entry: str
    hyperparameters: dict[str, Any] = Field(default_factory=dict)
    seeds: int = Field(ge=1)
    generalized: int = Field(ge=0)
    success_rate: float = Field(ge=0, le=1)
    median_t_generalize: float | None = Field(None, ge=0)
    final_test_acc: float | None = Field(None, ge=0, le=1)
    metrics: dict[str, float | None] = Field(default_factory=dict)

    @field_validator("success_rate", "median_t_generalize", "final_test_acc", mode="before")
    @classmethod
    def _number(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            value = float(value)  # JSON writes 1.0 as 1 in some tools
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value


class Baseline(_Strict):
    format: Literal[2]
    grokbench: str
    suite: str | None = None
    compare: list[str]
    entries: list[BaselineEntry]


def load_baseline(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a baseline file; returns it as plain data."""
    text = read_text(path, "baseline file")
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{path} is not a grokbench baseline (invalid JSON: {exc})") from None
    if isinstance(raw, dict) and (raw.get("format") != BASELINE_FORMAT or raw.get("grokbench") != __version__):
        raise ConfigError(
            f"{path} was written by grokbench {raw.get('grokbench', '(unknown)')!s:.20} in baseline format {raw.get('format')!s:.10}; "
            f"this is grokbench {__version__} (format {BASELINE_FORMAT}): regenerate it with 'grokbench report'"
        )
    try:
        return Baseline.model_validate(raw).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(x) for x in err["loc"]) or "the top level"
        got = err.get("input")
        shown = f" (got {got!r:.40})" if not isinstance(got, (dict, list)) else ""
        raise ConfigError(f"{path} is not a grokbench baseline: {key}: {err['msg']}{shown}") from None
