"""Faults survived: a worker killed mid-suite, a driver killed with its workers, four processes creating one
store, a disk that fills or turns read-only mid-suite. Nothing lost, nothing duplicated, no orphan process,
a one-line error with a non-zero exit. Every wait is on an observable event (a file, a row count, a pid),
never on a sleep that guesses how long something takes."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pickle
import signal
import sqlite3
import subprocess
import sys
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from grokbench_plugins.executors.local_executors import ProcessExecutor, WorkerDied

from grokbench import cli as cli_module
from grokbench.api import run_seeds
from grokbench.config.suites import load_suite
from grokbench.driving import suites as executors_module
from grokbench.driving.suites import SuiteInterrupted, run_suite
from grokbench.plugin.contracts import GroupInterrupted
from grokbench.recording.recovery import recognize_dead_runs
from grokbench.storage.store import Store
from grokbench.training import programs as runner_module

from .processes import HOLD_DRIVER, PATIENCE, alive, descendants, held, wait_for
from .test_suites import TINY_SUITE, summaries, write

# ------------------------------------------------------------------ a worker killed


def kill_once(group):
    """Work that SIGKILLs its own worker the first time it sees group 2 (a marker file remembers), else echoes."""
    index, marker = group
    if index == 2 and not os.path.exists(marker):
        Path(marker).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return [index * 10]


def always_kill(group):
    index, _ = group
    if index == 2:
        os.kill(os.getpid(), signal.SIGKILL)
    return [index * 10]


def dies_once_on_l2(group, registry=None, live=None):
    """train_work, but the worker that first trains the l2 group SIGKILLs itself (a marker file remembers)."""
    marker = Path(os.environ["GROKBENCH_TEST_MARKER"])
    if group[0].regularizer.name == "l2" and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return REAL_TRAIN_WORK(group, registry, live)


REAL_TRAIN_WORK = executors_module.train_work


def _map(work, groups, jobs=2):
    executor = ProcessExecutor(ProcessExecutor.Params(jobs=jobs, threads=1))
    executor.start()
    try:
        return list(executor.map(work, groups))
    finally:
        executor.close()


def test_a_killed_worker_loses_nothing_and_unstarted_groups_are_not_failed(tmp_path):
    groups = [[i, str(tmp_path / "killed")] for i in range(8)]
    answers = _map(kill_once, groups)
    assert (tmp_path / "killed").exists()  # the worker really died once
    assert sorted(i for i, _ in answers) == list(range(8))  # every group answered exactly once
    assert all(answer == [i * 10] for i, answer in answers)  # none failed: the killed group was retried


def test_a_group_that_kills_its_worker_every_time_fails_alone(tmp_path):
    answers = dict(_map(always_kill, [[i, ""] for i in range(6)]))
    assert sorted(answers) == list(range(6))
    assert isinstance(answers[2], WorkerDied) and "died 2 times" in str(answers[2])
    assert all(answers[i] == [i * 10] for i in answers if i != 2)


def test_a_worker_killed_mid_suite_is_retried_and_the_store_has_every_run_once(tmp_path, registry, monkeypatch):
    marker = tmp_path / "killed"
    monkeypatch.setenv("GROKBENCH_TEST_MARKER", str(marker))
    monkeypatch.setattr(executors_module, "train_work", dies_once_on_l2)  # forked workers inherit it
    suite = load_suite(write(tmp_path / "t.toml", TINY_SUITE), registry)
    outcome = run_suite(suite, registry=registry, store=tmp_path / "s.db", executor="process", options={"jobs": 2})
    assert marker.exists() and (outcome.trained, outcome.failed, outcome.duplicates) == (4, 0, 0)
    stored = summaries(tmp_path / "s.db")
    assert set(stored) == {r.config.hash for r in suite.runs} and all(s[0] == "completed" for s in stored.values())


# ------------------------------------------------------------------ a driver killed, stopped or interrupted

#: one group per entry (one seed), each held in training by the HOLD_DRIVER after its evaluation at step 100
ONE_SEED = TINY_SUITE.replace("seeds = [0, 1]", "seeds = [0]")


def _driver(tmp_path, text=ONE_SEED, hold="*", executor="process", jobs=2, generalize=""):
    """`grokbench suite run` (the HOLD_DRIVER) in a session of its own, as a terminal would start it."""
    suite = write(tmp_path / "t.toml", text)
    marks = tmp_path / "marks"
    marks.mkdir(exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GROKBENCH_TEST_HOLD": hold, "GROKBENCH_TEST_MARKS": str(marks),
           "GROKBENCH_TEST_GENERALIZE": generalize}
    command = [sys.executable, "-c", HOLD_DRIVER, "suite", "run", str(suite), "--store", str(tmp_path / "s.db"),
               "--executor", executor, "--jobs", str(jobs), "--quiet"]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    return proc, suite, marks


def _rerun(tmp_path, suite, store="s.db"):
    """The same suite, run plainly to the end (the inline executor: same configs, same hashes)."""
    done = subprocess.run([sys.executable, "-m", "grokbench", "suite", "run", str(suite), "--store", str(tmp_path / store), "--json"],
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=PATIENCE)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _store_rows(path):
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = conn.execute("SELECT id, status, steps, suite, config_hash FROM runs").fetchall()
        curves = dict(conn.execute("SELECT run_id, max(step) FROM curves GROUP BY run_id").fetchall())
    return rows, curves


def _finish_and_check(tmp_path, suite, interrupted: int):
    """A plain rerun trains the 2 runs not completed. Each of the ``interrupted`` runs that has a checkpoint goes on
    from its last one, in place (same id); one without is trained from step 0, and its interrupted try stays in the
    store as a run of no suite. The suite then holds each configuration once, completed, with the curves of an
    uninterrupted run of the suite."""
    store = Store(tmp_path / "s.db")
    recognize_dead_runs(store)
    stopped = {r for r in store.runs()["id"] if store.get_run(r)["status"] == "interrupted"}
    resumable = {r for r in stopped if store.checkpoints(r)}
    assert len(stopped) == interrupted
    report = _rerun(tmp_path, suite)
    assert (report["skipped"], report["trained"], report["failed"], report["duplicates"]) == (0, 2, 0, 0)
    assert report["resumed"] == len(resumable)
    rows, _ = _store_rows(tmp_path / "s.db")
    in_suite = {r[4]: r for r in rows if r[3] == "tiny"}
    assert sorted(r[1] for r in in_suite.values()) == ["completed"] * 2 and len(in_suite) == 2
    assert resumable <= {r[0] for r in in_suite.values()}
    assert {r[0] for r in rows if r[3] is None} == stopped - resumable
    assert {r[1] for r in rows if r[3] is None} <= {"interrupted"}
    assert _rerun(tmp_path, suite, "fresh.db")["trained"] == 2
    fresh = Store(tmp_path / "fresh.db")
    for row in fresh.records("tiny").to_dict("records"):
        a, b = fresh.curves(row["id"]), store.curves(in_suite[row["config_hash"]][0])
        assert list(a["step"]) == list(b["step"])
        for name in ("train_loss", "test_loss", "train_acc", "test_acc"):
            assert b[name].tolist() == pytest.approx(a[name].tolist(), rel=1e-5, abs=1e-7), (row["id"], name)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_suite_driver_killed_with_sigkill_leaves_no_worker_and_a_rerun_completes_its_runs(tmp_path):
    proc, suite, marks = _driver(tmp_path)
    try:
        wait_for(lambda: held(marks) == 2 or proc.poll() is not None, "both workers to train a run")
        family = descendants(proc.pid)  # the pool's workers (collected before the kill: orphans are re-parented)
        assert len(family) == 2, family
    finally:
        proc.send_signal(signal.SIGKILL)  # the driver only, not its process group
        proc.communicate()
    wait_for(lambda: not any(alive(pid) for pid in family), f"the workers {sorted(family)} to die with their driver")
    rows, last = _store_rows(tmp_path / "s.db")
    # the workers recorded their runs live: left 'running' (their processes are gone), with their curves
    assert sorted(r[1] for r in rows) == ["running"] * 2 and all(r[3] == "tiny" and last[r[0]] == 100 for r in rows)
    _finish_and_check(tmp_path, suite, interrupted=2)  # the rerun recognizes them as interrupted, keeps them


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG and /proc are Linux's")
def test_a_seed_that_left_its_batched_group_survives_the_group_being_killed(tmp_path):
    """Seeds 0 and 1 train as one batched program; seed 0 generalizes at step 50 and leaves it (early stop), seed 1
    trains on and is held at step 100 when the driver is killed. Seed 0 was stored finished when it left, so the
    rerun trains seed 1 alone."""
    text = TINY_SUITE.replace('set.train = { steps = 300, eval_every = 50 }', 'set.train = { steps = 300, eval_every = 50, early_stop = true }')
    text = text[: text.index("[[entries]]\nname = \"l2\"")]  # one entry: one group of 2 seeds
    proc, suite, marks = _driver(tmp_path, text, jobs=1, generalize="0")
    try:
        wait_for(lambda: held(marks) == 1 or proc.poll() is not None, "seed 1 to be held in training")
        rows, last = _store_rows(tmp_path / "s.db")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    statuses = sorted((r[1], r[2], last[r[0]]) for r in rows)
    assert statuses == [("completed", 50, 50), ("running", 100, 100)], statuses
    seed1 = next(r[0] for r in rows if r[1] == "running")
    report = _rerun(tmp_path, suite)
    assert (report["planned"], report["skipped"], report["trained"], report["duplicates"]) == (2, 1, 1, 0)
    rows, _ = _store_rows(tmp_path / "s.db")
    assert sorted(r[1] for r in rows if r[3] == "tiny") == ["completed"] * 2
    checkpointed = bool(Store(tmp_path / "s.db").checkpoints(seed1))  # at its milestones, if it reached one
    assert report["resumed"] == checkpointed  # seed 1 went on from it, or trained again (its first try kept)
    assert [r[1] for r in rows if r[3] is None] == ([] if checkpointed else ["interrupted"])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_a_ray_driver_killed_with_sigkill_leaves_no_ray_process(tmp_path):
    """A real local Ray instance (GCS, raylet, agents, workers) started by `suite run --executor ray`."""
    pytest.importorskip("ray")
    endless = ONE_SEED.replace("steps = 300", "steps = 100000000")  # Ray's workers do not see the hold
    proc, suite, marks = _driver(tmp_path, endless, hold="none", executor="ray", jobs=1)
    try:
        # a Ray worker trains a run: its process title is ray::_call, the task (Ray workers do not see the hold)
        wait_for(lambda: proc.poll() is not None or any(c.startswith("ray::_call") for c in descendants(proc.pid).values()),
                 "a Ray worker to train a run")
        family = descendants(proc.pid)
        assert proc.poll() is None, proc.communicate()
        assert any("raylet" in c for c in family.values()) and any("gcs_server" in c for c in family.values()), family
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
    # bounded below the ~61 s that Ray's agents took to go on their own: the watchdog ends them at once
    wait_for(lambda: not any(alive(pid) for pid in family), "the Ray processes to die with their driver", patience=30)
    # the Ray worker recorded its run live: at most that row, left 'running' for the next command to recognize
    assert not (tmp_path / "s.db").exists() or {r[1] for r in _store_rows(tmp_path / "s.db")[0]} <= {"running"}


def _interrupt(proc, ready, what, send):
    """Wait until ``ready()`` (or the driver ended), note the driver's descendants, ``send()`` the signal and wait
    for the driver to exit; return the descendants and its stderr. A driver still alive at the end is killed."""
    try:
        wait_for(lambda: ready() or proc.poll() is not None, what)
        family = descendants(proc.pid)
        send()
        _, err = proc.communicate(timeout=PATIENCE)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return family, err


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
@pytest.mark.parametrize("how", ["SIGTERM to the driver", "Ctrl-C to the process group"])
def test_sigterm_and_ctrl_c_stop_a_suite_at_once_keeping_the_curves_of_the_runs_in_flight(tmp_path, how):
    """The held runs never end by themselves: the driver ends only if it stops its busy workers. With one
    worker (Ctrl-C), the second group waits in the pool's queue, and must not start once the driver stops."""
    jobs = 2 if how.startswith("SIGTERM") else 1
    proc, suite, marks = _driver(tmp_path, jobs=jobs)
    if how.startswith("SIGTERM"):
        send = functools.partial(proc.send_signal, signal.SIGTERM)
    else:  # what a terminal does: the driver and every worker get it
        send = functools.partial(os.killpg, proc.pid, signal.SIGINT)
    family, err = _interrupt(proc, lambda: held(marks) == jobs, "the workers to train", send)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted: suite 'tiny' stopped;"), err
    assert f"({jobs} interrupted, with their curves)" in lines[0] and "train the 2 left" in lines[0], err
    wait_for(lambda: not any(alive(pid) for pid in family), "the workers to exit")
    rows, last = _store_rows(tmp_path / "s.db")
    assert sorted(r[1] for r in rows) == ["interrupted"] * jobs and all(r[3] == "tiny" for r in rows)
    assert all(r[2] == 100 == last[r[0]] for r in rows)  # each kept its curves, up to its last evaluation
    # held inside its step-100 evaluation, before its state was taken: the last state checkpointed is step 50's
    assert all(Store(tmp_path / "s.db").checkpoints(r[0])[-1]["step"] == 50 for r in rows)  # the rerun goes on from it
    _finish_and_check(tmp_path, suite, interrupted=jobs)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc is Linux's")
