"""Plain-text and JSON renderings of registries, runs and results (used by the CLI)."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined
from tabulate import tabulate

from grokbench.plugin.benchmark_file import read_benchmark_spec
from grokbench.plugin.contracts import SummaryColumn
from grokbench.plugin.registry import KINDS, Registry

if TYPE_CHECKING:  # pandas is imported where a frame is built: `grokbench run` prints its summary without it
    import pandas as pd

KIND_TITLES = {
    "task": "Tasks",
    "model": "Models",
    "regularizer": "Regularizers",
    "optimizer": "Optimizers",
    "metric": "Metrics",
    "preset": "Presets",
    "executor": "Executors",
    "logger": "Loggers",
    "benchmark": "Benchmarks",
}


def _type_name(field: FieldInfo) -> str:
    text = repr(field.annotation) if not isinstance(field.annotation, type) else field.annotation.__name__
    return text.replace("typing.", "").replace("NoneType", "None")


def describe_params(params_model: type[BaseModel]) -> list[dict[str, Any]]:
    out = []
    for name, field in params_model.model_fields.items():
        default = None if field.default is PydanticUndefined else field.default
        out.append(
            {"name": name, "type": _type_name(field), "default": default, "description": field.description or ""}
        )
    return out


def _first_paragraph(component: Any) -> str:
    """A component's docstring up to its first blank line, as one line: its first line alone may stop
    mid-sentence where the docstring wraps."""
    import inspect

    doc = (inspect.getdoc(component) or "").strip().split("\n\n")[0]
    return " ".join(doc.split()) or component.description()


#: the width ``grokbench list`` keeps to
LIST_WIDTH = 100


def registry_json(registry: Registry) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kind in KINDS:
        items = []
        for name in registry.names(kind):
            if name in registry.conflicts[kind]:
                items.append({"name": name, "conflict": [p.provenance() for p in registry.conflicts[kind][name]]})
                continue
            entry = registry.entries[kind][name]
            obj = entry.component
            item: dict[str, Any] = {"name": name, **entry.plugin.provenance()}
            if kind == "preset":
                item.update(
                    preset=obj.name, task=obj.task, model=obj.model, description=obj.description, settings=obj.settings
                )
            elif kind == "benchmark":
                meta = read_benchmark_spec(obj.path)
                item.update(
                    description=meta.benchmark.description,
                    benchmark_version=meta.benchmark.version,
                    tracks=[t.name for t in meta.tracks],
                    path=obj.path,
                )
            else:
                item.update(description=_first_paragraph(obj), params=describe_params(obj.Params))
                if kind == "metric":
                    item["default"] = obj.default
            items.append(item)
        out[kind + "s"] = items
    out["broken_plugins"] = [{**p.provenance(), "error": p.error} for p in registry.broken]
    return out


def registry_text(registry: Registry) -> str:
    data = registry_json(registry)
    blocks = []
    for kind, title in KIND_TITLES.items():
        rows = []
        for item in data[kind + "s"]:
            if "conflict" in item:
                owners = " and ".join(f"{c['plugin']} ({c['distribution']} {c['version']})" for c in item["conflict"])
                rows.append([item["name"], f"CONFLICT: registered by {owners}", ""])
                continue
            plugin = (
                f"{item['plugin']} ({item['distribution']} {item['version']})"
                if item["distribution"]
                else item["plugin"]
            )
            if kind == "benchmark":
                rows.append(
                    [
                        item["name"],
                        f"v{item['benchmark_version']}, {len(item['tracks'])} tracks: {item['description']}",
                        plugin,
                    ]
                )
                continue
            if kind == "preset":
                rows.append(
                    [item["preset"], f"{item['task'] or '*'} / {item['model'] or '*'}: {item['description']}", plugin]
                )
                continue
            params = ", ".join(f"{p['name']}={json.dumps(p['default'])}" for p in item["params"]) or "-"
            desc = item["description"] + (" [default]" if item.get("default") else "")
            rows.append([item["name"], f"{desc}\n  params: {params}", plugin])
        blocks.append(f"{title}\n" + (_fitted(rows, ["name", "description", "plugin"]) if rows else "  (none)"))
    if data["broken_plugins"]:
        rows = [[p["plugin"], p["distribution"] or "-", p["error"]] for p in data["broken_plugins"]]
        blocks.append("Broken plugins\n" + _fitted(rows, ["plugin", "distribution", "reason"]))
    return "\n\n".join(blocks)


def _fitted(rows: list[list[str]], headers: list[str], width: int = LIST_WIDTH) -> str:
    """A table whose middle column is wrapped at word boundaries so that every line fits ``width``."""

    side = sum(max(len(str(r[i])) for r in [*rows, headers]) for i in (0, 2)) + 4  # two gaps of two spaces
    room = max(24, width - side)
    wrapped = [
        [r[0], "\n".join(line for part in str(r[1]).split("\n") for line in _wrap(part, room)), r[2]] for r in rows
    ]
    return tabulate(wrapped, headers=headers, disable_numparse=True)


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width``; a continuation keeps the text's indent, plus two spaces."""
    import textwrap

    indent = text[: len(text) - len(text.lstrip())]
    return textwrap.wrap(
        text, width, subsequent_indent=indent + "  ", break_on_hyphens=False, break_long_words=False
    ) or [text]


