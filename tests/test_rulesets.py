"""grokbench-v2's rulesets on a tiny benchmark with a real store: trials on tuning seeds chosen on the validation
split, the chosen trial scored on the scoring seeds, held-out variants, step costs, the report, and bad input."""

import math
import resource
import sqlite3
import subprocess
import sys

import pandas as pd
import pytest

from grokbench.config.benchmark import load_benchmark
from grokbench.config.studies import check_ruleset, draw_variants, method_space, scoring_plan, study, tuning_plan
from grokbench.driving.rulesets import run_studies
from grokbench.errors import ConfigError
from grokbench.reporting.ruleset_page import collect, write_ruleset_report
from grokbench.reporting.studies import choose_trials, outcomes
from grokbench.storage.store import Store

#: one track (modadd-cls p = 17, a second or two per run) with a range for variants; 3 scoring, 2 tuning seeds
TINY_V2 = """
[benchmark]
name = "tiny-v2"
version = 1
seeds = [0, 1, 2]
tuning_seeds = [100, 101]
trials = 3
reference = "adamw"
baselines = ["adamw", "noreg"]
controls = ["noreg"]

[defaults]
model = "quadratic"
set.model = { width = 64 }
set.train = { early_stop = true, generalize_threshold = 0.9, generalize_evals = 3, validation_fraction = 0.5 }

[[tracks]]
name = "cls"
task = "modadd-cls"
set.task = { p = 17, train_fraction = 0.7 }
set.train = { steps = 1200, eval_every = 25 }
ranges = { "task.train_fraction" = { kind = "uniform", low = 0.65, high = 0.8 } }
"""


@pytest.fixture
def tiny(tmp_path):
    path = tmp_path / "tiny-v2.toml"
    path.write_text(TINY_V2)
    return path


def test_a_benchmark_without_tuning_seeds_has_no_rulesets(registry):
    v1 = load_benchmark("grokbench-v1", registry)
    assert check_ruleset(v1, None) is None
    with pytest.raises(ConfigError, match="has no rulesets"):
        check_ruleset(v1, "external-tuning")


def test_trials_are_the_benchmark_s_and_go_into_the_tuning_plan(registry, tiny):
    bench = load_benchmark(str(tiny), registry)
    s = study(bench, "adamw", "external-tuning", registry)
    again = study(bench, "adamw", "external-tuning", registry)
    assert s.trials == again.trials and len(s.trials) == 3
    assert set(s.trials[0]) == set(method_space("adamw", registry).params)
    plan = tuning_plan(s, registry)
    assert plan.suite.name == "tiny-v2@v1/external-tuning/adamw/tuning"
    assert [e.name for e in plan.suite.spec.entries] == ["cls/trial-0", "cls/trial-1", "cls/trial-2"]
    lrs = sorted({r.config.optimizer.params["lr"] for r in plan.suite.runs})
    assert lrs == sorted(t["optimizer.lr"] for t in s.trials)
    assert sorted({r.config.seed for r in plan.suite.runs}) == [100, 101]
    scoring = scoring_plan(s, registry, chosen={"cls": s.trials[1]})
    assert {r.config.optimizer.params["lr"] for r in scoring.suite.runs} == {s.trials[1]["optimizer.lr"]}
    assert sorted(r.config.seed for r in scoring.suite.runs) == [0, 1, 2]


def test_variants_are_drawn_from_the_track_s_ranges_by_the_seed_given(registry, tiny):
    bench = load_benchmark(str(tiny), registry)
    a, b, c = (draw_variants(bench, 2, seed) for seed in (7, 7, 8))
    assert [v.name for v in a] == ["cls~7.0", "cls~7.1"]
    fractions = [v.set["task"]["train_fraction"] for v in a]
    assert fractions == [v.set["task"]["train_fraction"] for v in b]
    assert fractions != [v.set["task"]["train_fraction"] for v in c]
    assert all(0.65 <= f < 0.8 for f in fractions)
    assert all(v.set["task"]["p"] == 17 for v in a)


def test_a_method_without_a_search_space_cannot_enter_external_tuning(registry):
    with pytest.raises(ConfigError, match="method 'orthograd-stablemax' declares no search space"):
        method_space("orthograd-stablemax", registry)


def test_trials_are_chosen_on_validation_never_on_test():
    inf = math.inf
    rows = [
        # trial 0: both tuning seeds generalize on test, neither on validation
        ("cls/trial-0", 100, 200.0, inf), ("cls/trial-0", 101, 210.0, inf),
        # trial 1: one seed generalizes on validation
        ("cls/trial-1", 100, 900.0, 800.0), ("cls/trial-1", 101, inf, inf),
        # trial 2: both on validation, slower than trial 3's
        ("cls/trial-2", 100, 500.0, 600.0), ("cls/trial-2", 101, 500.0, 700.0),
        ("cls/trial-3", 100, 900.0, 400.0), ("cls/trial-3", 101, 900.0, 500.0),
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=["entry", "seed", "step", "val_step"])
    frame["status"] = "completed"
    chosen, table = choose_trials(frame, 4, ["cls"], seeds=2)
    assert chosen == {"cls": 3}
    assert table["generalized"].tolist() == [0, 1, 2, 2]
    assert table["median_val_step"].tolist()[2:] == [650.0, 450.0]
    frame.loc[0, "status"] = "interrupted"  # a trial with an unfinished run: no choice yet
    assert choose_trials(frame, 4, ["cls"], seeds=2)[0] == {}


