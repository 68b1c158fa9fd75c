"""Suite files, the suite driver and its executors, resume after SIGKILL, and bad input."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from grokbench import cli as cli_module
from grokbench.config.run import resolve_config
from grokbench.config.suites import load_suite, parse_suite
from grokbench.driving.suites import run_suite
from grokbench.errors import ConfigError
from grokbench.recording.live import save_result
from grokbench.storage.store import SCHEMA_VERSION, Store
from grokbench.training.programs import train_group

from .processes import HOLD_DRIVER, held, wait_for

ROOT = Path(__file__).resolve().parents[1]
SMOKE = ROOT / "tasks" / "smoke.toml"

#: 2 entries x 2 seeds of 300 steps at p = 11: a fraction of a second per run
TINY_SUITE = """
[suite]
name = "tiny"
seeds = [0, 1]

[defaults]
task = "modadd-cls"
model = "quadratic"
optimizer = "adam"
set.task = { p = 11, train_fraction = 0.6 }
set.model = { width = 32 }
set.optimizer = { lr = 1e-2 }
set.train = { steps = 300, eval_every = 50 }

[[entries]]
name = "adamw"
regularizer = "adamw"
set.regularizer.strength = 0.5

[[entries]]
name = "l2"
regularizer = "l2"
set.regularizer.strength = 1e-3
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def invoke(*args):
    return CliRunner().invoke(cli_module.cli, [str(a) for a in args])


def summaries(store_path):
    with sqlite3.connect(store_path) as conn:
        rows = conn.execute("SELECT config_hash, status, steps, t_memorize, t_generalize, final_train_acc, final_test_acc FROM runs").fetchall()
    return {r[0]: r[1:] for r in rows}


# ----------------------------------------------------------------- suite files


def test_smoke_suite_expands_to_resolved_configs_grouped_by_seed(registry):
    suite = load_suite(SMOKE, registry)
    assert suite.name == "smoke" and len(suite.runs) == 8
    labels = [r.label for r in suite.runs]
    assert labels[:4] == ["adamw[task.train_fraction=0.6]"] * 2 + ["adamw[task.train_fraction=0.7]"] * 2
    # the same run as `grokbench run` with the same settings: same config, same hash
    first = suite.runs[0].config
    same = resolve_config(
        registry, task="modadd-cls", model="quadratic", regularizer="adamw", optimizer="adam", seed=0,
        overrides={"task": {"p": 23, "train_fraction": 0.6}, "model": {"width": 128}, "optimizer": {"lr": 3e-3},
                   "regularizer": {"strength": 1.0}, "train": {"steps": 2000, "eval_every": 50}},
    )
    assert first == same and first.hash == same.hash
    groups = suite.groups()
    assert [len(g) for g in groups] == [2, 2, 2, 2]
    assert all(len({c.model_copy(update={"seed": 0}).hash for c in g}) == 1 and [c.seed for c in g] == [0, 1] for g in groups)


def test_grids_are_cartesian_products_and_entries_override_defaults(registry, tmp_path):
    text = TINY_SUITE.replace('name = "l2"', 'name = "l2"\ngrid.task.p = [7, 11, 13]\ngrid.model.width = [16, 32]\nseeds = [5]')
    suite = load_suite(write(tmp_path / "s.toml", text), registry)
    l2 = [r for r in suite.runs if r.entry == "l2"]
    assert len(l2) == 6 and {r.config.seed for r in l2} == {5}
    assert {(r.config.task.params["p"], r.config.model.params["width"]) for r in l2} == {(p, w) for p in (7, 11, 13) for w in (16, 32)}
    assert "l2[task.p=7, model.width=16]" in {r.label for r in l2}
    assert len({r.config.hash for r in suite.runs}) == len(suite.runs) == 8