def test_sigterm_of_a_ray_suite_keeps_the_run_its_worker_recorded_interrupted_with_its_curves(tmp_path):
    """A local Ray instance: the cancelled task's worker ends its run itself (Ray hands nothing back from a
    cancelled task; the driver counts the run from the store), the queued group never starts."""
    pytest.importorskip("ray")
    endless = ONE_SEED.replace("steps = 300", "steps = 100000000")
    proc, suite, _ = _driver(tmp_path, endless, hold="none", executor="ray", jobs=1)

    def evaluations() -> int:
        try:
            with closing(sqlite3.connect(f"file:{tmp_path / 's.db'}?mode=ro", uri=True)) as conn:
                return conn.execute("SELECT count(DISTINCT step) FROM curves").fetchone()[0]
        except sqlite3.Error:
            return 0

    send = functools.partial(proc.send_signal, signal.SIGTERM)
    family, err = _interrupt(proc, lambda: evaluations() >= 3, "a Ray worker to record evaluations", send)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: interrupted: suite 'tiny' stopped; 1 runs stored"), err
    assert "(1 interrupted, with their curves)" in lines[0] and "train the 2 left" in lines[0], err
    wait_for(lambda: not any(alive(pid) for pid in family), "the Ray processes to exit", patience=30)
    (run,) = [Store(tmp_path / "s.db").get_run(i) for i in Store(tmp_path / "s.db").runs()["id"]]
    assert run["status"] == "interrupted" and run["suite"] == "tiny" and run["pid"] is None
    assert run["message"].startswith("interrupted after the evaluation at step")  # its worker ended it
    assert len(Store(tmp_path / "s.db").curves(run["id"])) >= 3
    assert _store_rows(tmp_path / "s.db")  # integrity_check ok


