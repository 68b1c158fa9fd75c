"""Leaderboard semantics: a third-party metric's declared columns and panels in every output, the checks on
those declarations, distinct seeds, labels without hashes, and the bad inputs (nothing comparable)."""

import csv
import json
import re
import subprocess
import sys

import pytest
import torch

from grokbench.plugin import manager as plugin_manager
from grokbench.plugin.contracts import CurvePanel, EvalContext, Metric, SummaryColumn
from grokbench.plugin.manager import load_plugins
from grokbench.storage.store import Store

from .test_cli import invoke
from .test_plugin_tooling import plugin


class NormRatio(Metric):
    """‖θ‖∞ / ‖θ‖₂ over all parameters (a third-party metric, defined here)."""

    name = "norm_ratio"
    outputs = ("norm_ratio",)
    summary_keys = ("norm_ratio_final",)
    report_columns = (SummaryColumn("norm_ratio_final", "‖θ‖∞/‖θ‖₂", "min", ".4f"),)
    report_panels = (CurvePanel(("norm_ratio",), "norm ratio"),)

    def compute(self, ctx: EvalContext) -> dict[str, float]:
        theta = torch.cat([p.detach().double().reshape(-1) for p in ctx.model.parameters().values()])
        return {"norm_ratio": (theta.abs().max() / theta.norm()).item()}

    def summarize(self, curves, summary):
        return {"norm_ratio_final": float(curves[-1]["norm_ratio"]) if curves else None}


def metric_plugin(cls):
    return plugin(register_metrics=lambda register: register(cls))


SHORT = {"task": {"p": 23, "train_fraction": 0.6}, "model": {"width": 64}, "optimizer": {"lr": 3e-3},
         "train": {"steps": 200, "eval_every": 50}, "metrics": {"norm_ratio": True}}


def test_a_third_party_metric_reaches_every_report_output_and_a_repeated_seed_counts_once(tmp_path, monkeypatch):
    from grokbench.api import run
    from grokbench.reporting.declarations import metric_declarations
    from grokbench.reporting.text import summary_text

    registry = load_plugins(extra=[("ratio", metric_plugin(NormRatio))])
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: registry)
    store = tmp_path / "s.db"
    results = [run("modadd-cls", "quadratic", regularizer=reg, optimizer="adam", overrides=SHORT, seed=seed, store=store, registry=registry)
               for reg, seed in (("adamw", 0), ("adamw", 1), ("adamw", 1), ("none", 0))]
    # the end-of-run summary shows the declared columns (the norms plugin's and this one's)
    text = summary_text(results[0].to_json(), metric_declarations(registry).columns)
    assert re.search(r"‖θ‖∞/‖θ‖₂ +0\.\d{4}\n", text) and "final ‖θ‖∞" in text
    report = invoke("report", "--store", store, "--out", tmp_path / "rep")
    assert report.exit_code == 0, report.output
    with open(tmp_path / "rep" / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["entry"], r["seeds"], r["rank"]) for r in rows] == [("adamw + adam", "2", "1"), ("none + adam", "1", "2")] or \
        [(r["entry"], r["seeds"]) for r in rows] == [("none + adam", "1"), ("adamw + adam", "2")]
    ratio = {r["entry"]: float(r["norm_ratio_final"]) for r in rows}
    finals = [r.summary["norm_ratio_final"] for r in results]
    assert ratio["adamw + adam"] == pytest.approx(sorted(finals[:2])[0] / 2 + sorted(finals[:2])[1] / 2)
    assert 0 < ratio["none + adam"] < 1 and ratio["none + adam"] == pytest.approx(finals[3])
    md = (tmp_path / "rep" / "leaderboard.md").read_text()
    assert "‖θ‖∞/‖θ‖₂ ↓" in md and f"{ratio['none + adam']:.4f}" in md and not re.search(r"#[0-9a-f]{6}", md)
    baseline = json.loads((tmp_path / "rep" / "baseline.json").read_text())
    assert {e["entry"]: e["metrics"]["norm_ratio_final"] for e in baseline["entries"]} == pytest.approx(ratio)
    page = (tmp_path / "rep" / "leaderboard.html").read_text()
    assert "‖θ‖∞/‖θ‖₂ ↓" in page and "norm ratio" in page
    assert (tmp_path / "rep" / "curves-modadd-cls-g1.png").stat().st_size > 10_000

    from grokbench.reporting.figures import CORE_PANELS, curve_figures
    from grokbench.reporting.runs import runs_frame

    frame = runs_frame(Store(store))
    (figure,) = curve_figures(frame, Store(store).curves_long(frame["id"]), CORE_PANELS + metric_declarations(registry).panels)
    assert [p.title for p in figure.panels] == ["accuracy", "loss", "‖θ‖₂", "‖θ‖∞", "norm ratio"]