def test_both_rulesets_train_choose_score_and_report_from_a_real_store(registry, tiny, tmp_path):
    bench = load_benchmark(str(tiny), registry)
    store_path = tmp_path / "v2.db"
    cpu = lambda: sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))  # noqa: E731
    cpu_before = cpu()
    ext = run_studies(
        bench, [study(bench, "adamw", "external-tuning", registry)], store=store_path, registry=registry,
        variants=1, variant_seed=5, cost_steps=5, cost_repeats=2,
    )  # fmt: skip
    # each stage's CPU is its own, not the process's since it started
    assert 0 < ext.stages["tuning"].cpu_seconds + ext.stages["scoring"].cpu_seconds <= cpu() - cpu_before
    assert ext.stages["tuning"].trained == 6 and ext.stages["scoring"].trained == 6  # 3 published + 3 variant
    assert set(ext.chosen["adamw"]) == {"cls"} and ext.costs_measured == 2
    store = Store(store_path)
    tuning = outcomes(store, "tiny-v2@v1/external-tuning/adamw/tuning")
    assert len(tuning) == 6 and tuning["val_step"].notna().all()
    scoring = outcomes(store, "tiny-v2@v1/external-tuning/adamw")
    assert sorted(scoring["seed"]) == [0, 1, 2]
    chosen_lr = study(bench, "adamw", "external-tuning", registry).trials[ext.chosen["adamw"]["cls"]]["optimizer.lr"]
    records = store.records(suite="tiny-v2@v1/external-tuning/adamw")
    assert {r["optimizer"]["params"]["lr"] for r in records["config"]} == {chosen_lr}
    # resumable: nothing trained or measured again
    again = run_studies(bench, [study(bench, "adamw", "external-tuning", registry)], store=store_path, registry=registry,
                        variants=1, variant_seed=5, cost_steps=5, cost_repeats=2)  # fmt: skip
    assert again.stages["tuning"].trained == 0 and again.stages["scoring"].trained == 0 and again.costs_measured == 0
    self_ = run_studies(
        bench, [study(bench, m, "self-tuning", registry) for m in ("adamw", "noreg")], store=store_path,
        registry=registry, cost_steps=5, cost_repeats=2,
    )  # fmt: skip
    assert self_.stages["scoring"].trained == 6 and "tuning" not in self_.stages
    costs = store.step_costs()
    assert len(costs) == 4 and (costs["seconds"] > 0).all() and (costs["reference_seconds"] > 0).all()
    results = collect(store, bench, registry)
    labels = [(r.ruleset, r.label) for r in results]
    assert labels == [("self-tuning", "published tracks"), ("external-tuning", "published tracks"),
                      ("external-tuning", "held-out variants (seed 5)")]  # fmt: skip
    self_cells = results[0].cells
    assert results[0].ranked == ["adamw"]  # noreg is a control
    adamw = self_cells["adamw"][0]
    assert adamw.status == "scored" and len(adamw.steps) == 3
    # the cell's steps are the curves' interpolated 3-evaluation crossings
    run = store.records(suite="tiny-v2@v1/self-tuning/adamw").set_index("seed").loc[0]
    curve = store.curves(run["id"])
    assert curve is not None
    out = tmp_path / "report"
    written = write_ruleset_report(store, str(tiny), out, registry)
    assert {p.name for p in written} >= {"benchmark.md", "benchmark.csv", "trials.csv", "costs.csv"}
    text = (out / "benchmark.md").read_text()
    assert "## self-tuning: published tracks" in text and "## external-tuning: held-out variants (seed 5)" in text
    assert str(tmp_path) not in text
    long = pd.read_csv(out / "benchmark.csv")
    assert len(long[(long.ruleset == "self-tuning") & (long.method == "adamw")]) == 3


def cli(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "grokbench", *args], cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--ruleset", "external-tuning", "--method", "orthograd-stablemax"], "declares no search space"),
        (["--ruleset", "external-tuning", "--benchmark", "grokbench-v1"], "has no rulesets"),
        (["--variants", "2", "--benchmark", "grokbench-v1"], "no held-out variants"),
        (["--ruleset", "self-tuning", "--variants", "2", "--track", "plain"], "no track declares ranges"),
    ],
)
def test_bad_rulesets_and_variants_are_one_line_exit_2_and_nothing_written(tiny, tmp_path, args, message):
    plain = tiny.read_text().replace(
        'ranges = { "task.train_fraction" = { kind = "uniform", low = 0.65, high = 0.8 } }', ""
    )
    plain += '\n[[tracks]]\nname = "plain"\ntask = "modadd-cls"\nset.task = { p = 13 }\nset.train = { steps = 50 }\n'
    tiny.write_text(plain)
    if "--benchmark" not in args:
        args = ["--benchmark", str(tiny), *args]
    result = cli("bench", "run", *args, "--store", str(tmp_path / "b.db"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "b.db").exists()
    with pytest.raises(sqlite3.Error):
        sqlite3.connect(f"file:{tmp_path / 'b.db'}?mode=ro", uri=True).execute("select 1")