def test_an_interrupted_group_hands_back_every_run_it_kept(tmp_path, registry, monkeypatch):
    """In the driver's own process (the inline executor): a batched group of two seeds interrupted after its
    evaluation at step 100 keeps both runs, with their curves; the suite stores them and stops."""
    real = runner_module.train_members

    def interrupted_at_100(**kw):
        def stop(on_eval):
            def hook(record):
                on_eval(record)
                if record["step"] >= 100:
                    raise KeyboardInterrupt
            return hook
        return real(**{**kw, "members": [dataclasses.replace(m, on_eval=stop(m.on_eval)) for m in kw["members"]]})

    monkeypatch.setattr(runner_module, "train_members", interrupted_at_100)
    suite = load_suite(write(tmp_path / "t.toml", TINY_SUITE), registry)
    group = suite.groups(suite.unique_configs())[0]
    with pytest.raises(GroupInterrupted) as caught:
        executors_module.train_work(group, registry)
    kept = pickle.loads(pickle.dumps(caught.value)).results  # it travels back from a worker process
    assert [r.config.hash for r in kept] == [c.hash for c in group] and [r.status for r in kept] == ["interrupted"] * 2
    assert kept[0].steps == 100 and all(r.steps == r.curves["step"].max() >= 50 for r in kept)
    with pytest.raises(SuiteInterrupted) as stopped:
        run_suite(suite, registry=registry, store=tmp_path / "s.db")
    outcome = stopped.value.outcome
    assert (outcome.stored, outcome.trained, outcome.interrupted) == (2, 0, 2)  # interrupted: stored, never trained
    assert "2 runs stored" in str(stopped.value) and "train the 4 left" in str(stopped.value)
    assert sorted(s[0] for s in summaries(tmp_path / "s.db").values()) == ["interrupted"] * 2
    # `grokbench run --seeds` (run_seeds) saves them too
    with pytest.raises(GroupInterrupted):
        run_seeds("modadd-cls", "quadratic", [0, 1], store=tmp_path / "seeds.db", registry=registry,
                  overrides=["task.p=11", "model.width=32", "train.steps=300", "train.eval_every=50"])
    assert sorted(s[0] for s in summaries(tmp_path / "seeds.db").values()) == ["interrupted"] * 2


