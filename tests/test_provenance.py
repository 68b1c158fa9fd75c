"""Provenance: every stored run records the plugin, distribution and version of its components and its method preset;
``bench report`` lists them per method."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys

import grokbench

from .test_benchmark import TINY

DIST = f"grokbench {grokbench.__version__}"


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "grokbench", *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def stored_plugins(db) -> list[dict]:
    with sqlite3.connect(db) as conn:
        return [json.loads(p) for (p,) in conn.execute("SELECT plugins FROM runs ORDER BY created_at")]


def test_a_run_records_its_preset_beside_its_components(tmp_path):
    done = cli("run", "-t", "modadd-cls", "-m", "quadratic", "--preset", "adamw", "--set", "task.p=11",
               "--set", "train.steps=20", "--store", "s.db", "--json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    (plugins,) = stored_plugins(tmp_path / "s.db")
    assert plugins["preset"] == {"name": "adamw", "plugin": "methods", "distribution": "grokbench", "version": grokbench.__version__}
    assert plugins["regularizer"] == {"name": "adamw", "plugin": "regularizers", "distribution": "grokbench", "version": grokbench.__version__}
    shown = cli("show", json.loads(done.stdout)["run_id"], "--store", "s.db", cwd=tmp_path)
    assert any(line.split()[:3] == ["preset", "adamw", "methods"] for line in shown.stdout.splitlines())


def test_bench_report_lists_each_method_s_provenance(tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY)
    for method in ("adamw", "noreg"):
        done = cli("bench", "run", "--benchmark", "tiny.toml", "--method", method, "--track", "reg",
                   "--store", "b.db", "-q", cwd=tmp_path)
        assert done.returncode == 0, done.stderr
    assert all(p["preset"]["plugin"] == "methods" for p in stored_plugins(tmp_path / "b.db"))
    report = cli("bench", "report", "--benchmark", "tiny.toml", "--store", "b.db", "--out", "rep", "--no-plots",
                 cwd=tmp_path)
    assert report.returncode == 0, report.stderr
    md = (tmp_path / "rep" / "benchmark.md").read_text()
    section = md.split("## Provenance", 1)[1].split("\n## ", 1)[0]
    lines = [line for line in section.splitlines() if line.startswith("* ")]
    assert [line.split("`")[1] for line in lines] == ["adamw", "noreg"]
    adamw = lines[0]
    assert f"preset `adamw` from methods ({DIST})" in adamw
    assert f"regularizer `adamw` from regularizers ({DIST})" in adamw
    assert f"task `modadd-reg` from modadd ({DIST})" in adamw and f"model `quadratic` from quadratic ({DIST})" in adamw
    assert f"preset `noreg` from methods ({DIST})" in lines[1]
