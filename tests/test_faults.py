"""Faults survived: a worker killed mid-suite, a driver killed with its workers, four processes creating one
store, a disk that fills or turns read-only mid-suite. Nothing lost, nothing duplicated, no orphan process,
a one-line error with a non-zero exit. Every wait is on an observable event (a file, a row count, a pid),
never on a sleep that guesses how long something takes."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from contextlib import closing
from pathlib import Path

import pytest
from click.testing import CliRunner
from grokbench_plugins.local_executors import ProcessExecutor, WorkerDied

from grokbench import cli as cli_module
from grokbench import executors as executors_module
from grokbench.executors import run_suite
from grokbench.store import Store
from grokbench.suites import load_suite

from .test_suites import TINY_SUITE, summaries, write

#: a generous bound on waiting for an event that takes well under a second (only reached if something hangs)
PATIENCE = 120


def wait_for(condition, what: str):
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


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
    outcome = run_suite(suite, store=tmp_path / "s.db", executor="process", options={"jobs": 2})
    assert marker.exists() and (outcome.trained, outcome.failed, outcome.duplicates) == (4, 0, 0)
    stored = summaries(tmp_path / "s.db")
    assert set(stored) == {r.config.hash for r in suite.runs} and all(s[0] == "completed" for s in stored.values())


# ------------------------------------------------------------------ a driver killed

DRIVER = """
import os, sys, time
from grokbench_plugins.local_executors import ProcessExecutor

def work(group):
    open(os.path.join(sys.argv[1], f"worker-{os.getpid()}"), "w").close()
    time.sleep(600)
    return group

executor = ProcessExecutor(ProcessExecutor.Params(jobs=2, threads=1))
executor.start()
for _ in executor.map(work, [[0], [1], [2]]):
    pass
"""


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_workers_die_with_their_driver(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)])
    try:
        wait_for(lambda: len(list(tmp_path.glob("worker-*"))) == 2, "both workers to start")
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait()
    pids = [int(p.name.split("-")[1]) for p in tmp_path.glob("worker-*")]
    wait_for(lambda: not any(alive(pid) for pid in pids), "the orphaned workers to die")


# ------------------------------------------------------------------ one store created by four processes

CREATOR = """
import os, sys, time
from grokbench.store import Store
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
    from grokbench_plugins.local_executors import InlineExecutor

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