# ------------------------------------------------------------------ one store created by four processes

CREATOR = """
import os, sys, time
from grokbench.storage.store import Store
path, go, n = sys.argv[1], sys.argv[2], sys.argv[3]
open(go + "." + n, "w").close()
while not os.path.exists(go):
    pass
store = Store(path)
store.stored_hashes(["x"])
store.save_run({"id": "run" + n, "created_at": "2026-01-01T00:00:00", "config_hash": "h" + n, "config": {}, "task": "t",
    "model": "m", "regularizer": "r", "optimizer": "o", "preset": None, "seed": 0, "status": "completed", "message": None,
    "steps": 1, "t_memorize": None, "t_generalize": None, "final_train_acc": 1.0, "final_test_acc": 0.0, "wall_seconds": 0.0,
    "summary": {}, "plugins": {}, "environment": {}}, [{"step": 1, "loss": 0.5}])
"""


@pytest.mark.parametrize("attempt", range(3))
def test_four_processes_creating_one_store_never_fail(tmp_path, attempt):
    path, go = tmp_path / "new.db", tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", CREATOR, str(path), str(go), str(n)], stderr=subprocess.PIPE, text=True) for n in range(4)]
    wait_for(lambda: all(Path(f"{go}.{n}").exists() for n in range(4)), "the four processes to be ready")
    go.touch()  # all four open the missing store at once
    errors = [p.communicate(timeout=PATIENCE)[1] for p in procs]
    assert [p.returncode for p in procs] == [0] * 4, errors
    with closing(sqlite3.connect(path)) as conn:
        assert sorted(r[0] for r in conn.execute("SELECT id FROM runs")) == [f"run{n}" for n in range(4)]
        assert conn.execute("SELECT count(*) FROM curves").fetchone()[0] == 4