def _fmt(value: Any, spec: str = ".4g") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return format(value, spec)
    return str(value)


def summary_text(result: dict[str, Any], columns: Sequence[SummaryColumn] = ()) -> str:
    """The end-of-run table, from a RunResult's JSON form; ``columns``: the metric plugins' declared
    summary columns, shown when the run has a value for them."""
    rows = [
        ("run", result["run_id"]),
        (
            "run config",
            f"{result['task']} / {result['model']} / {result['regularizer']} / {result['optimizer']}, seed {result['seed']}",
        ),
        # a failure's message is the error line on stderr: printed once
        (
            "status",
            result["status"]
            + (f" ({result['message']})" if result.get("message") and result["status"] != "failed" else ""),
        ),
        ("steps", result["steps"]),
        ("time to memorize", result.get("t_memorize")),
        ("time to generalize", result.get("t_generalize")),
        ("grokking delay", result.get("grokking_delay")),
        ("final train acc", result.get("final_train_acc")),
        ("final test acc", result.get("final_test_acc")),
        *[(c.label, _fmt(result[c.key], c.format)) for c in columns if result.get(c.key) is not None],
        # a run's wall time, as --json, `runs` and the store give it: a batched program's time is shared out
        (
            "wall time (s)",
            result.get("wall_seconds")
            if not result.get("group_wall_seconds")
            else f"{_fmt(result['wall_seconds'])} (its share of {result['group_wall_seconds']:.4g} s, shared by "
            f"{result['batched_seeds']} seeds trained together)",
        ),
        ("stored in", result.get("store") or "(not stored)"),
    ]
    return tabulate([(k, _fmt(v)) for k, v in rows], tablefmt="plain")


def seeds_line(results: list[dict[str, Any]]) -> str:
    """One line after several seeds: how many generalized, median t_generalize, and the wall time (shared when batched)."""
    times = sorted(r["t_generalize"] for r in results if r.get("t_generalize") is not None)
    median = "-" if not times else _fmt(float(statistics.median(times)))
    walls = [float(r["group_wall_seconds"]) for r in results if r.get("group_wall_seconds") is not None]
    if results and len(walls) == len(results):  # a seed that left the program early saw less of it: the longest
        wall = f"{max(walls):.2f} s wall for all {len(results)} seeds together (one batched program; not per seed)"
    else:
        wall = f"{sum(r['wall_seconds'] for r in results):.2f} s wall in all"
    return f"seeds: {len(times)}/{len(results)} generalized, median time to generalize {median}; {wall}"


