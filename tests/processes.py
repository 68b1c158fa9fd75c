"""Helpers for the tests that signal and kill real processes: waiting on observable events, a process's
descendants read from /proc, and a `grokbench` command line that holds chosen runs in training.

Every wait here is on an event (a file, a pid, a row count), never on a sleep that guesses how long
something takes; PATIENCE only bounds a wait that would otherwise hang."""

from __future__ import annotations

import os
import time

#: a generous bound on waiting for an event that takes well under a second (only reached if something hangs)
PATIENCE = 120

#: `python -c HOLD_DRIVER ARGS...` is `grokbench ARGS...`, except that a run whose regularizer is named in
#: $GROKBENCH_TEST_HOLD ("*": every run) holds after its evaluation at step 100 until a signal ends it, and
#: marks it by creating $GROKBENCH_TEST_MARKS/held-<pid> (the process that trains it: a worker, or the driver);
#: the run of seed $GROKBENCH_TEST_GENERALIZE (if set) reports test accuracy 1 from step 50 on (with
#: train.early_stop, it leaves its program there)
HOLD_DRIVER = """
import dataclasses, os, sys, time
import grokbench.training.programs as runner
held, marks = os.environ["GROKBENCH_TEST_HOLD"], os.environ["GROKBENCH_TEST_MARKS"]
generalizes = os.environ.get("GROKBENCH_TEST_GENERALIZE")

def holding(on_eval, regularizer, seed):
    name = getattr(regularizer, "name", None)
    if str(seed) == generalizes:
        def generalized(record):
            if record["step"] >= 50:
                record["test_acc"] = 1.0  # the trainer decides on this record after this callback
            on_eval(record)
        return generalized
    if held != "*" and name != held:
        return on_eval
    def hold(record):
        on_eval(record)
        if record["step"] >= 100:
            open(os.path.join(marks, f"held-{os.getpid()}"), "w").close()
            while True:
                time.sleep(0.05)
    return hold

real_members = runner.train_members

def train_members(**kw):  # a single run or a batched group: each member's own regularizer names it
    members = [dataclasses.replace(m, on_eval=holding(m.on_eval, m.regularizer or kw["regularizer"], m.seed)) for m in kw["members"]]
    return real_members(**{**kw, "members": members})

runner.train_members = train_members
from grokbench.cli import main
sys.argv[0] = "grokbench"
main()
"""


def wait_for(condition, what: str, patience: float = PATIENCE):
    deadline = time.monotonic() + patience
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.01)


def _stat(pid: int) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie."""
    fields = _stat(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def descendants(pid: int) -> dict[int, str]:
    """Every live descendant of ``pid`` (children, their children, ...), with its command line."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (fields := _stat(int(entry))) is not None and fields[0] not in ("Z", "X"):
            children.setdefault(int(fields[1]), []).append(int(entry))
    found: dict[int, str] = {}
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            try:
                with open(f"/proc/{child}/cmdline", "rb") as f:
                    found[child] = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
            except (FileNotFoundError, ProcessLookupError):
                continue
            todo.append(child)
    return found


def held(marks) -> int:
    """How many runs the HOLD_DRIVER holds (their marker files)."""
    return len(list(marks.glob("held-*")))