# ------------------------------------------------------------------ a disk that fills or turns read-only


@pytest.fixture
def small_fs(tmp_path):
    """A 2 MiB tmpfs (root only: mount)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("needs root and mount to simulate a full or read-only file system")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=True)


def _fill(folder: Path) -> None:
    with open(folder / "filler", "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass


def _remount_ro(folder: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)


@pytest.mark.parametrize("fault", ["full", "read-only"])
def test_a_disk_that_fills_or_turns_read_only_mid_suite_ends_in_one_line_and_loses_nothing(small_fs, tmp_path, registry, monkeypatch, fault):
    """The inline executor stores the first group, then the fault strikes before the second is stored."""
    from grokbench_plugins.executors.local_executors import InlineExecutor

    def map_then_fault(self, work, groups):
        for index, group in enumerate(groups):
            if index == 1:
                _fill(small_fs) if fault == "full" else _remount_ro(small_fs)
            yield index, work(group)

    monkeypatch.setattr(InlineExecutor, "map", map_then_fault)
    suite = write(tmp_path / "t.toml", TINY_SUITE)
    store = small_fs / "s.db"
    result = CliRunner().invoke(cli_module.cli, ["suite", "run", str(suite), "--store", str(store)])
    assert result.exit_code == 1, (result.output, result.exception)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cannot write run") and "Traceback" not in result.output
    if fault == "read-only":  # a read-only store is still readable
        listing = CliRunner().invoke(cli_module.cli, ["runs", "--store", str(store), "--json"])
        assert listing.exit_code == 0 and len(json.loads(listing.stdout)) == 2, listing.output
    # the fault goes away; the store holds the first group, whole, and is consistent
    if fault == "full":
        (small_fs / "filler").unlink()
    else:
        subprocess.run(["mount", "-o", "remount,rw", str(small_fs)], check=True)
    first = summaries(store)
    assert len(first) == 2
    with closing(sqlite3.connect(store)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    # the rerun trains exactly what is missing
    monkeypatch.undo()
    again = CliRunner().invoke(cli_module.cli, ["suite", "run", str(suite), "--store", str(store), "--json"])
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert (report["skipped"], report["trained"], report["duplicates"]) == (2, 2, 0)
    final = summaries(store)
    assert len(final) == 4 and all(final[h] == first[h] for h in first)
    assert Store(store, create=False).records("tiny")["status"].tolist() == ["completed"] * 4
