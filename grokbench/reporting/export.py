"""Export a store for pandas and other tools: runs (one row per run) and curves (long), as CSV or Parquet."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import pandas as pd

from grokbench.errors import ConfigError
from grokbench.files import Batch, output_dir
from grokbench.reporting.selection import flatten
from grokbench.storage.store import Store


def export_store(store: Store, out: str | os.PathLike[str], fmt: str, *, suite: str | None = None) -> list[Path]:
    """Write ``runs.<fmt>`` (one row per run: summary flattened, config as JSON and one ``config.<key>`` column
    per dotted config key) and ``curves.<fmt>`` (long)."""
    if fmt == "parquet" and not (importlib.util.find_spec("pyarrow") or importlib.util.find_spec("fastparquet")):
        raise ConfigError('parquet export needs pyarrow: pip install "grokbench[parquet]" (or use --format csv)')
    frame = store.records(suite)
    out = output_dir(out, (f"runs.{fmt}", f"curves.{fmt}"))
    if suite is None:
        frame = frame.drop_duplicates("id")
    summary = (
        pd.json_normalize(frame["summary"].tolist()).set_index(frame.index)
        if len(frame)
        else pd.DataFrame(index=frame.index)
    )
    runs = frame.drop(columns=["summary", "position"]).rename(columns={"member_of": "suite_member_of"})
    runs = runs.drop(columns=[c for c in summary.columns if c in runs.columns]).join(summary)
    # one column per config key, dotted as --set takes them (config.task.p, config.optimizer.lr, config.seed, ...)
    keys = [
        {k: json.dumps(v, sort_keys=True) if isinstance(v, (dict, list)) else v for k, v in flatten(c).items()}
        for c in runs["config"]
    ]
    runs = runs.join(pd.DataFrame(keys, index=runs.index).add_prefix("config."))
    for key in ("config", "plugins", "environment"):
        runs[key] = runs[key].map(lambda v: json.dumps(v, sort_keys=True))
    curves = store.curves_long(runs["id"])
    batch = Batch(out)  # both files, or neither: never a new runs file beside an old curves file
    for name, table in (("runs", runs), ("curves", curves)):
        batch.add(f"{name}.{fmt}", table.to_csv(index=False) if fmt == "csv" else table.to_parquet(index=False))
    return batch.commit()
