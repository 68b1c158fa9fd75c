"""Submission bundles from real runs of a tiny benchmark with rulesets, through the command line: ``bench run``,
``bench submit``, ``bench verify --sample`` (re-trained bit for bit), ``bench leaderboard`` (equal to ``bench
report`` on the store, its page opened in Chromium), and tampered bundles each refused with one line, exit 2."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from grokbench.config.run import RunConfig
from grokbench.storage.bundle import Bundle, read_bundle, to_bytes

TINY = """
[benchmark]
name = "tiny-submit"
version = 1
seeds = [0, 1, 2]
tuning_seeds = [100, 101]
trials = 2
reference = "adamw"
baselines = ["adamw", "noreg"]
controls = ["noreg"]

[defaults]
model = "quadratic"
set.model = { width = 48 }
set.train = { early_stop = true, generalize_threshold = 0.9, generalize_evals = 3, validation_fraction = 0.5 }

[[tracks]]
name = "add"
task = "modadd-cls"
set.task = { p = 13, train_fraction = 0.7 }
set.train = { steps = 500, eval_every = 25 }
ranges = { "task.train_fraction" = { kind = "uniform", low = 0.65, high = 0.8 } }

[[tracks]]
name = "sub"
task = "modarith-cls"
set.task = { p = 13, operation = "sub", train_fraction = 0.7 }
set.train = { steps = 500, eval_every = 25 }
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "GROKBENCH_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "grokbench", *args], cwd=cwd, capture_output=True, text=True, timeout=300, env=env
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A store with adamw under both rulesets and noreg under self-tuning (with held-out variants of one track),
    and their bundles."""
    root = tmp_path_factory.mktemp("submit")
    (root / "tiny.toml").write_text(TINY)
    bench = ["--benchmark", "tiny.toml", "--store", "s.db", "--quiet"]
    ok(cli("bench", "run", *bench, "--ruleset", "self-tuning", "--method", "adamw", "--method", "noreg",
           "--variants", "1", "--variant-seed", "5", cwd=root))  # fmt: skip
    ok(cli("bench", "run", *bench, "--ruleset", "external-tuning", "--method", "adamw", cwd=root))
    for method in ("adamw", "noreg"):
        out = ok(cli("bench", "submit", "--benchmark", "tiny.toml", "--store", "s.db", "--method", method,
                     "--out", f"{method}.json.gz", cwd=root))  # fmt: skip
        assert out.startswith(f"wrote {method}.json.gz: {method} on tiny-submit v1")
    return root


def test_a_bundle_holds_the_runs_the_trials_and_the_environment(world):
    bundle = read_bundle(world / "adamw.json.gz")
    assert [s.ruleset for s in bundle.studies] == ["self-tuning", "external-tuning"]
    assert bundle.benchmark.name == "tiny-submit" and len(bundle.benchmark.digest) == 64
    assert len(bundle.method.trials) == 2 and bundle.method.search_space is not None
    self_, ext = bundle.studies
    assert len(self_.runs) == 6 + 3 and len(ext.runs) == 2 * 2 * 2 + 6  # self-tuning: 3 runs of a variant
    assert [x.name for x in self_.suites] == [
        "tiny-submit@v1/self-tuning/adamw",
        "tiny-submit@v1/self-tuning/adamw/variants-5",
    ]
    assert {r.config_hash for r in self_.runs} == {RunConfig.model_validate(r.config).hash for r in self_.runs}
    assert len(self_.scores) == 6 + 3 and self_.step_costs
    env = bundle.environment
    assert env.cpu_model and env.torch_threads == [1] and "grokbench" in env.distributions
    assert bundle.digest == bundle.content_digest()
    assert gzip.decompress((world / "adamw.json.gz").read_bytes()).startswith(b"{")
    assert str(world) not in gzip.decompress((world / "adamw.json.gz").read_bytes()).decode()


def test_verify_re_trains_a_sample_bit_for_bit(world):
    out = ok(
        cli("bench", "verify", "adamw.json.gz", "--benchmark", "tiny.toml", "--sample", "2", "--seed", "1", cwd=world)
    )
    assert "consistent: adamw on tiny-submit@v1 (self-tuning, external-tuning), 23 runs" in out
    assert "re-training 2 runs drawn with seed 1 (bit for bit: same CPU model)" in out
    assert out.count("equal bit for bit") == 2 and "verified: adamw.json.gz (2 runs re-trained, all match)" in out


def test_the_leaderboard_equals_bench_report_on_the_store_and_opens_in_chromium(world):
    ok(
        cli(
            "bench",
            "leaderboard",
            "adamw.json.gz",
            "noreg.json.gz",
            "--benchmark",
            "tiny.toml",
            "--out",
            "lb",
            cwd=world,
        )
    )
    ok(cli("bench", "report", "--benchmark", "tiny.toml", "--store", "s.db", "--out", "rep", cwd=world))
    for name in ("benchmark.csv", "trials.csv", "costs.csv"):
        assert (world / "lb" / name).read_text() == (world / "rep" / name).read_text(), name
    sets = pd.read_csv(world / "lb" / "benchmark.csv").groupby(["ruleset", "set"]).size().to_dict()
    assert sets == {("self-tuning", "published tracks"): 12, ("self-tuning", "held-out variants (seed 5)"): 6,
                    ("external-tuning", "published tracks"): 6}  # fmt: skip
    md = (world / "lb" / "leaderboard.md").read_text()
    assert "## self-tuning: published tracks" in md and "adamw.json.gz" in md and "grokbench " in md
    page = world / "lb" / "leaderboard.html"
    assert 'href="../adamw.json.gz"' in page.read_text()
    from .browser import CHROMIUM, Browser

    if not CHROMIUM:
        pytest.skip("chromium is not installed (bash .ci/run installs Debian's)")
    browser = Browser(width=1000, height=1200)
    try:
        browser.open_report(page, plots=0)
        assert browser.errors() == []
        assert [r for r in browser.requests() if not r.startswith("data:")] == [page.resolve().as_uri()]
        # self-tuning's published tracks and variants, external-tuning's: two tables each
        assert browser.evaluate("document.querySelectorAll('.gb-board').length") == 6
        assert browser.evaluate("document.documentElement.scrollWidth") <= 1000
        browser.evaluate("document.querySelector('.gb-filter').value = 'noreg'")
        browser.evaluate("document.querySelector('.gb-filter').dispatchEvent(new Event('input'))")
        shown = browser.evaluate(
            "Array.from(document.querySelector('tbody').rows).filter(r => !r.hidden).map(r => r.cells[0].textContent)"
        )
        assert shown == ["noreg (control)"]
    finally:
        browser.close()


def _tree(world: Path) -> dict:
    return json.loads(gzip.decompress((world / "adamw.json.gz").read_bytes()))


def _first(tree: dict, ruleset: str, entry: str, seed: int) -> dict:
    study = next(s for s in tree["studies"] if s["ruleset"] == ruleset)
    return next(r for r in study["runs"] if r["entry"] == entry and r["seed"] == seed)


def _summary(tree):
    run = _first(tree, "self-tuning", "add", 0)
    run["summary"]["t_memorize"] = 25 if run["summary"]["t_memorize"] != 25 else 50


def _other_track(tree):
    run, other = _first(tree, "self-tuning", "add", 1), _first(tree, "self-tuning", "sub", 1)
    run["config"], run["config_hash"] = other["config"], other["config_hash"]


def _missing_seed(tree):
    study = tree["studies"][0]
    study["runs"] = [r for r in study["runs"] if not (r["entry"] == "sub" and r["seed"] == 2)]


def _not_the_method(tree):
    run = _first(tree, "self-tuning", "add", 2)
    run["config"]["optimizer"]["params"]["lr"] = 0.0123
    run["config_hash"] = RunConfig.model_validate(run["config"]).hash


def _score(tree):
    tree["studies"][0]["scores"][0]["step"] = 1.0


@pytest.mark.parametrize(
    ("tamper", "message", "reseal"),
    [
        (_summary, "its summary says t_memorize = ", True),
        (
            _other_track,
            "its config is not what tiny-submit and 'adamw' produce under self-tuning: it differs at task",
            True,
        ),
        (_missing_seed, "track sub is missing its run sub, seed 2 (2 of 3 stored)", True),
        (_not_the_method, "differs at optimizer.params.lr (bundle 0.0123, expected", True),
        (_score, "does not follow from the runs: step is 1.0 in the bundle", True),
        (_summary, "bundle digest", False),
    ],
    ids=["edited-summary", "another-track", "missing-seed", "not-the-method", "edited-score", "wrong-digest"],
)
def test_a_tampered_bundle_is_refused_with_one_line(world, tamper, message, reseal):
    tree = _tree(world)
    tamper(tree)
    bundle = Bundle.model_validate(tree)
    name = f"t-{tamper.__name__}-{reseal}.json.gz"
    (world / name).write_bytes(to_bytes(bundle.sealed() if reseal else bundle))
    result = cli("bench", "verify", name, "--benchmark", "tiny.toml", cwd=world)
    assert result.returncode == 2, result.stdout + result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr, result.stderr
    assert "Traceback" not in result.stderr


def test_bad_input_is_one_line_exit_2_and_nothing_written(world):
    result = cli("bench", "submit", "--benchmark", "tiny.toml", "--store", "s.db", "--method", "adam", "--out", "x.json.gz", cwd=world)  # fmt: skip
    assert result.returncode == 2 and "no runs of method 'adam'" in result.stderr
    assert not (world / "x.json.gz").exists()
    (world / "link.json.gz").symlink_to(world / "elsewhere")
    result = cli("bench", "submit", "--benchmark", "tiny.toml", "--store", "s.db", "--method", "adamw", "--out", "link.json.gz", cwd=world)  # fmt: skip
    assert result.returncode == 2 and "symlink" in result.stderr and not (world / "elsewhere").exists()
    result = cli("bench", "verify", "tiny.toml", cwd=world)
    assert result.returncode == 2 and "not gzip-compressed JSON" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_variant_run_must_carry_the_drawn_settings(world):
    tree = _tree(world)
    run = _first(tree, "self-tuning", "add~5.0", 1)
    run["config"]["task"]["params"]["train_fraction"] = 0.7  # the base track's, not the variant's
    run["config_hash"] = RunConfig.model_validate(run["config"]).hash
    (world / "t-variant.json.gz").write_bytes(to_bytes(Bundle.model_validate(tree).sealed()))
    result = cli("bench", "verify", "t-variant.json.gz", "--benchmark", "tiny.toml", cwd=world)
    assert result.returncode == 2 and "differs at task.params.train_fraction" in result.stderr, result.stderr


def test_curves_compare_bit_for_bit_on_the_same_cpu_and_within_the_tolerance_elsewhere(world):
    from grokbench.driving.verify import compare
    from grokbench.storage.bundle import Curves

    bundle = read_bundle(world / "adamw.json.gz")
    run = bundle.studies[0].runs[0]
    assert compare(run, run.status, run.curves, exact=True)[0]
    nudged = {k: [None if v is None else v * (1 + 1e-12) + 1e-300 for v in vs] for k, vs in run.curves.values.items()}
    again = Curves(steps=run.curves.steps, values=nudged)
    same, detail = compare(run, run.status, again, exact=True)
    assert not same and "stored" in detail
    assert compare(run, run.status, again, exact=False)[0]  # the last bits: within the tolerance
    n = len(run.curves.steps)
    assert n >= 12

    def crossing(at: int) -> Curves:  # test accuracy reaches 1 at evaluation ``at`` and stays
        return Curves(steps=run.curves.steps, values={**run.curves.values, "test_acc": [0.0] * at + [1.0] * (n - at)})

    stored = run.model_copy(update={"curves": crossing(5)})
    assert compare(stored, run.status, crossing(6), exact=False)[0]  # one evaluation later: within 2
    ok_, detail = compare(stored, run.status, crossing(9), exact=False)
    assert not ok_ and "test_acc generalized at step" in detail and "tolerance" in detail
    assert not compare(stored, "diverged", crossing(5), exact=False)[0]