@pytest.mark.parametrize("attrs, said", [
    ({"report_panels": (CurvePanel((), "nothing"),)}, "metric 'bad_ratio': report panel 'nothing' names no curve"),
    ({"report_panels": (CurvePanel(("other",), "x"),)}, "report panel 'x' names curve 'other', not one of its outputs (norm_ratio)"),
    ({"report_columns": (SummaryColumn("nope", "x"),)}, "report column 'nope' is none of its summary_keys or final_<output>"),
    ({"report_columns": (SummaryColumn("norm_ratio_final", "x", "up"),)}, "has direction 'up'"),  # type: ignore[arg-type]
])
def test_a_metric_declaration_that_does_not_fit_is_refused_when_it_registers(attrs, said, monkeypatch):
    bad = type("BadRatio", (NormRatio,), {"name": "bad_ratio", **attrs})
    with pytest.raises(TypeError, match=re.escape(said)):
        bad.check_class()
    registry = load_plugins(extra=[("bad", metric_plugin(bad))])
    (broken,) = [p for p in registry.broken if p.name == "bad"]
    assert said in broken.error and "\n" not in broken.error
    assert "bad_ratio" not in registry.names("metric")
    monkeypatch.setattr(plugin_manager, "get_registry", lambda: registry)
    assert said in invoke("plugins").stdout
    selected = invoke("run", "-t", "modadd-cls", "-m", "quadratic", "--set", "metrics.bad_ratio=true", "--store", "x.db")
    assert selected.exit_code == 2 and len(selected.stderr.strip().splitlines()) == 1 and "bad_ratio" in selected.stderr


def _save(store, run_id, task, p, regularizer, t_gen):
    config = {"task": {"name": task, "params": {"p": p}}, "model": {"name": "quadratic", "params": {"width": 64}},
              "regularizer": {"name": regularizer, "params": {}}, "optimizer": {"name": "adam", "params": {"lr": 1e-3}}, "seed": 0}
    store.save_run(
        {"id": run_id, "created_at": "2026-01-01T00:00:00", "config_hash": run_id, "config": config, "task": task, "model": "quadratic",
         "regularizer": regularizer, "optimizer": "adam", "preset": None, "seed": 0, "status": "completed", "message": None,
         "steps": 100, "t_memorize": 10, "t_generalize": t_gen, "final_train_acc": 1.0, "final_test_acc": 1.0, "wall_seconds": 1.0,
         "summary": {}, "plugins": {}, "environment": {}},
        [{"step": 50, "train_acc": 1.0, "test_acc": 1.0, "train_loss": 0.1, "test_loss": 0.2}],
    )


def test_a_report_over_runs_that_share_nothing_comparable_exits_2_in_one_line(tmp_path):
    """Through the real CLI, in a subprocess: two runs apart in task, p and regularizer rank nothing."""
    store = Store(tmp_path / "s.db")
    _save(store, "a", "modadd-cls", 23, "adamw", 50)
    _save(store, "b", "modadd-reg", 11, "l2", None)
    done = subprocess.run([sys.executable, "-m", "grokbench", "report", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "rep")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.strip().splitlines()
    assert line == ("error: nothing comparable among these 2 runs: no two differ only in regularizer or optimizer or in one "
                    "hyperparameter (the first two differ in task, task.p, regularizer); report runs of one suite or pass --suite")
    assert not (tmp_path / "rep").exists()
    # one hyperparameter apart (a sweep of p) is comparable; so are two regularizers at one setting
    _save(store, "c", "modadd-cls", 31, "adamw", 80)
    done = subprocess.run([sys.executable, "-m", "grokbench", "report", "--store", str(tmp_path / "s.db"), "--out", str(tmp_path / "rep")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "rep" / "sweep-modadd-cls-task.p.png").exists()
    with open(tmp_path / "rep" / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["group"], r["task"], r["task.p"], r["rank"], r["entry"]) for r in rows] == [
        ("1", "modadd-cls", "23", "1", "adamw + adam"), ("2", "modadd-reg", "11", "1", "l2 + adam"), ("3", "modadd-cls", "31", "1", "adamw + adam")]


def test_report_files_are_written_whole_and_never_through_a_symlink(tmp_path):
    from grokbench.errors import ConfigError
    from grokbench.files import write_file

    target = tmp_path / "elsewhere.txt"
    target.write_text("keep")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "leaderboard.md").symlink_to(target)
    with pytest.raises(ConfigError, match="refusing to write .*leaderboard.md: it is a symlink"):
        write_file(tmp_path / "out" / "leaderboard.md", "x")
    assert target.read_text() == "keep"
    write_file(tmp_path / "out" / "a.md", "one")
    write_file(tmp_path / "out" / "a.md", b"two")
    assert (tmp_path / "out" / "a.md").read_text() == "two" and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.md", "leaderboard.md"]
