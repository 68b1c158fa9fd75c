"""The runs table of a report: one row per run and seed, its hyperparameters, entry label and comparable group.

Only runs that differ in what is compared (default: regularizer and optimizer) compete; every other
hyperparameter is held equal within a group. A seed counts once per entry: its newest run.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from grokbench.config.run import COMPONENT_KINDS, variant_of
from grokbench.errors import ConfigError
from grokbench.reporting.selection import dotted
from grokbench.storage.store import Store

#: what competes unless a suite's ``[report] compare`` says otherwise
DEFAULT_COMPARE = ("regularizer", "optimizer")


def param(config: dict[str, Any], dotted: str) -> Any:
    """A parameter of a stored config by dotted key: ``task.p``, ``model.width``, ``train.steps``, ``seed``."""
    head, _, rest = dotted.partition(".")
    node = config.get(head)
    if head in COMPONENT_KINDS and isinstance(node, dict):
        node = node.get("params", {})
    for part in rest.split(".") if rest else ():
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def hyperparameters(config: dict[str, Any]) -> dict[str, Any]:
    """A stored config as dotted hyperparameters: ``task``, ``task.p``, ``model.width``, ``optimizer.lr``,
    ``train.steps``, ... (the seed, the device and the metric selection left out: they are not settings;
    lists as JSON text, so that they group and compare like the scalars)."""
    out: dict[str, Any] = {}
    for kind in COMPONENT_KINDS:
        comp = config.get(kind) or {}
        if comp.get("name") is not None:
            out[kind] = comp["name"]
        out.update(dotted(comp.get("params") or {}, f"{kind}."))
    out.update({k: v for k, v in dotted(config.get("train") or {}, "train.").items() if k != "train.device"})
    return {k: json.dumps(v) if isinstance(v, list) else v for k, v in out.items()}


def _compared(key: str, compare: Sequence[str]) -> bool:
    return any(key == c or key.startswith(c + ".") for c in compare)


def value_text(value: Any) -> str:
    """A hyperparameter value as labels and tables show it: ``—`` when missing, floats as ``%g``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{value:g}" if isinstance(value, float) else str(value)


def varied_keys(hypers: Iterable[dict[str, Any]]) -> list[str]:
    """The hyperparameters that take more than one value (a missing key counts as a value), in config order."""
    hypers = list(hypers)
    keys = list(dict.fromkeys(k for h in hypers for k in h))
    return [k for k in keys if len({json.dumps(h.get(k), sort_keys=True) for h in hypers}) > 1]


def runs_frame(store: Store, suite: str | None = None, compare: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per run (per entry it serves), each seed of an entry once, with its hyperparameters (``hyper``),
    entry ``label``, comparable ``group`` (number, in order of appearance) and ``group_label``."""
    frame = store.records(suite)
    if frame.empty:
        return frame
    if compare is None:
        compare = (store.suite_spec(suite).get("report") or {}).get("compare") if suite else None
        compare = tuple(compare or DEFAULT_COMPARE)
    frame["hyper"] = frame["config"].map(hyperparameters)
    frame["variant"] = frame["config"].map(variant_of)
    frame["suite_name"] = frame["member_of"].fillna("")
    varied = varied_keys(frame["hyper"])
    setting_varied = [k for k in varied if not _compared(k, compare)]
    method_varied = [k for k in varied if _compared(k, compare)]

    def setting(h: dict[str, Any]) -> str:
        return json.dumps({k: v for k, v in h.items() if not _compared(k, compare)}, sort_keys=True)

    def names(h: dict[str, Any]) -> str:
        return " + ".join(str(h[c]) for c in compare if c in h) or "run"

    # a compared parameter goes into a label when it tells apart runs of the same components
    by_names: dict[str, list[dict[str, Any]]] = {}
    for h in frame["hyper"]:
        by_names.setdefault(names(h), []).append(h)
    telling = [k for k in method_varied if k not in compare and any(k in varied_keys(hs) for hs in by_names.values())]

    def auto_label(h: dict[str, Any]) -> str:
        params = ", ".join(f"{k}={value_text(h.get(k))}" for k in telling)
        return names(h) + (f" [{params}]" if params else "")

    frame["setting"] = frame["hyper"].map(setting)
    frame["label"] = frame["entry"].where(frame["entry"].notna(), frame["hyper"].map(auto_label))
    order = {key: i + 1 for i, key in enumerate(dict.fromkeys(frame["setting"]))}
    frame["group"] = frame["setting"].map(order)
    frame["group_label"] = frame["hyper"].map(
        # the held-equal settings that vary across the report; a key this run's components do not have is left out
        lambda h: ", ".join(
            [str(h.get("task"))] + [f"{k}={value_text(h[k])}" for k in setting_varied if k != "task" and k in h]
        )
    )
    # a seed counts once per entry: the newest run, a failed one only when no other ran
    frame["_failed"] = frame["status"] == "failed"
    newest = frame.sort_values(["_failed", "created_at"], ascending=[True, False])
    frame = newest.drop_duplicates(["suite_name", "group", "label", "seed"]).sort_index()
    for key in ("grokking_delay", "best_test_acc"):
        frame[key] = frame["summary"].map(lambda s, k=key: s.get(k))
    frame.attrs.update(compare=list(compare), setting_varied=setting_varied, method_varied=method_varied)
    return frame.drop(columns=["_failed"])


def check_comparable(frame: pd.DataFrame) -> None:
    """Refuse a report over runs that share nothing comparable: with several variants, at least one group must
    hold two of them, or two variants must differ in one hyperparameter only (a sweep)."""
    variants = frame.drop_duplicates("variant")
    if len(variants) < 2 or frame.groupby("group")["variant"].nunique().max() > 1:
        return
    hypers = list(variants["hyper"])
    for i, a in enumerate(hypers):
        for b in hypers[i + 1 :]:
            if len(varied_keys([a, b])) == 1:
                return
    a, b = hypers[0], hypers[1]
    raise ConfigError(
        f"nothing comparable among these {len(frame)} runs: no two differ only in {' or '.join(frame.attrs.get('compare', DEFAULT_COMPARE))} "
        f"or in one hyperparameter (the first two differ in {', '.join(varied_keys([a, b]))}); report runs of one suite or pass --suite"
    )


def median_of(values: Iterable[Any]) -> float:
    """The median of the values that are present (not None, not NaN); NaN when none is."""
    clean = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return float(np.median(clean)) if clean else math.nan