@pytest.mark.parametrize(
    "text, message",
    [
        ("[suite\nname = 'x'", "invalid TOML"),
        (TINY_SUITE.replace('name = "adamw"', 'name = "adamw"\nbogus = 1'), "unknown key 'entries[0].bogus'"),
        (TINY_SUITE.replace("[suite]\n", "[suite]\nseed = 3\n"), "unknown key 'suite.seed'"),
        (TINY_SUITE.replace('name = "tiny"', ""), "missing key 'suite.name'"),
        (TINY_SUITE.replace('regularizer = "l2"', 'regularizer = "l2"\nmodel = "kernal"'), "entry 'l2': unknown model 'kernal' (did you mean 'kernel'?)"),
        (TINY_SUITE.replace("strength = 0.5", "strength = 0.5\ngrid.task.p = 7"), "grid.task.p must be a non-empty list"),
        (TINY_SUITE.replace("strength = 0.5", "strenght = 0.5"), "entry 'adamw': unknown key 'regularizer.strenght'"),
    ],
)
def test_bad_suite_files_exit_2_naming_file_and_key_and_write_nothing(tmp_path, text, message):
    suite = write(tmp_path / "bad.toml", text)
    store = tmp_path / "s.db"
    result = invoke("suite", "run", suite, "--store", store)
    assert result.exit_code == 2, result.output
    line = result.stderr.strip()
    assert line.startswith("error: ") and str(suite) in line and message in line and "\n" not in line
    assert not store.exists()


# ------------------------------------------------------------ running suites


@pytest.fixture(scope="module")
def tiny_inline(tmp_path_factory):
    """The tiny suite run inline (the reference), shared by the executor comparisons."""
    from grokbench.plugin.manager import get_registry

    tmp = tmp_path_factory.mktemp("inline")
    path = write(tmp / "tiny.toml", TINY_SUITE)
    outcome = run_suite(load_suite(path, get_registry()), registry=get_registry(), store=tmp / "inline.db")
    return path, tmp / "inline.db", outcome


def test_inline_run_stores_every_run_once_and_a_rerun_skips_them(tiny_inline, registry):
    path, store_path, outcome = tiny_inline
    assert (outcome.planned, outcome.skipped, outcome.trained, outcome.failed) == (4, 0, 4, 0)
    suite = load_suite(path, registry)
    stored = summaries(store_path)
    assert set(stored) == {r.config.hash for r in suite.runs}
    assert all(s[0] == "completed" and s[1] == 300 for s in stored.values())
    # the adamw entry fits its training set: a real run, not a placeholder
    adamw = [r.config.hash for r in suite.runs if r.entry == "adamw"]
    assert all(stored[h][4] == 1.0 for h in adamw)
    again = run_suite(suite, registry=registry, store=store_path)
    assert (again.skipped, again.trained) == (4, 0)
    assert len(summaries(store_path)) == 4
    # the uniqueness rule: a suite never stores a config twice, even when a second driver trained it too
    (twin,) = train_group([suite.runs[0].config], registry=registry)
    assert save_result(Store(store_path), twin, suite="tiny") is False
    with sqlite3.connect(store_path) as conn:
        assert conn.execute("SELECT count(*) FROM runs").fetchone()[0] == 4
        members = conn.execute("SELECT entry, count(*) FROM suite_members WHERE suite = 'tiny' GROUP BY entry").fetchall()
    assert sorted(members) == [("adamw", 2), ("l2", 2)]