#: how every table of runs prints a value that is missing (a time never reached, a parameter a model lacks)
MISSING = "—"

#: the columns ``grokbench runs`` shows first; the hyperparameters that differ follow, then ``created_at``
RUN_COLUMNS = (
    "id",
    "suite",
    "task",
    "model",
    "regularizer",
    "optimizer",
    "preset",
    "seed",
    "status",
    "steps",
    "t_memorize",
    "t_generalize",
    "final_train_acc",
    "final_test_acc",
    "wall_seconds",
)


def cell(value: Any) -> str:
    """A value as a table of runs prints it: :data:`MISSING` when absent (None, NaN), whole numbers without a
    fraction (pandas stores an integer column with gaps as floats), other floats to 4 significant digits."""
    if value is None or (isinstance(value, float) and value != value):
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) < 1e15 else format(value, ".4g")
    return str(value)


def run_columns(frame: pd.DataFrame) -> list[str]:
    """Every column ``grokbench runs --columns`` can name for these runs, in the order the table shows them."""
    first = [c for c in RUN_COLUMNS if c in frame.columns]
    return first + [c for c in frame.columns if c not in first and c != "created_at"] + ["created_at"]


def choose_columns(names: str, known: Sequence[str]) -> list[str]:
    """``--columns a,b,c`` checked against the known columns: ConfigError naming the known ones, with the
    closest match, for an unknown one."""
    import difflib

    from grokbench.errors import ConfigError

    chosen = [n.strip() for n in names.split(",") if n.strip()]
    if not chosen:
        raise ConfigError(f"--columns expects names separated by commas (known: {', '.join(known)})")
    for name in chosen:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            raise ConfigError(f"unknown column '{name}'{hint} (known: {', '.join(known)})")
    return list(dict.fromkeys(chosen))


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == MISSING
    return True


def _table(text: pd.DataFrame, columns: list[str]) -> str:
    """Cells already formatted; a column of numbers (or missing values) aligned right."""
    align = ["right" if text[c].map(_numeric).all() and c != "id" else "left" for c in columns]
    return tabulate(text[columns], headers="keys", showindex=False, disable_numparse=True, colalign=align)


def runs_text(frame: pd.DataFrame, columns: Sequence[str] | None = None, width: int | None = None) -> str:
    """The table of ``grokbench runs``: with ``columns``, those columns; otherwise the columns whose value differs
    between the runs (those equal on every run are said once, in a line above the table), the last dropped until
    the table fits ``width`` characters (default: the terminal's), with a line naming them. A missing value
    prints as :data:`MISSING`."""
    import shutil
    import textwrap

    if frame.empty:
        return "no runs"
    width = width or shutil.get_terminal_size().columns
    text = frame.apply(lambda col: col.map(cell))
    lines: list[str] = []
    if columns is not None:
        return _table(text, list(columns))
    shown = [c for c in run_columns(frame) if c != "created_at"]
    if len(text) == 1:  # one run: a field per line, which fits any terminal
        return tabulate([(c, text[c].iloc[0]) for c in shown], tablefmt="plain", disable_numparse=True)
    same = [c for c in shown if c != "id" and text[c].nunique() == 1]
    shown = [c for c in shown if c not in same]
    if same:
        said = ", ".join(f"{c} {text[c].iloc[0]}" for c in same)
        lines += textwrap.wrap(
            f"same on all {len(text)} runs: {said}", width, break_on_hyphens=False, break_long_words=False
        )
    dropped: list[str] = []
    table = _table(text, shown)
    while len(shown) > 1 and max(len(line) for line in table.splitlines()) > width:
        dropped.insert(0, shown.pop())
        table = _table(text, shown)
    if dropped:
        lines += textwrap.wrap(
            f"{len(dropped)} more columns than {width} characters hold: {', '.join(dropped)} "
            f"(choose with --columns, e.g. --columns id,{dropped[0]}; all in --json)",
            width,
            break_on_hyphens=False,
            break_long_words=False,
        )
    return "\n".join([*lines, table])


