"""Search spaces: the distributions a method's hyperparameters are tuned over under the external-tuning ruleset.

A :class:`~grokbench.plugin.contracts.Preset` declares one as ``search_space``: dotted keys of its own settings
(``"optimizer.lr"``) mapped to a :class:`LogUniform`, :class:`Uniform` or :class:`Choice` (or the same as a dict
with a ``kind``), e.g. ``{"optimizer.lr": LogUniform(low=1e-4, high=1e-2), "regularizer.strength": {"kind":
"choice", "values": [0.1, 1.0]}}``. Values the space leaves out keep the preset's setting. The space is checked when
the plugin registers (:meth:`SearchSpace.parse`); the trials are drawn by ``grokbench.config.search``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError

from grokbench.errors import ConfigError
from grokbench.strict import StrictModel, check_values, validation_error


class LogUniform(StrictModel):
    """Uniform in log space between ``low`` and ``high`` (both above 0): for scales such as a learning rate."""

    kind: Literal["log-uniform"] = "log-uniform"
    low: float
    high: float

    def problem(self) -> str | None:
        """Why this distribution cannot be drawn from (an empty range, a bound at or below 0), or None."""
        if not 0 < self.low:
            return f"log-uniform needs 0 < low < high, a range that does not reach 0 (got low={self.low!r})"
        return _empty(self.low, self.high)

    def value(self, u: float) -> float:
        """The value at ``u`` in [0, 1): the quasi-random coordinate mapped onto the range."""
        return math.exp(math.log(self.low) + u * (math.log(self.high) - math.log(self.low)))


class Uniform(StrictModel):
    """Uniform between ``low`` and ``high``: for a quantity on a linear scale (a momentum, a filter's α)."""

    kind: Literal["uniform"] = "uniform"
    low: float
    high: float

    def problem(self) -> str | None:
        """Why this distribution cannot be drawn from (an empty range), or None."""
        return _empty(self.low, self.high)

    def value(self, u: float) -> float:
        """The value at ``u`` in [0, 1): the quasi-random coordinate mapped onto the range."""
        return self.low + u * (self.high - self.low)


class Choice(StrictModel):
    """One of ``values``, each as likely: for a discrete setting (a loss, a schedule, a few fixed strengths)."""

    kind: Literal["choice"] = "choice"
    values: tuple[Any, ...]

    def problem(self) -> str | None:
        """Why this distribution cannot be drawn from (no values, a value twice), or None."""
        if not self.values:
            return "the range is empty: choice needs at least one value"
        if len(set(map(repr, self.values))) < len(self.values):
            return f"choice lists a value twice ({list(self.values)!r})"
        return None

    def value(self, u: float) -> Any:
        """The value at ``u`` in [0, 1): the ``floor(u n)``-th of the ``n`` values."""
        return self.values[min(int(u * len(self.values)), len(self.values) - 1)]


Distribution = Annotated[LogUniform | Uniform | Choice, Field(discriminator="kind")]

#: a distribution's ``kind`` -> its class
KINDS: dict[str, type[LogUniform | Uniform | Choice]] = {
    "log-uniform": LogUniform,
    "uniform": Uniform,
    "choice": Choice,
}


class SearchSpace(StrictModel):
    """A method's search space, checked: dotted setting keys to distributions, in key order."""

    params: dict[str, Distribution]

    @classmethod
    def parse(cls, declared: Mapping[str, Any], settings: Mapping[str, Any]) -> SearchSpace:
        """``declared`` checked against ``settings`` (the preset's); ``ValueError`` with one line naming the key:
        an unknown kind or field, an empty range, a log-uniform range through 0, a key the method does not set, or
        a number range for a setting that is not a number."""
        if not declared:
            raise ValueError("the search space is empty: declare at least one key, or no search space")
        params: dict[str, Any] = {}
        for key in sorted(declared):
            raw = declared[key]
            try:
                dist = raw if isinstance(raw, (LogUniform, Uniform, Choice)) else _distribution(key, raw)
                check_values(dist.model_dump(), key)
            except ValidationError as exc:
                raise ValueError(str(validation_error(exc, key))) from None
            except ConfigError as exc:  # an infinite or NaN bound
                raise ValueError(str(exc)) from None
            problem = dist.problem() or _setting_problem(key, dist, settings)
            if problem:
                raise ValueError(f"{key}: {problem}")
            params[key] = dist
        return cls(params=params)


def _distribution(key: str, raw: Any) -> LogUniform | Uniform | Choice:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    if kind not in KINDS:
        got = f"kind {kind!r}" if isinstance(raw, Mapping) else repr(raw)
        raise ValueError(
            f"{key}: a distribution is LogUniform, Uniform, Choice or a dict with kind {', '.join(map(repr, KINDS))} (got {got})"
        )
    return KINDS[kind].model_validate(raw)


def _empty(low: float, high: float) -> str | None:
    return None if low < high else f"the range is empty: needs low < high (got low={low!r}, high={high!r})"


def _setting_problem(key: str, dist: Any, settings: Mapping[str, Any]) -> str | None:
    node: Any = settings
    for part in key.split("."):
        if not isinstance(node, Mapping) or part not in node:
            known = ", ".join(sorted(_leaves(settings))) or "nothing"
            return f"the method does not set '{key}' (it sets {known})"
        node = node[part]
    if isinstance(node, Mapping):
        return f"'{key}' is a table of settings; search one of its values ({', '.join(sorted(node))})"
    if not isinstance(dist, Choice) and (isinstance(node, bool) or not isinstance(node, (int, float))):
        return f"{dist.kind} draws numbers but the method sets '{key}' to {node!r}; use choice"
    return None


def _leaves(tree: Mapping[str, Any], prefix: str = "") -> list[str]:
    out: list[str] = []
    for k, v in tree.items():
        out += _leaves(v, f"{prefix}{k}.") if isinstance(v, Mapping) else [f"{prefix}{k}"]
    return out