def test_entry_option_trains_one_entry_and_keeps_the_whole_suites_membership(tiny_inline, tmp_path):
    path, inline_db, _ = tiny_inline
    store_path = tmp_path / "part.db"
    first = invoke("suite", "run", path, "--store", store_path, "--entry", "l2", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["planned"] == 2 and json.loads(first.output)["trained"] == 2
    with sqlite3.connect(store_path) as conn:
        members = conn.execute("SELECT entry, count(*) FROM suite_members WHERE suite = 'tiny' GROUP BY entry").fetchall()
    assert sorted(members) == [("adamw", 2), ("l2", 2)]  # the whole suite, not the part that ran
    l2_only = summaries(store_path)
    assert len(l2_only) == 2 and all(inline_db_row == l2_only[h] for h, inline_db_row in summaries(inline_db).items() if h in l2_only)
    rest = invoke("suite", "run", path, "--store", store_path, "--json")  # the whole file: only the other entry trains
    assert json.loads(rest.output)["skipped"] == 2 and json.loads(rest.output)["trained"] == 2
    assert summaries(store_path) == summaries(inline_db)
    bad = invoke("suite", "run", path, "--store", tmp_path / "never.db", "--entry", "nope")
    assert bad.exit_code == 2 and "no entry 'nope' (entries: adamw, l2)" in bad.output
    assert not (tmp_path / "never.db").exists()


def test_process_executor_agrees_with_inline_run_for_run(tiny_inline, tmp_path, registry):
    path, inline_db, _ = tiny_inline
    outcome = run_suite(load_suite(path, registry), registry=registry, store=tmp_path / "p.db", executor="process", options={"jobs": 2})
    assert outcome.trained == 4
    assert summaries(tmp_path / "p.db") == summaries(inline_db)


def test_a_failing_run_is_recorded_with_its_error_and_the_suite_goes_on(tmp_path, registry, monkeypatch):
    from grokbench_plugins.methods.regularizers import L2

    def crash(self, params):
        raise RuntimeError("l2 fell over")

    monkeypatch.setattr(L2, "penalty_grads", crash)
    outcome = run_suite(load_suite(write(tmp_path / "f.toml", TINY_SUITE), registry), registry=registry, store=tmp_path / "f.db")
    assert (outcome.stored, outcome.trained, outcome.failed) == (4, 2, 2)  # a failed run is stored, not trained
    runs = Store(tmp_path / "f.db").records("tiny")
    failed = runs[runs["status"] == "failed"]
    assert set(failed["entry"]) == {"l2"} and all("l2 fell over" in m for m in failed["message"])
    assert set(runs.loc[runs["status"] == "completed", "entry"]) == {"adamw"}


def test_failed_runs_count_as_done_unless_retried_and_the_retry_keeps_the_failure(tmp_path, registry, monkeypatch):
    from grokbench_plugins.methods.regularizers import L2

    def crash(self, params):
        raise RuntimeError("l2 crashed")

    suite = load_suite(write(tmp_path / "r.toml", TINY_SUITE), registry)
    with monkeypatch.context() as patch:
        patch.setattr(L2, "penalty_grads", crash)
        first = run_suite(suite, registry=registry, store=tmp_path / "r.db")
    assert (first.stored, first.trained, first.failed) == (4, 2, 2)
    again = run_suite(suite, registry=registry, store=tmp_path / "r.db")  # fixed, but failed runs count as done
    assert (again.skipped, again.trained) == (4, 0)
    result = invoke("suite", "run", suite.source, "--store", tmp_path / "r.db", "--retry-failed", "--json")
    assert result.exit_code == 0, result.output
    retried = json.loads(result.stdout)
    assert (retried["skipped"], retried["trained"], retried["failed"]) == (2, 2, 0)
    runs = Store(tmp_path / "r.db").records("tiny")
    assert list(runs["status"]) == ["completed"] * 4 and list(runs["steps"]) == [300] * 4
    with sqlite3.connect(tmp_path / "r.db") as conn:
        kept = conn.execute("SELECT status, suite, message FROM runs WHERE status = 'failed'").fetchall()
    assert len(kept) == 2 and all(suite_name is None and "l2 crashed" in message for _, suite_name, message in kept)
    assert run_suite(suite, registry=registry, store=tmp_path / "r.db", retry_failed=True).trained == 0  # nothing failed is left


def test_unknown_executor_and_bad_option_exit_2_with_the_store_untouched(tmp_path):
    suite = write(tmp_path / "t.toml", TINY_SUITE)
    store = tmp_path / "s.db"
    result = invoke("suite", "run", suite, "--store", store, "--executor", "slurm")
    assert result.exit_code == 2 and "unknown executor 'slurm'" in result.stderr
    result = invoke("suite", "run", suite, "--store", store, "--executor", "inline", "--address", "10.0.0.1:6379")
    assert result.exit_code == 2 and "executor 'inline' takes no option 'address'" in result.stderr
    assert not store.exists()


# --------------------------------------------------------------- the store


def test_newer_schema_and_not_a_store_exit_2_untouched(tmp_path):
    suite = write(tmp_path / "t.toml", TINY_SUITE)
    newer = tmp_path / "newer.db"
    with sqlite3.connect(newer) as conn:
        conn.execute("PRAGMA application_id = 1196576587")
        conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
        conn.execute("CREATE TABLE runs (id TEXT)")
    junk = write(tmp_path / "junk.db", "not a database at all " * 100)
    other = tmp_path / "other.db"
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE people (name TEXT)")
    for store, message in ((newer, "newer than this grokbench supports"), (junk, "is not a grokbench store"), (other, "is not a grokbench store")):
        before = store.read_bytes()
        for args in (("suite", "run", suite), ("report", "--out", tmp_path / "rep"), ("export", "--format", "csv", "--out", tmp_path / "x")):
            result = invoke(*args, "--store", store)
            assert result.exit_code == 2 and message in result.stderr, (args, result.output)
        assert store.read_bytes() == before
    assert not (tmp_path / "rep").exists() and not (tmp_path / "x").exists()


def test_a_v1_store_written_by_this_code_migrates_to_the_current_schema(tmp_path, monkeypatch, registry):
    from grokbench.storage import store as store_module

    path = tmp_path / "v1.db"
    monkeypatch.setattr(store_module, "SCHEMA_VERSION", 1)
    (old,) = train_group([load_suite(write(tmp_path / "t.toml", TINY_SUITE), registry).runs[0].config], registry=registry)
    save_result(Store(path), old)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        assert "suite" not in {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
    monkeypatch.undo()
    outcome = run_suite(load_suite(tmp_path / "t.toml", registry), registry=registry, store=path)
    assert (outcome.skipped, outcome.trained) == (1, 3)  # the v1 run counts: runs are keyed by config
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 5
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        rows = dict(conn.execute("SELECT id, suite FROM runs").fetchall())
    assert rows[old.run_id] is None and sum(v == "tiny" for v in rows.values()) == 3
    assert Store(path).get_run(old.run_id)["t_memorize"] == old.summary["t_memorize"]


# --------------------------------------------------------- SIGKILL and resume


#: 3 seeds x 2 entries, one batched group per entry, trained in this order by the inline executor
THREE_SEEDS = TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0, 1, 2]")


def test_a_suite_killed_with_sigkill_resumes_with_no_duplicate_and_no_lost_run(tmp_path, registry):
    """The driver is killed while it trains the second group, which the HOLD_DRIVER holds in training until then:
    the test waits on that event (a marker file), not on how long the first group takes."""
    suite_path = write(tmp_path / "three.toml", THREE_SEEDS)
    store = tmp_path / "s.db"
    marks = tmp_path / "marks"
    marks.mkdir()
    expected = {r.config.hash for r in load_suite(suite_path, registry).runs}
    assert len(expected) == 6
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    args = ["suite", "run", str(suite_path), "--store", str(store), "--quiet"]
    holding = {**env, "GROKBENCH_TEST_HOLD": "l2", "GROKBENCH_TEST_MARKS": str(marks)}
    proc = subprocess.Popen([sys.executable, "-c", HOLD_DRIVER, *args], env=holding, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:  # the first group is stored, the second one trains (its runs are written as they go)
        wait_for(lambda: held(marks) == 1 or proc.poll() is not None, "the second group to train")
        seen = len(Store(store, create=False).records().query("status == 'completed'"))  # a reader while it writes
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    first = {h: s for h, s in summaries(store).items() if s[0] == "completed"}
    assert len(first) == seen == 3 and set(first) <= expected
    finished = subprocess.run([sys.executable, "-m", "grokbench", *args, "--json"], env=env, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    report = json.loads(finished.stdout)
    assert report["skipped"] == len(first) and report["trained"] == 6 - len(first)
    with sqlite3.connect(store) as conn:
        in_suite = dict(conn.execute("SELECT config_hash, id FROM runs WHERE suite IS NOT NULL").fetchall())
        kept = conn.execute("SELECT config_hash, status, steps FROM runs WHERE suite IS NULL").fetchall()
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert set(in_suite) == expected and len(in_suite) == 6  # each configuration once in the suite
    final = summaries(store)
    assert all(final[h] == first[h] for h in first)
    # the runs the SIGKILL cut short went on from their last (milestone) checkpoint, in place; one that had none was
    # trained again from step 0, its first try kept out of the suite, as interrupted, with the curves it had
    assert len(kept) + report["resumed"] == 3 and {h for h, _, _ in kept} <= expected - set(first)
    assert all(status == "interrupted" for _, status, _ in kept)


# ---------------------------------------------------------------------- Ray


@pytest.fixture(scope="module")
def ray_session():
    """One local Ray instance for this module (starting Ray takes seconds)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_ray_executor_agrees_with_inline_run_for_run(ray_session, tiny_inline, tmp_path, registry):
    path, inline_db, _ = tiny_inline
    outcome = run_suite(load_suite(path, registry), registry=registry, store=tmp_path / "r.db", executor="ray")
    assert (outcome.trained, outcome.failed) == (4, 0)
    assert summaries(tmp_path / "r.db") == summaries(inline_db)
    assert ray_session.is_initialized()  # the executor left the caller's Ray instance alone


def test_unreachable_ray_address_exits_2_with_the_store_untouched(tmp_path, monkeypatch):
    pytest.importorskip("ray")  # the `ray` extra; without it the command says so (tested elsewhere)
    suite = write(tmp_path / "t.toml", TINY_SUITE)
    store = tmp_path / "s.db"
    result = invoke("suite", "run", suite, "--store", store, "--executor", "ray", "--address", "127.0.0.1:1")
    assert result.exit_code == 2 and "cannot reach the Ray cluster at 127.0.0.1:1" in result.stderr, result.output
    assert not store.exists()
    # an existing store from an older schema is not even migrated
    from grokbench.storage import store as store_module

    with monkeypatch.context() as m:
        m.setattr(store_module, "SCHEMA_VERSION", 1)
        Store(store)._ensure()
    before = store.read_bytes()
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    result = invoke("suite", "run", suite, "--store", store, "--executor", "ray")
    assert result.exit_code == 2 and "cannot reach the Ray cluster" in result.stderr
    assert store.read_bytes() == before
    with sqlite3.connect(store) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_parse_suite_errors_are_config_errors():
    with pytest.raises(ConfigError, match=r"^x\.toml: missing key 'entries'"):
        parse_suite("[suite]\nname = 'a'\n", "x.toml")


def test_a_site_can_add_its_own_executor_through_the_hook(tmp_path):
    """A third-party executor (here: last group first, in this process) registered with register_executors."""
    from grokbench import hookimpl
    from grokbench.plugin.contracts import Executor
    from grokbench.plugin.manager import load_plugins

    calls = []

    class Backwards(Executor):
        """Runs the last group first."""

        name = "backwards"

        def map(self, work, groups):
            for index in reversed(range(len(groups))):
                calls.append(index)
                yield index, work(groups[index])

    class Site:
        @hookimpl
        def register_executors(self, register):
            register(Backwards)

    registry = load_plugins(extra=[("site", Site())])
    assert registry.entry("executor", "backwards").plugin.name == "site"
    suite = load_suite(write(tmp_path / "t.toml", TINY_SUITE), registry)
    outcome = run_suite(suite, registry=registry, store=tmp_path / "b.db", executor="backwards")
    assert calls == [1, 0] and (outcome.trained, outcome.failed) == (4, 0)
    assert set(summaries(tmp_path / "b.db")) == {r.config.hash for r in suite.runs}


# tasks/ also holds benchmark files (a [benchmark] table; tests/test_benchmark.py checks those)
SHIPPED_SUITES = sorted(p for p in (Path(__file__).resolve().parents[1] / "tasks").glob("*.toml") if "\n[benchmark]" not in "\n" + p.read_text())


@pytest.mark.parametrize("path", SHIPPED_SUITES, ids=[p.name for p in SHIPPED_SUITES])
def test_every_shipped_suite_file_expands_into_valid_runs(path, registry):
    from grokbench.config.suites import load_suite

    suite = load_suite(path, registry)  # every entry resolves against the installed plugins
    assert suite.runs and suite.unique_configs(), path
    # entries may ask for the same run twice (a shared grid point): it is trained once
    assert len(suite.unique_configs()) == len({run.config.hash for run in suite.runs})