def run_text(run: dict[str, Any], curves: pd.DataFrame, max_rows: int = 20) -> str:
    import pandas as pd

    lines = [
        f"run {run['id']}  ({run['created_at']})",
        f"status: {run['status']}" + (f" ({run['message']})" if run["message"] else ""),
    ]
    lines.append("\nconfig:\n" + json.dumps(run["config"], indent=2, sort_keys=True))
    lines.append("\nsummary:\n" + tabulate([(k, _fmt(v)) for k, v in run["summary"].items()], tablefmt="plain"))
    plugin_rows = [
        (kind, info["name"], info["plugin"], f"{info['distribution']} {info['version']}")
        for kind, info in run["plugins"].items()
        if kind != "metrics"
    ]
    plugin_rows += [
        ("metric", name, info["plugin"], f"{info['distribution']} {info['version']}")
        for name, info in run["plugins"]["metrics"].items()
    ]
    lines.append("\nplugins:\n" + tabulate(plugin_rows, headers=["kind", "name", "plugin", "distribution"]))
    env = run["environment"]
    lines.append(
        f"\nenvironment: grokbench {env['grokbench']}, python {env['python']}, torch {env['packages'].get('torch')}, device {env['device']}"
    )
    if not curves.empty:
        step = max(1, len(curves) // max_rows)
        shown = curves.iloc[::step]
        if shown.index[-1] != curves.index[-1]:
            shown = pd.concat([shown, curves.iloc[[-1]]])
        lines.append(
            f"\ncurves ({len(curves)} evaluations, {_every(step)} shown):\n"
            + tabulate(shown, headers="keys", showindex=False, floatfmt=".4g")
        )
    return "\n".join(lines)


def _every(step: int) -> str:
    """``every evaluation``, ``every 2nd evaluation``, ``every 11th evaluation``, ``every 21st evaluation``."""
    if step == 1:
        return "every evaluation"
    suffix = "th" if 10 <= step % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(step % 10, "th")
    return f"every {step}{suffix} evaluation"


def plugins_json(registry: Registry) -> list[dict[str, Any]]:
    """One object per plugin: provenance, entry-point target, status, error and what it registers."""
    out = []
    for p in sorted(registry.plugins, key=lambda p: p.name):
        registers: dict[str, list[str]] = {}
        clashes: list[str] = []
        for kind, name in p.registered:
            registers.setdefault(kind, []).append(name)
            if name in registry.conflicts[kind]:
                clashes.append(f"{kind} '{name}' (use '{p.name}:{name}')")
        status = "disabled" if p.disabled else "broken" if p.error else "clash" if clashes else "ok"
        out.append(
            {
                **p.provenance(),
                "module": p.module,
                "status": status,
                "error": p.error,
                "registers": registers,
                "clashes": clashes,
            }
        )
    return out


def plugins_text(registry: Registry) -> str:
    rows = []
    for item in plugins_json(registry):
        what = "; ".join(f"{kind}: {', '.join(names)}" for kind, names in item["registers"].items())
        if item["status"] == "broken":
            what = f"BROKEN: {item['error']}"
        elif item["status"] == "disabled":
            what = "disabled (GROKBENCH_DISABLE_PLUGINS)"
        elif item["status"] == "clash":
            what = f"CLASH: {'; '.join(item['clashes'])} registered by another plugin too | {what}"
        rows.append([item["plugin"], item["distribution"] or "-", item["version"] or "-", what or "(nothing)"])
    if not rows:
        return "no plugins loaded" + (
            " (entry points are off: GROKBENCH_NO_ENTRY_POINTS)" if not _entry_points_on() else ""
        )
    return tabulate(rows, headers=["plugin", "distribution", "version", "registers"])


def _entry_points_on() -> bool:
    from grokbench.plugin.manager import entry_points_enabled

    return entry_points_enabled()
